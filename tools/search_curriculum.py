"""Search an EfficientTrain curriculum for your own model and data.

    python tools/search_curriculum.py CONFIG [--target-speedup 1.5]
        [--stages 5] [--bandwidths 64 96 128 160 192 224] [--magnitudes ...]
        [--proxy-epochs 5] [--train-subset N] [--val-subset N]
        [--tolerance 0.5] [--max-trials N] [--work-dir DIR]

Stage by stage (the last stage always trains at full size), each candidate
bandwidth B and RandAugment magnitude m is trained as a short *proxy* run of
CONFIG: a real mmengine Runner with --proxy-epochs epochs on an optional
subset, validated at the end on the config's val split. Stage k is searched
with stages 1..k-1 fixed at their choices and the later stages at full size;
it keeps the cheapest candidate whose score stays within --tolerance of the
all-full-size reference. The search stops at the compute budget
(--target-speedup / --max-relative-compute) or its own budget (--max-trials,
--max-search-cost). The pure logic lives in :mod:`mmet.search`.

Outputs in --work-dir: ``searched_curriculum.py`` (a config that inherits
CONFIG and sets the found curriculum: train it with tools/train.py),
``search.json`` (every trial) and ``search.png``. Each finished trial is
stored in ``trials/<key>.json``, keyed by a hash of the whole proxy config
and schedule, so re-running the same command resumes where it stopped, and
changed settings never reuse stale trials.

The output config is never CONFIG itself (nor a link to it: the new file
inherits CONFIG, so it would inherit itself), and an existing ``--out`` is
only replaced with ``--force``; the default output in the work dir is the
search's own and is replaced by a rerun.
"""
import argparse
import copy
import gc
import hashlib
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmengine.config import Config, DictAction  # noqa: E402

from mmet.config import curriculum_loop, type_name  # noqa: E402
from mmet.curriculum import Curriculum, Stage  # noqa: E402
from mmet.schedulers import scale_schedule  # noqa: E402
from mmet.sizes import at_bandwidth  # noqa: E402
from mmet.search import (DEFAULT_BANDWIDTHS_224, REFERENCE_SIZE,  # noqa: E402
                         Budget, SearchError, SearchResult, SearchSpace,
                         candidate_bandwidths, check_budget,
                         default_magnitudes, equal_shares, schedule_to_list,
                         sequential_search)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Sequential, compute-constrained curriculum search')
    parser.add_argument('config', help='train config (with a FourierCrop)')
    parser.add_argument(
        '--work-dir', help='where trials and results go (default: '
        'work_dirs/search/<config name>)')
    parser.add_argument(
        '--out', help='the curriculum config to write (default: '
        'WORK_DIR/searched_curriculum.py); never CONFIG itself')
    parser.add_argument(
        '--force', action='store_true',
        help='replace an existing --out file (never CONFIG)')
    g = parser.add_argument_group('search space')
    g.add_argument('--stages', type=int, default=5,
                   help='number of equal stages; the last is full size')
    g.add_argument('--shares', type=float, nargs='+',
                   help='epoch share of each stage instead of --stages')
    g.add_argument(
        '--bandwidths', type=float, nargs='+',
        default=list(DEFAULT_BANDWIDTHS_224),
        help='candidate B in pixels of a --reference-size input; scaled to '
        'the FourierCrop size and rounded to even pixels')
    g.add_argument('--reference-size', type=float, default=REFERENCE_SIZE)
    g.add_argument(
        '--magnitudes', type=float, nargs='+',
        help='candidate RandAugment magnitudes (0-10) for every searched '
        'stage; default per stage: the EfficientTrain ramp value and the '
        'final magnitude')
    g.add_argument(
        '--final-magnitude', type=float,
        help='m of the reference and the last stage (default: the '
        "StagedRandAug's magnitude_level in CONFIG)")
    g = parser.add_argument_group('proxy runs')
    g.add_argument('--proxy-epochs', type=int,
                   help='epochs of each proxy run (default: one per stage)')
    g.add_argument('--train-subset', type=int, default=0,
                   help='train proxies on the first N images (0: all)')
    g.add_argument('--val-subset', type=int, default=0,
                   help='validate proxies on the first N images (0: all)')
    g.add_argument('--batch-size', type=int, help='override the batch size')
    g.add_argument('--workers', type=int,
                   help='override train_dataloader.num_workers')
    g.add_argument('--seed', type=int, default=0,
                   help='one seed for every trial, so they compare')
    g.add_argument('--seeds', type=int, default=1,
                   help='average each trial over this many seeds (seed, '
                   'seed+1, ...): a proxy whose run-to-run noise is near '
                   '--tolerance chooses at random')
    g.add_argument('--metric', default='accuracy/top1',
                   help='validation metric to compare (higher is better)')
    g.add_argument('--log-level', default='WARNING',
                   help='log level of the proxy runners')
    g = parser.add_argument_group('choice and budgets')
    g.add_argument(
        '--tolerance', type=float, default=0.5,
        help='how far below the reference a candidate may score, in the '
        "metric's units (top-1 points); set it above the proxy's noise")
    b = g.add_mutually_exclusive_group()
    b.add_argument('--target-speedup', type=float,
                   help='stop once the schedule is this much cheaper (FLOPs)')
    b.add_argument('--max-relative-compute', type=float,
                   help='stop once the schedule costs at most this fraction')
    g.add_argument('--max-trials', type=int,
                   help='at most N proxy trainings (reference included)')
    g.add_argument('--max-search-cost', type=float,
                   help='at most this proxy compute, in full-size proxy runs')
    parser.add_argument(
        '--epochs', type=int,
        help='epochs of the real training, for the predicted speedup '
        '(default: the config\'s max_epochs)')
    parser.add_argument(
        '--dry-run', action='store_true',
        help='check the settings and print the search space; train nothing')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (as in tools/train.py)')
    return parser.parse_args(argv)


