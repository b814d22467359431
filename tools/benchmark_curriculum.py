"""Measure what a curriculum saves in wall time, stage by stage.

    python tools/benchmark_curriculum.py configs/demo/fmnist_resnet_cropflip_et.py
    python tools/benchmark_curriculum.py CONFIG --iters 20 --out bench.json
    python tools/benchmark_curriculum.py mmpretrain::resnet/resnet50_8xb32_in1k.py \
        --curriculum efficienttrain --fake-data 2048

For each distinct stage of the config's plan (:mod:`mmet.plan`, as the
loop or the hook makes it) it sets the stage as training does (the driver:
transforms, data preprocessor and Swin windows) and times, with the
config's real model, optimizer wrapper (the fast step where the config
has it), pipeline and loader (workers included), on the device present:

- ``loader``: the input pipeline alone (images/s): the data loader, plus
  the decode and augmentation on the device for a config with
  ``DeviceAugmentPreprocessor``. Timing starts only once the batches that
  the workers queued ahead (``num_workers * prefetch_factor``) are
  consumed, so it reads the pipeline's rate, not the queue's;
- ``model``: the training step alone on a batch of the stage's shape (its
  micro-batch, where the plan runs a larger one);
- ``end-to-end``: loader and training step together, as in training (the
  device pipeline one batch ahead where the loop does that), from a
  drained queue too.

From the per-stage rates and the epochs of each stage it reports three
speedups against training every epoch at full size (the baseline):
predicted (FLOPs), ceiling (model step only: what a loader that keeps up
would give) and measured (end to end). A measured speedup above the
ceiling (beyond 1% of noise) cannot be and is reported as invalid, with
the cause. It also reports which of loader and model binds each stage,
the cost of a stage switch (fresh workers' first batch) against the
stage's time, and which parts of the fast training step were on. Ratios
are measured side by side in one run: ``--repeats`` rounds over all the
stages, each rate the median of its rounds.

``--fake-data N`` replaces the train set by N random JPEGs of ImageNet's
typical size read through the config's own pipeline, so the shipped
configs run without ImageNet.
"""
import argparse
import atexit
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmet  # noqa: E402,F401
from mmet import compat  # noqa: E402
from mmet.cli import (add_curriculum_args,  # noqa: E402
                      apply_curriculum_args, load_config)
from mmet.config import curriculum_hook  # noqa: E402
from mmet.driver import StageDriver  # noqa: E402
from mmet.loops import EfficientTrainLoop  # noqa: E402
from mmet.plan import TrainPlan, resolve_curriculum  # noqa: E402
from mmet.prefetch import DevicePrefetcher  # noqa: E402
from mmet.sizes import hw  # noqa: E402

# how far end to end may read above the model-only ceiling before the
# measurement is called invalid (timing noise)
CEILING_TOLERANCE = 0.01


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Per-stage loader/model/end-to-end throughput of a '
        'curriculum')
    parser.add_argument('config', help='training config with a curriculum')
    parser.add_argument('--iters', type=int, default=15,
                        help='timed batches per measurement')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed batches before each measurement')
    parser.add_argument('--repeats', type=int, default=3,
                        help='rounds over the stages; each rate is the '
                        "median of its rounds' (a shared machine drifts)")
    parser.add_argument('--out', default=osp.join(
        ROOT, 'work_dirs', 'benchmark_curriculum.json'))
    parser.add_argument('--fake-data', type=int, default=0, metavar='N',
                        help='train on N random 500x375 JPEGs instead of '
                        "the config's train set")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, key=value')
    add_curriculum_args(parser)  # as tools/train.py --curriculum
    return parser.parse_args(argv)


