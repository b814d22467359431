"""Measure what a curriculum saves in wall time, stage by stage.

    python tools/benchmark_curriculum.py configs/demo/fmnist_resnet_et.py
    python tools/benchmark_curriculum.py CONFIG --iters 20 --out bench.json

For each distinct stage of the config's ``EfficientTrainHook`` it times, with
the config's real model, optimizer, pipeline and data loader (workers
included), on the device present:

- ``loader``: the input pipeline alone (samples/s): the data loader, plus
  the decode and augmentation on the device for a config with
  ``DeviceAugmentPreprocessor`` (mmet/device_pipeline.py);
- ``model``: the training step alone on a batch of the stage's shape;
- ``end-to-end``: loader and training step together, as in training.

From the per-stage rates and the epochs of each stage it reports three
speedups against training every epoch at the final stage (the baseline):

- predicted: FLOPs, taking cost proportional to pixels;
- ceiling: model step only (what a loader that keeps up would give);
- measured: end to end.

and which of loader and model binds each stage, and the cost of a stage
switch: the hook restarts persistent workers, so the first batch after it
waits for fresh workers; its extra time is compared with the stage's
training time (its epochs at the end-to-end rate). For an EfficientTrain++
config (``EfficientTrainLoop``) the stages and epochs are the loop's, and
the baseline is ``baseline_epochs`` at full size. Ratios are measured side by
side in one run: ``--repeats`` rounds over all the stages, each rate the
median of its rounds, so that a shared machine's drift hits every stage
alike; absolute rates depend on the machine. Denormal numbers are flushed to
zero throughout (see ``main``), so that CPU rates compare.

``--fake-data N`` replaces the train set (ImageNet for the shipped configs)
by N random JPEGs of ImageNet's typical size, written to a temporary folder
and read through the config's own pipeline, so the shipped configs run on a
machine without the dataset:

    python tools/benchmark_curriculum.py \
        configs/device/resnet50_et-device_8xb256_in1k.py --fake-data 2048
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
from mmet.device_pipeline import DeviceAugmentPreprocessor  # noqa: E402
from mmet.hooks import EfficientTrainHook  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(
        description='Per-stage loader/model/end-to-end throughput of a '
        'curriculum')
    parser.add_argument('config', help='training config with an '
                        'EfficientTrainHook')
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
    return parser.parse_args()


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


def time_loader(loader, iters, warmup, prepare, device):
    """Samples/s of the input pipeline alone, and the seconds to the first
    batch from fresh workers (as after a stage switch); ``prepare`` is the
    device pipeline's part, if any."""
    start = time.perf_counter()
    it = iter(loader)
    prepare(next(it))
    _sync(device)
    first = time.perf_counter() - start
    for _ in range(warmup):
        prepare(next(it))
    _sync(device)
    n, start = 0, time.perf_counter()
    for _ in range(iters):
        batch = prepare(next(it))
        n += len(batch['inputs'])
    _sync(device)
    return n / (time.perf_counter() - start), first, batch


def device_pipeline_of(model):
    """The device pipeline's decode + augment step, or the identity."""
    pre = model.data_preprocessor
    if not isinstance(pre, DeviceAugmentPreprocessor):
        return lambda batch: batch

    def prepare(batch):
        return dict(batch, inputs=pre.augment(list(batch['inputs'])))
    return prepare


def time_model(model, optim_wrapper, batch, iters, warmup, device):
    """Samples/s of the training step alone on one cached batch."""
    for _ in range(warmup):
        model.train_step(batch, optim_wrapper=optim_wrapper)
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        model.train_step(batch, optim_wrapper=optim_wrapper)
    _sync(device)
    return iters * len(batch['inputs']) / (time.perf_counter() - start)


def time_end_to_end(model, optim_wrapper, loader, iters, warmup, device):
    it = iter(loader)
    for _ in range(warmup):
        model.train_step(next(it), optim_wrapper=optim_wrapper)
    _sync(device)
    n, start = 0, time.perf_counter()
    for _ in range(iters):
        batch = next(it)
        model.train_step(batch, optim_wrapper=optim_wrapper)
        n += len(batch['inputs'])
    _sync(device)
    return n / (time.perf_counter() - start)