def check_output(config: str, out: str, force: bool = False,
                 own: bool = False) -> None:
    """Refuse an output config that would destroy CONFIG or another file.

    Args:
        config (str): The input config.
        out (str): The curriculum config to write.
        force (bool): Replace an existing ``out`` (never ``config``).
        own (bool): ``out`` is the default output in the work dir, which a
            rerun of the search replaces.

    Raises:
        SearchError: ``out`` is ``config`` (the same file under another
            name, through a symlink or a hard link), or exists and neither
            ``force`` nor ``own`` is set.
    """
    if osp.exists(out) and osp.exists(config) and osp.samefile(config, out):
        raise SearchError(
            f'the output {out} is the input config {config}: the searched '
            'config inherits its input (_base_), so writing it there would '
            'replace your config with one that inherits itself. Give '
            'another --out path.')
    if osp.isdir(out):
        raise SearchError(
            f'--out {out} is a directory; give the path of the config file '
            f'to write, e.g. {osp.join(out, "searched_curriculum.py")}.')
    if osp.exists(out) and not (force or own):
        raise SearchError(
            f'{out} exists; pass --force to replace it, or give another '
            '--out path.')


# config inspection ---------------------------------------------------------
def find_targets(cfg: Config):
    """The full size and final magnitude the hook would drive.

    The stage driver's own answer (:meth:`StageDriver.from_config`), so the
    cheap path (``StagedRandomResizedCrop``), the batched path
    (``DeviceAugmentPreprocessor``) and stock pipelines that training
    adapts (for a curriculum that changes B and m) count as they do there.
    """
    from mmet.driver import StageDriver
    try:
        driver = StageDriver.from_config(
            cfg, Curriculum.build('efficienttrain'))
    except RuntimeError as e:  # mmet.adapt.AdaptationError
        reason = f' ({e})'
    else:
        reason = ''
        if driver.full_size is not None:
            return driver.full_size, driver.final_magnitude
    raise SearchError(
        'The train pipeline of the config has no FourierCrop or '
        'StagedRandomResizedCrop and there is no DeviceAugmentPreprocessor, '
        f'so the curriculum cannot change the bandwidth{reason}. Add '
        "dict(type='FourierCrop', size=<final size>) just before "
        'PackInputs (see configs/_base_/efficienttrain.py).')