def use_fake_data(cfg, num: int, root: str, classes: int = 10) -> None:
    """Point the train loader at ``num`` random JPEGs in ``root``, read
    through the config's own pipeline (a ``CustomDataset`` of class
    folders)."""
    dataset = cfg.train_dataloader.dataset
    if 'pipeline' not in dataset:
        raise SystemExit('--fake-data needs the train dataset to hold its '
                         'pipeline (no dataset wrapper).')
    rng = np.random.default_rng(0)
    for i in range(num):
        folder = osp.join(root, 'train', f'class{i % classes}')
        os.makedirs(folder, exist_ok=True)
        # smooth noise: JPEG sizes and decode costs close to photos'
        img = cv2.GaussianBlur(
            rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(osp.join(folder, f'{i:05d}.jpg'), img,
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    cfg.train_dataloader.dataset = dict(
        type='CustomDataset', data_root=root, data_prefix='train',
        pipeline=dataset.pipeline)


def _to(data, device):
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, list):
        return [_to(x, device) for x in data]
    if isinstance(data, dict):
        return {k: _to(v, device) for k, v in data.items()}
    return data


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


class Bench:
    """A config built for timing: its model, optimizer wrapper, loader,
    driver and plan, as training builds them."""

    def __init__(self, cfg):
        self.runner = Runner.from_cfg(cfg)
        loop = self.runner.train_loop
        self.model = self.runner.model
        self.loader = loop.dataloader
        if isinstance(loop, EfficientTrainLoop):
            self.driver, self.plan = loop.driver, loop.plan
            self.prefetch = loop.prefetch
        else:
            hook = curriculum_hook(cfg)
            if hook is None:
                raise SystemExit('The config has no EfficientTrainLoop and '
                                 'no EfficientTrainHook.')
            self.driver = StageDriver(
                resolve_curriculum(hook.get('curriculum') or
                                   'efficienttrain'),
                hook.get('low_pass') or 'fourier').bind(
                    self.loader.dataset, self.model)
            self.plan = TrainPlan(self.driver.curriculum,
                                  full_size=self.driver.full_size,
                                  max_epochs=loop.max_epochs)
            self.prefetch = False
        self.optim_wrapper = self.runner.build_optim_wrapper(
            cfg.optim_wrapper)
        self.optim_wrapper.initialize_count_status(self.model, 0, 10**9)
        self.device = next(self.model.parameters()).device
        self.workers = self.loader.num_workers
        self.queued = self.workers * (self.loader.prefetch_factor or 0)
        pre = self.driver.preprocessor
        self.augment = pre.augment_batch if hasattr(
            pre, 'augment_batch') else (lambda batch: batch)

    def fast_step(self) -> dict:
        """Which parts of the fast training step are on."""
        wrapper = self.optim_wrapper
        return dict(
            param_groups=len(wrapper.optimizer.param_groups),
            optim_wrapper=type(wrapper).__name__,
            grad_scaler=hasattr(wrapper, 'loss_scaler'),
            channels_last=any(
                p.dim() == 4 and not p.is_contiguous() and
                p.is_contiguous(memory_format=torch.channels_last)
                for p in self.model.parameters()),
            micro_batch=[s.batch for s in self.plan.stages],
            prefetch=self.prefetch)

    def enter(self, index: int) -> None:
        """Stage ``index`` as training sets it."""
        stage = self.plan.stages[index]
        self.driver.apply(self.plan.state(index))
        if stage.batch is not None:
            self.loader.batch_sampler.batch_size = stage.batch
            compat.set_accumulative_counts(self.optim_wrapper,
                                           stage.accumulation)
        compat.restart_workers(self.loader)  # persistent workers re-fork

    def _batches(self, iterator, n):
        for _ in range(n):
            try:
                yield next(iterator)
            except StopIteration:
                raise SystemExit(
                    f'The train loader ran out of batches ({len(self.loader)}'
                    ' an epoch): timing needs the first batch, the '
                    f'{self.queued} the workers queue ahead and warm-up and '
                    'timed batches. Give a larger data set (--fake-data N) '
                    'or fewer --iters / --warmup.') from None

    def time_loader(self, iters, warmup):
        """Images/s of the input pipeline alone from a drained queue, and
        the seconds to the first batch from fresh workers."""
        start = time.perf_counter()
        it = iter(self.loader)
        batch = self.augment(next(it))
        _sync(self.device)
        first = time.perf_counter() - start
        for batch in self._batches(it, self.queued + warmup):
            self.augment(batch)
        _sync(self.device)
        n, start = 0, time.perf_counter()
        for batch in self._batches(it, iters):
            batch = self.augment(batch)
            n += len(batch['inputs'])
        _sync(self.device)
        return n / (time.perf_counter() - start), first, batch

    def time_model(self, batch, iters, warmup):
        """Images/s of the training step alone on one prepared batch."""
        for _ in range(warmup):
            self.model.train_step(dict(batch),
                                  optim_wrapper=self.optim_wrapper)
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(iters):
            self.model.train_step(dict(batch),
                                  optim_wrapper=self.optim_wrapper)
        _sync(self.device)
        return iters * len(batch['inputs']) / (time.perf_counter() - start)

    def time_end_to_end(self, iters, warmup):
        loader = DevicePrefetcher(
            self.loader, lambda batch, i: self.augment(batch),
            self.device) if self.prefetch else self.loader
        it = iter(loader)
        for batch in self._batches(it, 1 + self.queued + warmup):
            self.model.train_step(batch, optim_wrapper=self.optim_wrapper)
        _sync(self.device)
        n, start = 0, time.perf_counter()
        for batch in self._batches(it, iters):
            self.model.train_step(batch, optim_wrapper=self.optim_wrapper)
            n += len(batch['inputs'])
        _sync(self.device)
        return n / (time.perf_counter() - start)


def measure(bench: Bench, iters: int, warmup: int, repeats: int,
            log=print) -> dict:
    """Per-stage rates of ``bench`` and the speedups they give."""
    plan = bench.plan
    distinct = {}
    for s in plan.stages:
        if s.epochs > 0:
            distinct.setdefault((s.size, s.magnitude, s.batch), s.index)
    runs = {key: [] for key in distinct}
    bench.model.train()
    for round_ in range(repeats):
        for key, index in distinct.items():
            bench.enter(index)
            loader_rate, first, batch = bench.time_loader(iters, warmup)
            want = hw(plan.stages[index].size)
            got = {tuple(x.shape[-2:]) for x in batch['inputs']}
            if got != {want} and not bench.driver.preprocessor:
                raise SystemExit(f'stage {index + 1}: the loader gave '
                                 f'{got}, not {want}')
            model_rate = bench.time_model(_to(batch, bench.device), iters,
                                          warmup)
            e2e_rate = bench.time_end_to_end(iters, warmup)
            # the first batch's wait beyond a steady-state batch
            switch = max(0.0, first - len(batch['inputs']) / loader_rate)
            runs[key].append(dict(loader=loader_rate, model=model_rate,
                                  end_to_end=e2e_rate, switch_s=switch))
            log(f'round {round_ + 1}/{repeats} stage {index + 1} '
                f'B={plan.stages[index].size} '
                f'm={plan.stages[index].magnitude:g}: loader '
                f'{loader_rate:.0f}, model {model_rate:.0f}, end-to-end '
                f'{e2e_rate:.0f} img/s')
    rates = {key: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
             for key, rs in runs.items()}
    return summarize(plan, rates, len(bench.loader.dataset))


def summarize(plan, rates: dict, images: int) -> dict:
    """The speedups that per-stage ``rates`` give (keyed by (size,
    magnitude, batch): loader, model, end_to_end img/s and switch_s); a
    measured speedup above the model-only ceiling is reported invalid."""
    rows = []
    for table_row, s in zip(plan.table(), plan.stages):
        if s.epochs <= 0:
            continue
        r = rates[(s.size, s.magnitude, s.batch)]
        stage_s = s.epochs * images / r['end_to_end']
        rows.append(dict(
            table_row, **r, switch_share=r['switch_s'] / stage_s,
            bound_by='loader' if r['loader'] < r['model'] else 'model'))
    full = rows[-1]  # the final stage trains at full size: the baseline

    def speedup(kind):
        return (plan.baseline_epochs / full[kind]) / sum(
            r['epochs'] / r[kind] for r in rows)

    report = dict(
        predicted_speedup=plan.predicted_speedup(),
        ceiling_speedup=speedup('model'), stages=rows,
        max_switch_share=max(r['switch_share'] for r in rows))
    measured = speedup('end_to_end')
    report['measured_over_ceiling'] = measured / report['ceiling_speedup']
    if report['measured_over_ceiling'] > 1 + CEILING_TOLERANCE:
        report['measured_speedup'] = None
        report['invalid'] = (
            f'end to end read {measured:.2f}x, above the model-only ceiling '
            f"{report['ceiling_speedup']:.2f}x, which it cannot be: a stage's"
            ' loader or end-to-end rate is not the steady state (too few '
            'timed batches for the workers, or a machine busy with other '
            'work). Time more batches (--iters, --fake-data) on a quiet '
            'machine.')
    else:
        report['measured_speedup'] = measured
    return report


def format_report(report: dict) -> str:
    head = ('stage', 'epochs', 'B', 'm', 'batch', 'loader', 'model',
            'end-to-end', 'bound by', 'switch s', 'switch/stage')
    table = [head]
    for r in report['stages']:
        table.append((str(r['stage']), f"{r['epochs']:.4g}", str(r['size']),
                      f"{r['magnitude']:g}", str(r['batch']),
                      f"{r['loader']:.0f}", f"{r['model']:.0f}",
                      f"{r['end_to_end']:.0f}", r['bound_by'],
                      f"{r['switch_s']:.2f}",
                      f"{100 * r['switch_share']:.2f}%"))
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(t, widths)) for t in table]
    lines.insert(1, '  '.join('-' * w for w in widths))
    fast = report['fast_step']
    measured = (f"{report['measured_speedup']:.2f}x  "
                f"({report['measured_over_ceiling']:.2f} of the ceiling)"
                if report['measured_speedup'] is not None else
                f"INVALID: {report['invalid']}")
    lines += [
        f"predicted speedup (FLOPs)     {report['predicted_speedup']:.2f}x",
        f"ceiling speedup (model only)  {report['ceiling_speedup']:.2f}x",
        f'measured speedup (end to end) {measured}',
        f"stage switch (worker restart): at most "
        f"{100 * report['max_switch_share']:.2f}% of a stage's time",
        f"fast step: {fast['param_groups']} param groups, "
        f"{fast['optim_wrapper']}{' with' if fast['grad_scaler'] else ', no'}"
        f" GradScaler, channels_last {'on' if fast['channels_last'] else 'off'}"
        f", micro-batches {fast['micro_batch']}, device pipeline ahead "
        f"{'on' if fast['prefetch'] else 'off'}"]
    return '\n'.join(lines)


