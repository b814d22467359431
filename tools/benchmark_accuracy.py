"""Accuracy and wall time of EfficientTrain against the baseline, over seeds.

    python tools/benchmark_accuracy.py                  # the demo, 3 seeds
    python tools/benchmark_accuracy.py fmnist --seeds 5 --epochs 20
    python tools/benchmark_accuracy.py CONFIG           # your baseline config

Each seed trains, one after the other and in this order (so that a drift of
the machine's speed hits every method alike):

- ``baseline``: the config as it is;
- ``efficienttrain``: the same with ``EfficientTrainHook`` (ET's five
  stages);
- ``efficienttrain++``: the same with ``EfficientTrainLoop`` at
  ``--etpp-speedup`` (1.5x) against the baseline's epochs;
- ``equal-compute``: the baseline trained for ET's compute: its epochs cut to
  ET's relative compute (whole epochs), with the epoch-based LR schedule
  compressed to fit, so it ends at the baseline's final LR. The curriculum
  must beat simply training for less;
- ``progressive-resizing``: ET's B schedule with bilinear down-sampling
  instead of the Fourier crop and RandAugment at its final magnitude
  throughout: what Composer's ProgressiveResizing does. It shows what the
  exact low-pass and the magnitude ramp add.

It prints mean ± std (over seeds) of top-1 and of the train wall time, the
speedup of the median wall times, the majority-class rate of the val set and
whether a run collapsed to it, a verdict line per curriculum and the issue's
targets, and writes ``benchmark_accuracy.json`` and ``benchmark_accuracy.png``
(top-1 against wall time, one point per method, error bars one std) to
``--work-dir``. Finished runs are cached there (one JSON per method and
seed, keyed by their settings), so an interrupted sweep continues where it
stopped.

Presets: ``fmnist`` (default) is the demo at its regime: the crop-and-flip
recipe batched in the trainer (``configs/demo/fmnist_resnet_cropflip_*.py``);
``fmnist-per-sample`` the same recipe augmented per sample in the data
workers; ``fmnist-randaug`` and ``fmnist-randaug-per-sample`` the recipe with
RandAugment (m = 9, which ET ramps 1, 3, 5, 7, 9) on either
path (``configs/demo/fmnist_resnet_{baseline,et}{,_batchaug}.py``).
A CONFIG is a baseline config whose train pipeline the curriculum can
drive; the curricula are added to it as ``tools/train.py --curriculum``
adds them.
"""
import argparse
import copy
import hashlib
import json
import math
import os
import os.path as osp
import statistics
import sys
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.evaluator import BaseMetric  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.registry import METRICS  # noqa: E402

import mmet  # noqa: E402,F401
from mmet.config import (curriculum_hook, curriculum_loop,  # noqa: E402
                         type_name)
from mmet.curriculum import Curriculum  # noqa: E402
from mmet.plan import plan_from_config  # noqa: E402
from mmet.schedulers import scale_schedule  # noqa: E402

DEMO = osp.join(ROOT, 'configs', 'demo')
PRESET_CONFIGS = {
    # the demo's recipe (crop and flip), batched in the trainer
    'fmnist': ('fmnist_resnet_cropflip_baseline.py',
               'fmnist_resnet_cropflip_et.py',
               'fmnist_resnet_cropflip_etpp.py'),
    # the same recipe, augmented per sample in the data workers
    'fmnist-per-sample': ('fmnist_resnet_cropflip_baseline.py',
                          'fmnist_resnet_cropflip_et.py',
                          'fmnist_resnet_cropflip_etpp.py'),
    # RandAugment (m ramped to 9) and ET's magnitude ramp, batched
    'fmnist-randaug': ('fmnist_resnet_baseline_batchaug.py',
                       'fmnist_resnet_et_batchaug.py', None),
    # the same, per sample in the data workers
    'fmnist-randaug-per-sample': ('fmnist_resnet_baseline.py',
                                  'fmnist_resnet_et.py',
                                  'fmnist_resnet_etpp.py'),
}
METHODS = ('baseline', 'efficienttrain', 'efficienttrain++', 'equal-compute',
           'progressive-resizing')