def check_config(cfg: Config) -> None:
    """Refuse configs the proxy runs cannot train and validate."""
    train_cfg = cfg.get('train_cfg') or {}
    loop = curriculum_loop(cfg)
    if loop is not None and loop.get('max_epochs') is None:
        raise SearchError(
            'The config trains with EfficientTrainLoop for a compute budget '
            '(ET++). The search plans stages over epochs; start from a '
            "config with train_cfg=dict(by_epoch=True, max_epochs=...).")
    if not train_cfg.get('by_epoch', True) or \
            train_cfg.get('max_epochs') is None:
        raise SearchError(
            'The config needs an epoch-based train loop '
            '(train_cfg=dict(by_epoch=True, max_epochs=...)); the '
            'curriculum switches stages between epochs.')
    for key in ('val_dataloader', 'val_evaluator'):
        if not cfg.get(key):
            raise SearchError(
                f'The config has no {key}: proxy runs are scored on the val '
                'split. Add val_dataloader, val_evaluator and val_cfg.')


def build_space(cfg: Config, args) -> SearchSpace:
    full, config_m = find_targets(cfg)
    shares = args.shares if args.shares else equal_shares(args.stages)
    bandwidths = candidate_bandwidths(args.bandwidths, full,
                                      args.reference_size)
    final = args.final_magnitude
    if config_m is None:
        # no StagedRandAug: m cannot change, so keep it constant
        final = 0.0 if final is None else final
        if args.magnitudes and set(args.magnitudes) != {final}:
            raise SearchError(
                'The train pipeline has no StagedRandAug, so the curriculum '
                'cannot change the RandAugment magnitude; drop --magnitudes '
                "or add dict(type='StagedRandAug', ...) after the flip.")
        magnitudes = [[final]] * (len(shares) - 1)
    else:
        final = config_m if final is None else final
        magnitudes = ([list(args.magnitudes)] * (len(shares) - 1)
                      if args.magnitudes else
                      default_magnitudes(len(shares), final))
    return SearchSpace(shares, bandwidths, magnitudes, final, full)


# proxy runs ----------------------------------------------------------------
def _drop_empty_schedulers(scheds, epoch_length: int):
    """Drop iter-converted schedulers that span no iteration."""
    if isinstance(scheds, dict) and 'type' not in scheds:
        return {k: _drop_empty_schedulers(v, epoch_length)
                for k, v in scheds.items()}
    if not isinstance(scheds, (list, tuple)):
        return scheds
    keep = []
    for s in scheds:
        if isinstance(s, dict) and s.get('convert_to_iter_based') and \
                s.get('by_epoch', True) and 'end' in s and \
                int(s['end'] * epoch_length) <= \
                int(s.get('begin', 0) * epoch_length):
            continue
        keep.append(s)
    return keep


def _set_indices(loader_cfg, n: int) -> None:
    ds = loader_cfg.dataset
    while 'dataset' in ds and 'indices' not in ds:  # through wrappers
        ds = ds.dataset
    ds.indices = n


def proxy_config(cfg: Config, args, proxy_epochs: int) -> Config:
    """CONFIG shortened to ``proxy_epochs``, on subsets, with a fixed seed."""
    proxy = copy.deepcopy(cfg)
    orig = proxy.train_cfg.max_epochs
    proxy.train_cfg.max_epochs = proxy_epochs
    # validate once, at the end: only the final score counts
    proxy.train_cfg.val_interval = proxy_epochs
    proxy.train_cfg.pop('val_begin', None)
    if proxy.get('param_scheduler'):
        proxy.param_scheduler = scale_schedule(proxy.param_scheduler,
                                               proxy_epochs / orig)
    if args.train_subset:
        _set_indices(proxy.train_dataloader, args.train_subset)
    if args.val_subset:
        _set_indices(proxy.val_dataloader, args.val_subset)
    if args.batch_size:
        proxy.train_dataloader.batch_size = args.batch_size
    if args.workers is not None:
        proxy.train_dataloader.num_workers = args.workers
        proxy.train_dataloader.persistent_workers = args.workers > 0
    proxy.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=-1, save_last=False)
    proxy.randomness = dict(seed=args.seed, deterministic=False)
    proxy.log_level = args.log_level
    proxy.load_from, proxy.resume = None, False
    for k in ('work_dir', 'experiment_name'):
        proxy.pop(k, None)
    return proxy