def benchmark(cfg, iters=15, warmup=3, repeats=3, fake_data=0,
              work_dir=None, log=print) -> dict:
    """Build ``cfg`` and measure it: the report :func:`main` prints."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if fake_data:
        fake_root = tempfile.mkdtemp(prefix='mmet_fake_')
        atexit.register(shutil.rmtree, fake_root, True)
        use_fake_data(cfg, fake_data, fake_root)
    cfg.work_dir = work_dir or osp.join(ROOT, 'work_dirs',
                                        'benchmark_curriculum')
    cfg.log_level = 'WARNING'
    bench = Bench(cfg)
    report = measure(bench, iters, warmup, repeats, log)
    report.update(
        device=str(bench.device), threads=torch.get_num_threads(),
        workers=bench.workers, batch_size=bench.plan.loader.batch_size
        if bench.plan.loader else None, max_epochs=bench.plan.max_epochs,
        baseline_epochs=bench.plan.baseline_epochs, repeats=repeats,
        iters=iters, fast_step=bench.fast_step())
    return report


def main(argv=None):
    args = parse_args(argv)
    # On a CPU, float math on denormal numbers is many times slower, and
    # whether the trainer's threads treat them as zero depends on what ran
    # before in the process (an FFT there turns them off): the model step at
    # one B measured 540 or 750 img/s by that alone. Flushing them here puts
    # every stage, and every config, under the same floating-point mode.
    torch.set_flush_denormal(True)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        apply_curriculum_args(cfg, args)
    except ValueError as e:
        raise SystemExit(f'benchmark_curriculum: error: {e}') from None
    report = benchmark(cfg, args.iters, args.warmup, args.repeats,
                       args.fake_data)
    report['config'] = args.config
    print(f"\n{args.config} on {report['device']} (img/s, median of "
          f"{args.repeats} rounds; {report['workers']} workers)")
    print(format_report(report))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