# the demo's regime: see docs/evidence.md for why these numbers
DEMO_EPOCHS = 10
DEMO_TRAIN_SUBSET = 16000
# a run whose predictions end at the class prior learned nothing
COLLAPSE_SHARE = 95.0  # % of the predictions in one class
COLLAPSE_MARGIN = 0.5  # top-1 points above the majority-class rate


@METRICS.register_module()
class PredictionBalance(BaseMetric):
    """The class balance of the labels and of the predictions.

    ``majority_rate``: % of the samples in the most common true class, the
    top-1 of a model that always predicts it. ``top_prediction_share``: % of
    the predictions that fall in the most predicted class.
    """

    default_prefix = 'balance'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append((_label(sample['gt_label']),
                                 _label(sample['pred_label'])))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        n = len(results)
        truth = Counter(g for g, _ in results)
        preds = Counter(p for _, p in results)
        return dict(
            majority_rate=100.0 * max(truth.values()) / n,
            top_prediction_share=100.0 * max(preds.values()) / n)


def _label(value) -> int:
    """A class index from a one-element label tensor or array."""
    return int(value.reshape(-1)[0])


class TrainEpochTimer(Hook):
    """Wall time of the train epochs alone (loading included, eval not)."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self.seconds = 0.0
        self._start = None

    def before_train_epoch(self, runner) -> None:
        self._start = time.perf_counter()

    def after_train_epoch(self, runner) -> None:
        self.seconds += time.perf_counter() - self._start


class FinalMetrics(Hook):
    """The metrics of each validation, by epoch."""

    priority = 'LOWEST'

    def __init__(self):
        self.by_epoch: Dict[int, dict] = {}

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.by_epoch[runner.epoch] = dict(metrics or {})


# configs ---------------------------------------------------------------------
def is_etpp(cfg: Config) -> bool:
    """Whether ``cfg`` trains for a budget (EfficientTrain++)."""
    loop = curriculum_loop(cfg)
    return loop is not None and loop.get('max_epochs') is None


def scale_schedulers(cfg: Config, factor: float) -> None:
    """Stretch the epoch-based param schedules by ``factor`` (in place).

    A scheduler shrunk to less than one iteration (a warm-up of a fraction
    of a tiny epoch) is dropped when the run starts
    (:func:`drop_empty_schedulers`), where the epoch's length is known.
    """
    if cfg.get('param_scheduler'):
        cfg.param_scheduler = scale_schedule(cfg.param_scheduler, factor)


def _scheduler_list(scheds) -> list:
    """Every scheduler config, also of per-optimizer dicts."""
    if isinstance(scheds, dict) and 'type' not in scheds:
        return [s for v in scheds.values() for s in _scheduler_list(v)]
    if isinstance(scheds, (list, tuple)):
        return list(scheds)
    return [scheds] if scheds else []


def drop_empty_schedulers(runner, method: str, log=print) -> None:
    """Drop the iteration-converted schedulers of an unbuilt Runner that
    span no iteration of its epochs, saying which.

    A warm-up of a fraction of an epoch, scaled to a few epochs of a small
    data set, rounds to zero iterations, and mmengine refuses it ("end
    should be larger than begin"). Any data set: the length of an epoch is
    the train loader's.
    """
    from search_curriculum import _drop_empty_schedulers
    scheds = runner.param_schedulers
    if not scheds:
        return
    length = len(runner.train_loop.dataloader)
    kept = _drop_empty_schedulers(scheds, length)
    kept_ids = {id(s) for s in _scheduler_list(kept)}
    for s in _scheduler_list(scheds):
        if id(s) not in kept_ids:
            log(f"{method}: the {s['type']} of epochs {s.get('begin', 0):g} "
                f"to {s['end']:g} spans no iteration of this run's "
                f'{length}-iteration epochs: dropped (more --epochs or '
                'more images keep it)', flush=True)
    runner.param_schedulers = kept


def set_epochs(cfg: Config, epochs: int) -> None:
    """Train for ``epochs`` full-size epochs, the LR schedule fitted to them.

    An EfficientTrain++ config keeps its budget's ratio: its
    ``baseline_epochs`` become ``epochs``.
    """
    if is_etpp(cfg):
        cfg.train_cfg.baseline_epochs = epochs
        return
    scale_schedulers(cfg, epochs / cfg.train_cfg.max_epochs)
    cfg.train_cfg.max_epochs = epochs


def per_sample(cfg: Config) -> None:
    """Move a batched crop-and-flip recipe into the data workers.

    The ``DeviceAugmentPreprocessor``'s padded crop, flip and Fourier crop
    become the per-sample transforms (mmpretrain's ``RandomCrop`` and
    ``RandomFlip``, mmet's ``FourierCrop``) in two data workers; the model
    gets mmpretrain's plain data preprocessor.
    """
    pre = cfg.data_preprocessor
    if pre.get('randaug') is not None:
        raise SystemExit('per_sample() moves crop, flip and the Fourier crop '
                         'only; this preprocessor also runs RandAugment.')
    cfg.data_preprocessor = dict(num_classes=pre.num_classes, mean=pre.mean,
                                 std=pre.std)
    cfg.train_dataloader.update(
        num_workers=2, persistent_workers=True,
        collate_fn=dict(type='pseudo_collate'))
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='RandomCrop', crop_size=pre.crop_size,
             padding=pre.crop_padding),
        dict(type='RandomFlip', prob=pre.flip_prob, direction='horizontal'),
        dict(type='FourierCrop', size=pre.crop_size),
        dict(type='PackInputs'),
    ]


def curriculum_of(cfg: Config) -> Optional[Curriculum]:
    """The curriculum a config trains (its loop's or hook's), or None."""
    if curriculum_loop(cfg) is None and curriculum_hook(cfg) is None:
        return None
    return plan_from_config(cfg).base_curriculum


def predicted_speedup(cfg: Config) -> float:
    """FLOPs speedup of a config against its baseline's epochs at full
    size (the plan's, :meth:`~mmet.plan.TrainPlan.predicted_speedup`)."""
    if curriculum_of(cfg) is None:
        return 1.0
    return plan_from_config(cfg).predicted_speedup()


def equal_compute_epochs(et_cfg: Config) -> int:
    """The baseline's epochs cut to ET's compute, rounded to whole epochs."""
    return max(1, int(math.floor(
        et_cfg.train_cfg.max_epochs / predicted_speedup(et_cfg) + 0.5)))


def progressive_resizing(et_cfg: Config) -> Config:
    """ET's B schedule, bilinear down-sampling, no RandAugment ramp."""
    cfg = copy.deepcopy(et_cfg)
    pre = cfg.get('data_preprocessor') or {}
    if type_name(pre) != 'DeviceAugmentPreprocessor':
        raise SystemExit(
            'The progressive-resizing ablation resizes whole batches, so it '
            'needs the batched data path (DeviceAugmentPreprocessor); use '
            'the fmnist preset or leave it out of --methods.')
    pre['low_pass'] = 'bilinear'
    et_stages = curriculum_of(cfg).stages
    final = max(s.magnitude for s in et_stages)
    stages = [dict(share=s.share, bandwidth=s.bandwidth, magnitude=final)
              for s in et_stages]
    (curriculum_loop(cfg) or curriculum_hook(cfg))['curriculum'] = stages
    return cfg


def with_curriculum(base: Config, curriculum: str, speedup: float
                    ) -> Config:
    """``base`` with a curriculum added, as ``tools/train.py --curriculum``.
    """
    from mmet.cli import apply_curriculum_args
    return apply_curriculum_args(copy.deepcopy(base), argparse.Namespace(
        curriculum=curriculum, budget=None, low_pass=None,
        speedup=speedup if curriculum == 'efficienttrain++' else None))


def method_configs(source: str, methods: Sequence[str], epochs: int,
                   etpp_speedup: float, options: Optional[dict] = None,
                   train_subset: int = 0, val_subset: int = 0
                   ) -> Dict[str, Config]:
    """The config of each method, from a preset name or a baseline config.
    """
    def load(path):
        cfg = Config.fromfile(path)
        if options:
            cfg.merge_from_dict(options)
        set_subsets(cfg, train_subset, val_subset)
        return cfg

    if source in PRESET_CONFIGS:
        base, et, etpp = (load(osp.join(DEMO, f)) if f else None
                          for f in PRESET_CONFIGS[source])
        if etpp is None:
            etpp = with_curriculum(base, 'efficienttrain++', etpp_speedup)
        etpp.train_cfg.speedup = etpp_speedup
        if source == 'fmnist-per-sample':
            for cfg in (base, et, etpp):
                per_sample(cfg)
    else:
        base = load(source)
        et = with_curriculum(base, 'efficienttrain', None)
        etpp = with_curriculum(base, 'efficienttrain++', etpp_speedup)
    for cfg in (base, et, etpp):
        set_epochs(cfg, epochs)
    cfgs = {'baseline': base, 'efficienttrain': et, 'efficienttrain++': etpp}
    if 'equal-compute' in methods:
        eq = copy.deepcopy(base)
        set_epochs(eq, equal_compute_epochs(et))
        eq.reference_epochs = epochs  # what its predicted speedup is against
        cfgs['equal-compute'] = eq
    if 'progressive-resizing' in methods:
        cfgs['progressive-resizing'] = progressive_resizing(et)
    return {m: cfgs[m] for m in methods}


def set_subsets(cfg: Config, train: int, val: int) -> None:
    if train:
        cfg.train_dataloader.dataset.indices = train
    if val:
        cfg.val_dataloader.dataset.indices = val


# one run ---------------------------------------------------------------------
def fingerprint(cfg: Config) -> str:
    """A short hash of everything that decides a run's result."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds} s'
    if seconds < 3600:
        return f'{seconds // 60} min {seconds % 60:02d} s'
    return f'{seconds // 3600} h {seconds // 60 % 60:02d} min'


class Progress(Hook):
    """A line per epoch (and at most every ``interval`` s within a long
    one) with the run's elapsed wall time and its ETA, and the top-1 of
    each validation.

    The ETA weighs the epochs by their predicted cost (the pixels of their
    curriculum stage, as in :func:`plan_of`), so the cheap low-resolution
    epochs at the start of a curriculum do not make it look too short.
    """

    priority = 'LOWEST'

    def __init__(self, name: str, log=print, interval: float = 60.0):
        self.name, self.log, self.interval = name, log, interval
        self.costs: Optional[List[float]] = None

    def before_train(self, runner) -> None:
        self.start = self.last = time.perf_counter()

    def _epoch_costs(self, runner) -> List[float]:
        epochs = runner.max_epochs
        stages = plan_of(runner).get('stages') or []
        costs = []
        for e in range(epochs):
            row = next((r for r in stages
                        if r['start_epoch'] <= e < r['end_epoch']), None)
            costs.append(row['relative_cost'] if row else 1.0)
        return costs

    def _report(self, runner, epoch: int, fraction: float) -> None:
        """``fraction`` of epoch ``epoch`` (0-based) is done."""
        if self.costs is None or len(self.costs) != runner.max_epochs:
            self.costs = self._epoch_costs(runner)
        done = sum(self.costs[:epoch]) + self.costs[epoch] * fraction
        total = sum(self.costs)
        now = time.perf_counter()
        self.last = now
        elapsed = now - self.start
        where = (f'epoch {epoch + 1}/{runner.max_epochs}' if fraction >= 1
                 else f'epoch {epoch + 1}/{runner.max_epochs} at '
                 f'{fraction:.0%}')
        eta = (_duration(elapsed * (total - done) / done) if done > 0
               else '?')
        self.log(f'  {self.name}: {where}, {done / total:.0%} of the run, '
                 f'{_duration(elapsed)} elapsed, ETA {eta}', flush=True)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if time.perf_counter() - self.last < self.interval:
            return
        length = len(runner.train_loop.dataloader)
        if batch_idx + 1 < length:
            self._report(runner, runner.epoch, (batch_idx + 1) / length)

    def after_train_epoch(self, runner) -> None:
        self._report(runner, runner.epoch, 1.0)  # 0-based until it ends

    def after_val_epoch(self, runner, metrics=None) -> None:
        top1 = (metrics or {}).get('accuracy/top1')
        if top1 is not None:
            self.log(f'  {self.name}: epoch {runner.epoch} val top-1 '
                     f'{top1:.2f}%', flush=True)


def run_once(method: str, cfg: Config, seed: int, work_dir: str,
             log=print) -> dict:
    """Train one method with one seed; the result as a plain dict.

    ``log`` gets the run's progress (a line per epoch, with its ETA) and
    what was changed to make it train (a scheduler that spans no
    iteration, dropped).
    """
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = osp.join(work_dir, f'{method}-seed{seed}')
    cfg.randomness = dict(seed=seed, deterministic=False)
    evaluator = cfg.val_evaluator
    cfg.val_evaluator = (list(evaluator) if isinstance(evaluator, list) else
                         [evaluator]) + [dict(type='PredictionBalance')]
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=-1, save_last=False)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    drop_empty_schedulers(runner, method, log)
    timer, metrics = TrainEpochTimer(), FinalMetrics()
    runner.register_hook(timer)
    runner.register_hook(metrics)
    runner.register_hook(Progress(method, log))
    start = time.perf_counter()
    runner.train()
    total = time.perf_counter() - start
    curve = [(e, m['accuracy/top1']) for e, m in sorted(
        metrics.by_epoch.items())]
    final = metrics.by_epoch[max(metrics.by_epoch)]
    top1 = final['accuracy/top1']
    majority = final['balance/majority_rate']
    share = final['balance/top_prediction_share']
    result = dict(
        method=method, seed=seed, epochs=runner.max_epochs,
        train_seconds=timer.seconds, total_seconds=total, top1=top1,
        top1_curve=curve, majority_rate=majority,
        top_prediction_share=share,
        collapsed=is_collapsed(top1, majority, share))
    result.update(plan_of(runner))
    return result


def warm_up(cfg: Config, work_dir: str) -> None:
    """Train ``cfg`` for a few iterations, untimed, so that the first timed
    run does not pay for the process's cold start (allocator, caches)."""
    cfg = copy.deepcopy(cfg)
    cfg.train_dataloader.dataset.indices = 4 * cfg.train_dataloader.batch_size
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=-1, save_last=False)
    cfg.work_dir = osp.join(work_dir, 'warm-up')
    cfg.log_level = 'WARNING'
    Runner.from_cfg(cfg).train()


def is_collapsed(top1: float, majority_rate: float,
                 top_prediction_share: float) -> bool:
    """Whether a run ended at the class prior: (nearly) one predicted class,
    or no better than always predicting the most common class."""
    return top_prediction_share >= COLLAPSE_SHARE or \
        top1 <= majority_rate + COLLAPSE_MARGIN


def plan_of(runner) -> dict:
    """The curriculum a finished run followed: stages and predicted speedup
    (its loop's plan, or its hook's)."""
    plan = getattr(runner.train_loop, 'plan', None)
    hooks = [h for h in runner.hooks
             if type(h).__name__ == 'EfficientTrainHook']
    if plan is None and hooks:
        plan = hooks[0].plan
    if plan is None:  # full size: the speedup is in the epochs it cuts
        reference = runner.cfg.get('reference_epochs', runner.max_epochs)
        return dict(predicted_speedup=reference / runner.max_epochs,
                    compute_epochs=runner.max_epochs)
    return dict(predicted_speedup=plan.predicted_speedup(),
                stages=plan.table(), compute_epochs=plan.compute_epochs())


def read_cached(path: str, log=print) -> Optional[dict]:
    """The cached result at ``path``; None if there is none or it is
    unreadable (empty, truncated by a killed run, not a result), which is
    said in a line naming the file, so that the run trains again."""
    if not osp.exists(path):
        return None
    try:
        with open(path) as f:
            cached = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problem = ('is empty' if osp.getsize(path) == 0 else
                   f'is not readable JSON (truncated?): {e}')
    else:
        if isinstance(cached, dict) and 'top1' in cached:
            return cached
        problem = 'holds no run result'
    log(f'{path} {problem}; training that run again to replace it',
        flush=True)
    return None


def cached_run(method: str, cfg: Config, seed: int, work_dir: str,
               log=print) -> dict:
    """:func:`run_once`, or its cached result if the settings are the same.
    """
    key = fingerprint(cfg)
    path = osp.join(work_dir, 'runs', f'{method}-seed{seed}.json')
    cached = read_cached(path, log)
    if cached is not None and cached.get('fingerprint') == key:
        log(f'{method} seed {seed}: cached ({path})')
        return cached
    log(f'{method} seed {seed}: training', flush=True)
    result = run_once(method, cfg, seed, work_dir, log)
    result['fingerprint'] = key
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)
    log(f"{method} seed {seed}: top-1 {result['top1']:.2f}, train "
        f"{result['train_seconds']:.1f} s", flush=True)
    return result


# statistics ------------------------------------------------------------------
def _std(xs: Sequence[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarize(runs: List[dict]) -> Dict[str, dict]:
    """Per method: mean ± std of top-1 and wall time, and speedups.

    The speedup is the ratio of median wall times against the baseline;
    ``paired_speedup`` the mean ± std of the per-seed ratios.
    """
    by_method: Dict[str, List[dict]] = {}
    for r in runs:
        by_method.setdefault(r['method'], []).append(r)
    base = by_method.get('baseline')
    base_wall = {r['seed']: r['train_seconds'] for r in base or []}
    out = {}
    for method, rs in by_method.items():
        tops = [r['top1'] for r in rs]
        walls = [r['train_seconds'] for r in rs]
        row = dict(
            method=method, seeds=[r['seed'] for r in rs],
            epochs=rs[0]['epochs'], top1_mean=statistics.fmean(tops),
            top1_std=_std(tops), top1=tops, wall_mean=statistics.fmean(walls),
            wall_std=_std(walls), wall_median=statistics.median(walls),
            predicted_speedup=rs[0]['predicted_speedup'],
            majority_rate=rs[0]['majority_rate'],
            collapsed=sum(r['collapsed'] for r in rs))
        if base:
            row['speedup'] = statistics.median(base_wall.values()) / \
                row['wall_median']
            paired = [base_wall[r['seed']] / r['train_seconds']
                      for r in rs if r['seed'] in base_wall]
            row['paired_speedup_mean'] = statistics.fmean(paired)
            row['paired_speedup_std'] = _std(paired)
            # beyond the FLOPs bound: the machine was busy during a run
            row['speedup_noise'] = row['speedup'] > \
                row['predicted_speedup'] * 1.02
        out[method] = row
    return out


def _points(x: float) -> str:
    return f'{x:+.1f}'.replace('-', '\u2212')


def verdicts(summary: Dict[str, dict]) -> List[str]:
    """One line per curriculum: speed and accuracy against the baselines."""
    base = summary.get('baseline')
    if base is None:
        return []
    eq = summary.get('equal-compute')
    lines = []
    names = {'efficienttrain': 'ET', 'efficienttrain++': 'ET++',
             'progressive-resizing': 'progressive resizing'}
    for method, name in names.items():
        row = summary.get(method)
        if row is None:
            continue
        text = (f"{name}: {row['speedup']:.2f}x faster, "
                f"{_points(row['top1_mean'] - base['top1_mean'])} points vs "
                'the baseline')
        if eq is not None:
            text += (f", {_points(row['top1_mean'] - eq['top1_mean'])} vs "
                     'the equal-compute baseline')
        if row['collapsed']:
            text += f" (COLLAPSED in {row['collapsed']} run(s))"
        if row.get('speedup_noise'):
            text += (' (speedup above the FLOPs prediction: the machine was '
                     'busy; measure again)')
        lines.append(text)
    return lines


def _within(a: dict, b: dict) -> bool:
    """|mean a - mean b| within one std (the larger of the two)."""
    return abs(a['top1_mean'] - b['top1_mean']) <= \
        max(a['top1_std'], b['top1_std'])


def targets(summary: Dict[str, dict]) -> List[dict]:
    """The evidence targets that this benchmark measures, met or not.

    (ET's wall speedup against the model-only ceiling is
    ``tools/benchmark_curriculum.py``'s.)
    """
    base, et = summary.get('baseline'), summary.get('efficienttrain')
    eq, pp = summary.get('equal-compute'), summary.get('efficienttrain++')
    rows = []
    if base and et:
        rows.append(dict(
            target='ET top-1 vs baseline: within 1 std',
            value=f"{et['top1_mean'] - base['top1_mean']:+.2f} (std "
            f"{base['top1_std']:.2f} / {et['top1_std']:.2f})",
            met=_within(et, base)))
    if et and eq:
        rows.append(dict(
            target='ET vs equal-compute baseline: better by > 1 std',
            value=f"{et['top1_mean'] - eq['top1_mean']:+.2f} (std "
            f"{et['top1_std']:.2f} / {eq['top1_std']:.2f})",
            met=et['top1_mean'] - eq['top1_mean'] >
            max(et['top1_std'], eq['top1_std'])))
    if base and pp:
        rows.append(dict(
            target='ET++ wall speedup >= 1.3x',
            value=f"{pp['speedup']:.2f}x", met=pp['speedup'] >= 1.3))
        rows.append(dict(
            target='ET++ top-1 within 1 std of the baseline',
            value=f"{pp['top1_mean'] - base['top1_mean']:+.2f}",
            met=_within(pp, base)))
    return rows


# output ----------------------------------------------------------------------
def format_table(head: Sequence[str], rows: List[Sequence[str]]) -> str:
    table = [tuple(head)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(r, widths))
             for r in table]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def summary_table(summary: Dict[str, dict]) -> str:
    head = ('method', 'epochs', 'top-1 (%)', 'train wall (s)', 'speedup',
            'predicted', 'majority class (%)', 'collapsed')
    rows = []
    for s in summary.values():
        speed = f"{s['speedup']:.2f}x" if 'speedup' in s else '-'
        if s.get('speedup_noise'):
            speed += '?'
        rows.append((
            s['method'], str(s['epochs']),
            f"{s['top1_mean']:.2f} \u00b1 {s['top1_std']:.2f}",
            f"{s['wall_mean']:.1f} \u00b1 {s['wall_std']:.1f}", speed,
            f"{s['predicted_speedup']:.2f}x", f"{s['majority_rate']:.1f}",
            f"{s['collapsed']}/{len(s['seeds'])}"))
    return format_table(head, rows)


def plot(summary: Dict[str, dict], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s in summary.values():
        ax.errorbar(s['wall_mean'], s['top1_mean'], xerr=s['wall_std'],
                    yerr=s['top1_std'], fmt='o', capsize=4,
                    label=f"{s['method']} ({len(s['seeds'])} seeds)")
    ax.set_xlabel('train wall time (s)')
    ax.set_ylabel('val top-1 (%)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Top-1 and wall time of the curricula over seeds')
    parser.add_argument(
        'source', nargs='?', default='fmnist',
        help=f'a preset ({", ".join(PRESET_CONFIGS)}) or a baseline config')
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--methods', nargs='+', choices=METHODS,
                        default=list(METHODS))
    parser.add_argument('--epochs', type=int, default=DEMO_EPOCHS,
                        help='full-size epochs of the baseline')
    parser.add_argument('--etpp-speedup', type=float, default=1.5,
                        help="ET++'s budget against --epochs full-size epochs")
    parser.add_argument('--train-subset', type=int, default=DEMO_TRAIN_SUBSET,
                        help='train on the first N images (0: all)')
    parser.add_argument('--val-subset', type=int, default=0,
                        help='validate on the first N images (0: all)')
    parser.add_argument('--work-dir', default=osp.join(
        ROOT, 'work_dirs', 'benchmark_accuracy'))
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of every method, key=value')
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.epochs < 1:
        parser.error('--seeds and --epochs must be >= 1')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    # see tools/benchmark_curriculum.py: denormals alone move a CPU model
    # step by 40%; flushing them puts every method under the same mode
    torch.set_flush_denormal(True)
    cfgs = method_configs(args.source, args.methods, args.epochs,
                          args.etpp_speedup, args.cfg_options,
                          args.train_subset, args.val_subset)
    warm_up(next(iter(cfgs.values())), args.work_dir)
    runs = [cached_run(method, cfg, seed, args.work_dir)
            for seed in range(args.seeds) for method, cfg in cfgs.items()]
    summary = summarize(runs)
    print()
    print(summary_table(summary))
    for line in verdicts(summary):
        print(line)
    goals = targets(summary)
    if goals:
        print()
        print(format_table(('target', 'measured', 'met'), [
            (g['target'], g['value'], 'yes' if g['met'] else 'NO')
            for g in goals]))
    report = dict(source=args.source, seeds=args.seeds, epochs=args.epochs,
                  train_subset=args.train_subset, summary=summary,
                  verdicts=verdicts(summary), targets=goals, runs=runs)
    os.makedirs(args.work_dir, exist_ok=True)
    out = osp.join(args.work_dir, 'benchmark_accuracy.json')
    with open(out, 'w') as f:
        json.dump(report, f, indent=1)
    png = osp.join(args.work_dir, 'benchmark_accuracy.png')
    plot(summary, png, f'{args.source}: {args.seeds} seeds, '
         f'{args.epochs} epochs')
    print(f'\nreport: {out}\nplot:   {png}')
    return report


if __name__ == '__main__':
    main()