def with_curriculum(cfg: Config, schedule: Sequence[Stage]) -> Config:
    """``cfg`` training ``schedule``: its EfficientTrainLoop's curriculum,
    or an EfficientTrainHook's, which adapt a stock pipeline as training
    does; a schedule that changes nothing (the reference: full size, one m)
    trains ``cfg``'s recipe without a curriculum."""
    out = copy.deepcopy(cfg)
    hooks = [dict(h) for h in (out.get('custom_hooks') or [])
             if type_name(h) != 'EfficientTrainHook']
    staged = any(s.bandwidth < 1 for s in schedule) or \
        len({s.magnitude for s in schedule}) > 1
    loop = curriculum_loop(out)
    if loop is not None:
        if staged:
            loop.curriculum = schedule_to_list(schedule)
        else:
            out.train_cfg = dict(
                type='EpochBasedTrainLoop', max_epochs=loop.max_epochs,
                **{k: v for k, v in loop.items()
                   if k in ('val_begin', 'val_interval')})
    elif staged:
        hooks.append(dict(type='EfficientTrainHook',
                          curriculum=schedule_to_list(schedule)))
    out.custom_hooks = hooks
    return out


def trial_key(cfg: Config) -> str:
    """A hash of everything that can change a trial's score."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json(path: str, data) -> None:
    """Write atomically: a killed search never leaves half a file."""
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


class TrialRunner:
    """Trains proxy trials and keeps their results in ``work_dir/trials``.

    A trial's score is the mean over ``seeds``; each seed's run is cached on
    its own, so adding seeds later reuses the runs already made.
    """

    def __init__(self, proxy: Config, work_dir: str, metric: str,
                 full_size, seeds: Sequence[int] = (0, ), log=print):
        self.proxy, self.work_dir, self.metric = proxy, work_dir, metric
        self.full_size, self.seeds, self.log = full_size, seeds, log
        self.trained = self.cached = 0
        os.makedirs(osp.join(work_dir, 'trials'), exist_ok=True)

    def __call__(self, schedule: Tuple[Stage, ...]):
        runs = [self._run_seed(schedule, seed) for seed in self.seeds]
        scores = [score for score, _ in runs]
        info = dict(key=','.join(i['key'] for _, i in runs),
                    cached=all(i['cached'] for _, i in runs),
                    seconds=sum(i['seconds'] for _, i in runs))
        if len(scores) > 1:
            info['scores'] = scores
        return sum(scores) / len(scores), info

    def _run_seed(self, schedule: Tuple[Stage, ...], seed: int):
        cfg = with_curriculum(self.proxy, schedule)
        cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)
        key = trial_key(cfg)
        path = osp.join(self.work_dir, 'trials', f'{key}.json')
        if osp.exists(path):
            with open(path) as f:
                rec = json.load(f)
            self.cached += 1
            return rec['score'], dict(key=key, cached=True,
                                      seconds=rec['seconds'])
        sizes = [at_bandwidth(s.bandwidth, self.full_size)
                 for s in schedule]
        self.log(f'  training trial {key}: B={sizes} '
                 f'm={[s.magnitude for s in schedule]}')
        score, seconds = train_once(cfg, osp.join(self.work_dir, 'runs', key),
                                    f'trial_{key}', self.metric)
        self.trained += 1
        write_json(path, dict(key=key, score=score, seconds=seconds,
                              metric=self.metric,
                              schedule=schedule_to_list(schedule),
                              finished=time.strftime('%Y-%m-%d %H:%M:%S')))
        return score, dict(key=key, cached=False, seconds=seconds)


def check_metric(proxy: Config, metric: str, work_dir: str,
                 num_images: int = 8) -> None:
    """Refuse a ``--metric`` the proxy's evaluator does not report, before
    any proxy trains: one validation of the untrained model on
    ``num_images`` images gives the metric names.

    Raises:
        SearchError: naming the metric and the ones reported.
    """
    from mmengine.runner import Runner
    cfg = copy.deepcopy(proxy)
    cfg.work_dir, cfg.experiment_name = work_dir, 'metric_check'
    cfg.log_level = 'ERROR'
    _set_indices(cfg.val_dataloader, num_images)
    reported = Runner.from_cfg(cfg).val()
    gc.collect()  # drop the loader (and its workers)
    if metric not in reported:
        raise SearchError(
            f'--metric {metric!r} is not one the validation reports: it '
            f'reports {sorted(reported)}. Pick one of them with --metric.')


def train_once(cfg: Config, work_dir: str, name: str,
               metric: str) -> Tuple[float, float]:
    """Train one Runner; return the final ``metric`` and the train time."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class Capture(Hook):
        priority = 'VERY_HIGH'

        def __init__(self):
            self.metrics, self.seconds, self._t = {}, 0.0, None

        def before_train_epoch(self, runner):
            self._t = time.perf_counter()

        def after_train_epoch(self, runner):
            self.seconds += time.perf_counter() - self._t

        def after_val_epoch(self, runner, metrics=None):
            self.metrics = dict(metrics or {})

    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    runner = Runner.from_cfg(cfg)
    # a warm-up scaled below one iteration would crash the scheduler
    runner.param_schedulers = _drop_empty_schedulers(
        runner.param_schedulers, len(runner.train_loop.dataloader))
    cap = Capture()
    runner.register_hook(cap)
    runner.train()
    del runner
    gc.collect()  # drop the loaders (and their workers) before the next run
    if metric not in cap.metrics:
        raise SearchError(
            f'The proxy run reported no {metric!r}; it reported '
            f'{sorted(cap.metrics)}. Pick one with --metric.')
    return float(cap.metrics[metric]), cap.seconds