def main():
    args = parse_args()
    # On a CPU, float math on denormal numbers is many times slower, and
    # whether the trainer's threads treat them as zero depends on what ran
    # before in the process (an FFT there turns them off): the model step at
    # one B measured 540 or 750 img/s by that alone. Flushing them here puts
    # every stage, and every config, under the same floating-point mode.
    torch.set_flush_denormal(True)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    apply_curriculum_args(cfg, args)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if args.fake_data:
        fake_root = tempfile.mkdtemp(prefix='mmet_fake_')
        atexit.register(shutil.rmtree, fake_root, True)
        use_fake_data(cfg, args.fake_data, fake_root)
    cfg.work_dir = osp.join(ROOT, 'work_dirs', 'benchmark_curriculum')
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    if cfg.train_cfg.get('type', '').split('.')[-1] == 'EfficientTrainLoop':
        # ET++: the loop derives the epochs and registers the hook; the
        # baseline is baseline_epochs at full size
        loop = runner.train_loop
        hook, max_epochs = loop.hook, loop.max_epochs
        baseline_epochs = loop.baseline_epochs
        predicted = loop.predicted_speedup()
    else:
        hook_cfgs = [h for h in cfg.get('custom_hooks', [])
                     if h['type'].split('.')[-1] == 'EfficientTrainHook']
        if not hook_cfgs:
            raise SystemExit(f'{args.config} has no EfficientTrainHook and '
                             'no EfficientTrainLoop.')
        hook_cfg = dict(hook_cfgs[0])
        hook_cfg.pop('type')
        hook = EfficientTrainHook(**hook_cfg)
        max_epochs = baseline_epochs = cfg.train_cfg.max_epochs
        predicted = None
    device = next(runner.model.parameters()).device
    model = runner.model
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    loader = runner.build_dataloader(cfg.train_dataloader, seed=0)
    hook.bind(loader.dataset, model)  # the driver: adapted, full size
    prepare = device_pipeline_of(model)
    full = hook.full_size
    if predicted is None:
        predicted = hook.curriculum.speedup(max_epochs, full)

    stages = hook.curriculum.table(max_epochs, full)
    distinct = {}
    for row in stages:
        distinct.setdefault((row['size'], row['magnitude']), row)
    # rounds over all stages, so that drift of the machine's speed hits every
    # stage alike; each rate is the median of its rounds
    runs = {key: [] for key in distinct}
    for round_ in range(args.repeats):
        for key, row in distinct.items():
            hook.apply_stage(row['stage'] - 1)
            compat.restart_workers(loader)  # persistent workers re-fork
            loader_rate, first, batch = time_loader(
                loader, args.iters, args.warmup, prepare, device)
            size = row['size']
            hw = (size, size) if isinstance(size, int) else tuple(size)
            got = {tuple(x.shape[-2:]) for x in batch['inputs']}
            assert got == {hw}, f'stage {row["stage"]}: loader gave {got}'
            batch = _to(batch, device)
            model_rate = time_model(model, optim_wrapper, batch, args.iters,
                                    args.warmup, device)
            e2e_rate = time_end_to_end(model, optim_wrapper, loader,
                                       args.iters, args.warmup, device)
            # the first batch's wait beyond a steady-state batch
            switch = max(0.0, first - len(batch['inputs']) / loader_rate)
            runs[key].append(dict(loader=loader_rate, model=model_rate,
                                  end_to_end=e2e_rate, switch_s=switch))
            print(f"round {round_ + 1}/{args.repeats} stage {row['stage']} "
                  f"B={row['size']} m={row['magnitude']:g}: loader "
                  f'{loader_rate:.0f}, model {model_rate:.0f}, end-to-end '
                  f'{e2e_rate:.0f} img/s', flush=True)
    measured = {
        key: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
        for key, rs in runs.items()
    }
    rows = []
    for row in stages:
        rates = measured[(row['size'], row['magnitude'])]
        stage_s = row['epochs'] * len(loader.dataset) / rates['end_to_end']
        rows.append(dict(
            row, **rates,
            switch_share=rates['switch_s'] / stage_s if stage_s else 0.0,
            bound_by='loader' if rates['loader'] < rates['model'] else
            'model'))

    last = rows[-1]  # the final stage trains at full size: the baseline

    def speedup(kind):
        base = baseline_epochs / last[kind]
        return base / sum(r['epochs'] / r[kind] for r in rows)

    report = dict(
        config=args.config,
        device=str(device),
        threads=torch.get_num_threads(),
        workers=cfg.train_dataloader.get('num_workers', 0),
        batch_size=cfg.train_dataloader.batch_size,
        max_epochs=max_epochs,
        repeats=args.repeats,
        stages=rows,
        baseline_epochs=baseline_epochs,
        predicted_speedup=predicted,
        ceiling_speedup=speedup('model'),
        measured_speedup=speedup('end_to_end'))
    report['measured_over_ceiling'] = (
        report['measured_speedup'] / report['ceiling_speedup'])
    report['max_switch_share'] = max(r['switch_share'] for r in rows)

    head = ('stage', 'epochs', 'B', 'm', 'loader', 'model', 'end-to-end',
            'bound by', 'switch s', 'switch/stage')
    table = [head]
    for r in rows:
        table.append((str(r['stage']), str(r['epochs']), str(r['size']),
                      f"{r['magnitude']:g}", f"{r['loader']:.0f}",
                      f"{r['model']:.0f}", f"{r['end_to_end']:.0f}",
                      r['bound_by'], f"{r['switch_s']:.2f}",
                      f"{100 * r['switch_share']:.2f}%"))
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    print(f'\n{args.config} on {device} (img/s, median of {args.repeats} '
          f"rounds; batch {report['batch_size']}, {report['workers']} "
          'workers)')
    for i, t in enumerate(table):
        print('  '.join(c.rjust(w) for c, w in zip(t, widths)))
        if i == 0:
            print('  '.join('-' * w for w in widths))
    print(f"predicted speedup (FLOPs)     {report['predicted_speedup']:.2f}x")
    print(f"ceiling speedup (model only)  {report['ceiling_speedup']:.2f}x")
    print(f"measured speedup (end to end) {report['measured_speedup']:.2f}x"
          f"  ({report['measured_over_ceiling']:.2f} of the ceiling)")
    print(f"stage switch (worker restart): at most "
          f"{100 * report['max_switch_share']:.2f}% of a stage's time")
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