# outputs -------------------------------------------------------------------
def snippet_text(config: str, out: str, cfg: Config, result: SearchResult,
                 full, epochs: int, header: List[str]) -> str:
    """A config that inherits ``config`` and sets the searched curriculum."""
    base = osp.relpath(osp.abspath(config), osp.dirname(osp.abspath(out)))
    if base.count('..') > 2:  # e.g. an output under /tmp: absolute is clearer
        base = osp.abspath(config)
    edges = Curriculum(result.schedule).boundaries(epochs)
    stages = []
    for i, s in enumerate(result.schedule):
        px = at_bandwidth(s.bandwidth, full)
        stages.append(
            f'dict(share={s.share!r}, bandwidth={s.bandwidth!r}, '
            f'magnitude={s.magnitude!r}),  # B={px}, epochs '
            f'{edges[i]}-{edges[i + 1]}')
    lines = [f'# {h}' for h in header] + [f'_base_ = [{base!r}]', '']
    if curriculum_loop(cfg) is not None:  # the loop's curriculum
        return '\n'.join(lines + ['train_cfg = dict(curriculum=['] +
                         [f'    {s}' for s in stages] + ['])', ''])
    hooks = cfg.to_dict().get('custom_hooks') or []
    et = next((h for h in hooks if type_name(h) == 'EfficientTrainHook'),
              None)
    extra = {k: v for k, v in (et or {}).items()
             if k not in ('type', 'curriculum')}
    lines.append('custom_hooks = [')
    for h in hooks:
        if h is not et:
            lines.append(f'    {h!r},')
    lines.append(
        f"    dict(type={(et or {}).get('type', 'EfficientTrainHook')!r},")
    for k, v in extra.items():
        lines.append(f'         {k}={v!r},')
    lines.append('         curriculum=[')
    lines += [f'             {s}' for s in stages]
    lines += ['         ]),', ']', '']
    return '\n'.join(lines)


def print_table(rows: List[Dict], reference: float, metric: str) -> None:
    head = ('#', 'stage', 'B', 'm', 'compute', metric, 'delta', 'pass',
            'chosen', 'run', 'train s')
    table = [head]
    for r in rows:
        how = 'reused' if r['reused'] else (
            'cached' if r.get('cached') else 'trained')
        table.append((
            str(r['index']), 'ref' if r['stage'] == 0 else str(r['stage']),
            str(r['size']), f"{r['magnitude']:g}",
            f"{r['relative_compute']:.3f}", f"{r['score']:.2f}",
            f"{r['score'] - reference:+.2f}",
            'yes' if r['passed'] else 'no', '*' if r['chosen'] else '',
            how, f"{r.get('seconds', 0):.1f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print('  '.join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print('  '.join('-' * w for w in widths))


def plot(report: Dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
    ref, tol = report['reference_score'], report['tolerance']
    ax.axhline(ref, color='k', lw=1, label='reference (full size)')
    ax.axhspan(ref - tol, ref, color='k', alpha=0.08,
               label=f'tolerance {tol:g}')
    cmap = plt.get_cmap('viridis')
    n = len(report['schedule'])
    for stage in sorted({r['stage'] for r in report['trials'] if r['stage']}):
        rs = [r for r in report['trials'] if r['stage'] == stage]
        ax.scatter([r['relative_compute'] for r in rs],
                   [r['score'] for r in rs], color=cmap(stage / n),
                   label=f'stage {stage}', zorder=3)
        for r in rs:
            ax.annotate(f"{r['size']}/{r['magnitude']:g}",
                        (r['relative_compute'], r['score']), fontsize=7,
                        xytext=(3, 3), textcoords='offset points')
    chosen = [r for r in report['trials'] if r['chosen'] and r['stage']]
    ax.scatter([r['relative_compute'] for r in chosen],
               [r['score'] for r in chosen], s=160, facecolors='none',
               edgecolors='r', label='chosen', zorder=4)
    scores = [r['score'] for r in report['trials']]
    pad = max(0.5, 0.1 * (max(scores) - min(scores)))
    ax.set_ylim(min(scores) - pad, max(scores) + pad)
    ax.set_xlabel('relative compute of the trial schedule')
    ax.set_ylabel(report['metric'])
    ax.set_title('proxy trials (labels: B px / m)')
    ax.legend(fontsize='small')
    xs, bs, ms, x = [], [], [], 0.0
    for s in report['schedule']:
        xs += [x, x + s['share']]
        bs += [s['size']] * 2
        ms += [s['magnitude']] * 2
        x += s['share']
    ax_s.plot(xs, bs, color='tab:blue')
    ax_s.set_ylim(0, max(bs) * 1.05)
    ax_s.set_xlabel('fraction of training')
    ax_s.set_ylabel('bandwidth B (px)', color='tab:blue')
    ax_m = ax_s.twinx()
    ax_m.plot(xs, ms, '--', color='tab:orange')
    ax_m.set_ylim(-0.5, 10.5)
    ax_m.set_ylabel('RandAugment m', color='tab:orange')
    ax_s.set_title(f"searched schedule: {report['predicted_speedup']:.2f}x "
                   'predicted')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# main ----------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        check_config(cfg)
        space = build_space(cfg, args)
        if args.seeds < 1:
            raise SearchError(f'--seeds must be >= 1, got {args.seeds}.')
        # the search counts schedules; each costs --seeds proxy runs
        budget = Budget.from_speedup(
            args.target_speedup, args.max_relative_compute,
            max_trials=args.max_trials,
            max_search_cost=None if args.max_search_cost is None else
            args.max_search_cost / args.seeds)
        check_budget(space, budget)
        n = space.num_stages
        proxy_epochs = n if args.proxy_epochs is None else args.proxy_epochs
        if proxy_epochs < 1:
            raise SearchError(
                f'--proxy-epochs must be >= 1, got {proxy_epochs}.')
        per_stage = Curriculum(space.reference()).epochs(proxy_epochs)
        if min(per_stage) < 1:
            raise SearchError(
                f'With {proxy_epochs} proxy epochs, the {n} stages get '
                f'{per_stage} epochs: a stage without epochs cannot be '
                f'searched. Use --proxy-epochs >= {n} (a multiple of {n} '
                'keeps the shares exact) or fewer --stages.')
        if args.tolerance is None or not args.tolerance >= 0:
            raise SearchError(
                f'--tolerance must be >= 0, got {args.tolerance}.')
        work_dir = args.work_dir or osp.join(
            'work_dirs', 'search',
            osp.splitext(osp.basename(args.config))[0])
        out = args.out or osp.join(work_dir, 'searched_curriculum.py')
        check_output(args.config, out, args.force, own=args.out is None)
    except SearchError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    epochs = args.epochs or cfg.train_cfg.max_epochs
    full = space.full_size
    print(f'full size {full}; candidate B '
          f'{[at_bandwidth(b, full) for b in space.bandwidths]} px; '
          f'magnitudes per stage {[list(m) for m in space.magnitudes]}; '
          f'final m {space.final_magnitude:g}')
    print(f'{n} stages, shares {[round(s, 4) for s in space.shares]}; proxy '
          f'{proxy_epochs} epochs ({per_stage} per stage); at most '
          f'{space.max_trials()} trials if exhaustive')
    if args.dry_run:
        return 0

    os.makedirs(work_dir, exist_ok=True)
    proxy = proxy_config(cfg, args, proxy_epochs)
    try:
        check_metric(proxy, args.metric, osp.join(work_dir, 'metric_check'))
    except SearchError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    runner = TrialRunner(proxy, work_dir, args.metric, full,
                         seeds=range(args.seed, args.seed + args.seeds))
    start = time.perf_counter()
    try:
        result = sequential_search(space, runner, args.tolerance, budget,
                                   log=lambda m: print(m, flush=True))
    except SearchError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    wall = time.perf_counter() - start

    cur = result.curriculum()
    rows = [t.to_dict(full) for t in result.trials]
    schedule = [dict(s, size=at_bandwidth(s['bandwidth'], full))
                for s in schedule_to_list(result.schedule)]
    report = dict(
        config=args.config, metric=args.metric, tolerance=args.tolerance,
        full_size=full, epochs=epochs, proxy_epochs=proxy_epochs,
        train_subset=args.train_subset, val_subset=args.val_subset,
        seed=args.seed, budget=dict(
            max_relative_compute=budget.max_relative_compute,
            max_trials=budget.max_trials,
            max_search_cost=budget.max_search_cost),
        reference_score=result.reference_score, schedule=schedule,
        relative_compute=result.relative_compute,
        predicted_speedup=result.speedup,
        relative_compute_at_epochs=cur.relative_compute(epochs, full),
        predicted_speedup_at_epochs=cur.speedup(epochs, full),
        stop_reason=result.stop_reason,
        stopped_at_stage=result.stopped_at_stage,
        budget_met=result.budget_met, messages=result.messages,
        trials_evaluated=result.trials_run,
        trials_trained_now=runner.trained, trials_from_cache=runner.cached,
        seeds=args.seeds,
        search_cost_full_proxy_runs=result.search_cost * args.seeds,
        search_wall_seconds=wall, trials=rows)

    print()
    print_table(rows, result.reference_score, args.metric)
    header = [
        f'Curriculum found by tools/search_curriculum.py for {args.config}',
        f'{args.metric}: reference {result.reference_score:.4g}, tolerance '
        f'{args.tolerance:g}; proxy {proxy_epochs} epochs'
        + (f', {args.train_subset} train images' if args.train_subset
           else ''),
        f'stop: {result.stop_reason}; predicted speedup '
        f'{report["predicted_speedup_at_epochs"]:.2f}x (FLOPs) at {epochs} '
        'epochs',
        f'Train it: python tools/train.py {out}',
    ]
    text = snippet_text(args.config, out, cfg, result, full, epochs, header)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        f.write(text)
    json_path = osp.join(work_dir, 'search.json')
    write_json(json_path, report)
    png = osp.join(work_dir, 'search.png')
    plot(report, png)
    print('\n' + text)
    print(f'stop: {result.stop_reason}'
          + (f' (stage {result.stopped_at_stage})'
             if result.stopped_at_stage else ''))
    for m in result.messages:
        print(m)
    if result.budget_met is not None:
        print(f'compute budget met: {result.budget_met}')
    print(f'schedule: {[s["size"] for s in schedule]} px, m '
          f'{[s["magnitude"] for s in schedule]}; predicted speedup '
          f'{result.speedup:.2f}x ({report["predicted_speedup_at_epochs"]:.2f}'
          f'x at {epochs} epochs)')
    print(f'trials: {result.trials_run} evaluated, {runner.trained} trained '
          f'now, {runner.cached} from cache; search cost '
          f'{result.search_cost:.2f} full-size proxy runs, {wall:.0f} s')
    print(f'config: {out}\nreport: {json_path}\nplot:   {png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
