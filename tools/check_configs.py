"""Check the curriculum on the ImageNet-1k configs that mmpretrain ships.

    python tools/check_configs.py [PATTERN ...] [--curriculum efficienttrain]
        [--budget E | --speedup S] [--low-pass fourier|resize]
        [--max-params 150] [--timeout 120] [--out work_dirs/check_configs.json]

For each epoch-based ``*in1k*.py`` config under mmpretrain's ``.mim/configs``
(PATTERN: shell patterns or substrings of the path, e.g. ``resnet/`` or
``'swin*tiny'``) it does what ``tools/train.py CONFIG --curriculum ...``
does before the first epoch, without the data set, on the CPU:

1. load the config and add the curriculum
   (:func:`mmet.cli.apply_curriculum_args`);
2. build the model and the train pipeline, feed the pipeline random images,
   and let the stage driver adapt it (:mod:`mmet.adapt`) and check it
   (:mod:`mmet.checks`: drivable, one sample per stage, patch multiples,
   MAE, one forward and backward at the smallest B), with Swin's windows
   following B as the hook sets them;
3. run one real train step (data preprocessor, loss, backward, optimizer
   step) on a batch of 2 at each distinct B.

Each config ends as ``trained`` (every B), ``refused`` (with the reason,
which names the fix), ``skipped`` (too large for this CPU: more than
``--max-params`` million parameters or over ``--timeout`` CPU seconds; never
counted as passed), ``iteration-based`` (the curriculum needs epochs),
``not a train config`` (no train pipeline, or a stock config that mmengine
cannot load or mmpretrain cannot build without mmet) or ``failed`` (a train
step failed after mmet's checks passed: a defect). It
prints a table and writes JSON after every config.
"""
import argparse
import fnmatch
import gc
import glob
import json
import os
import os.path as osp
import signal
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.transforms import Compose  # noqa: E402
from mmengine.dataset import default_collate  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.utils import get_installed_path  # noqa: E402
from mmpretrain.registry import MODELS, TRANSFORMS  # noqa: E402

from mmet.adapt import AdaptationError  # noqa: E402
from mmet.checks import (check_drivable, check_model,  # noqa: E402
                         preflight_pipeline)
from mmet.cli import add_curriculum_args, apply_curriculum_args  # noqa: E402
from mmet.config import backbone_type, load_config, type_name  # noqa

from mmet.curriculum import CurriculumError, infer_family  # noqa: E402
from mmet.driver import StageDriver  # noqa: E402
from mmet.plan import plan_from_config  # noqa: E402

CONFIGS = osp.join(get_installed_path('mmpretrain'), '.mim', 'configs')
# what mmet turns into a reason that names the fix
REFUSALS = (AdaptationError, CurriculumError, ValueError, RuntimeError)
RESULTS = ('trained', 'refused', 'skipped', 'iteration-based',
           'not a train config', 'failed')


class TooSlow(Exception):
    """The config ran past ``--timeout``."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check the curriculum on mmpretrain\'s ImageNet-1k '
        'configs: adapt, preflight and one train step at each B, on the CPU')
    parser.add_argument(
        'patterns', nargs='*', metavar='PATTERN',
        help='shell patterns or substrings of the config path (relative to '
        "mmpretrain's configs), checked in this order; default: all "
        '*in1k*.py')
    add_curriculum_args(parser)
    parser.add_argument(
        '--max-params', type=float, default=150,
        help='skip models with more parameters (millions) as too large for '
        'this CPU (default 150)')
    parser.add_argument(
        '--timeout', type=float, default=120,
        help='skip a config that takes more CPU seconds (default 120)')
    parser.add_argument(
        '--threads', type=int, default=1, help='torch threads (default 1)')
    parser.add_argument('--out', help='write the results as JSON here')
    args = parser.parse_args(argv)
    if args.curriculum is None:
        args.curriculum = 'efficienttrain'
    return args


def find_configs(patterns):
    paths = sorted(glob.glob(osp.join(CONFIGS, '**', '*in1k*.py'),
                             recursive=True))
    rel = [osp.relpath(p, CONFIGS) for p in paths]
    if not patterns:
        return rel
    # in the order of the patterns, each config once
    found = {}
    for p in patterns:
        pattern = p if any(c in p for c in '*?[') else f'*{p}*'
        found.update((r, None) for r in rel if fnmatch.fnmatch(r, pattern))
    return list(found)


class RandomImages:
    """Random uint8 RGB images through a train pipeline (no files)."""

    def __init__(self, pipeline, num: int = 2, shape=(480, 560)):
        self.pipeline, self.num, self.shape = pipeline, num, shape

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(index)
        img = rng.integers(0, 256, self.shape + (3, ), dtype=np.uint8)
        return self.pipeline(
            dict(img=img, img_shape=self.shape, ori_shape=self.shape,
                 gt_label=index, sample_idx=index))


def train_pipeline(dataset_cfg):
    """The first pipeline of a train set config, through dataset wrappers."""
    while isinstance(dataset_cfg, dict):
        if dataset_cfg.get('pipeline') is not None:
            return list(dataset_cfg['pipeline'])
        dataset_cfg = dataset_cfg.get('dataset') or \
            (dataset_cfg.get('datasets') or [None])[0]
    return None


def cpu_optim_wrapper(cfg):
    """The config's optimizer wrapper, without mixed precision (CPU)."""
    optim = dict(cfg.optim_wrapper)
    if optim.get('type') == 'AmpOptimWrapper':
        optim['type'] = 'OptimWrapper'
        optim.pop('loss_scale', None)
        optim.pop('dtype', None)
    return optim


def check(row: dict, args) -> dict:
    """Load, adapt, preflight and train one config; fills its result row."""
    rel = row['config']
    try:
        cfg = load_config(osp.join(CONFIGS, rel))
    except Exception as e:
        return dict(row, result='not a train config',
                    reason=f'mmengine cannot load it: {type(e).__name__}: '
                    + ' '.join(str(e).split()))
    model_cfg = cfg.get('model') or {}
    backbone = backbone_type(cfg)
    row.update(backbone=backbone, family=infer_family(backbone))
    train_cfg = cfg.get('train_cfg') or {}
    kind = type_name(train_cfg)
    if kind == 'IterBasedTrainLoop' or not train_cfg.get('by_epoch', True):
        return dict(row, result='iteration-based')
    pipeline_cfg = train_pipeline((cfg.get('train_dataloader') or {}).get(
        'dataset'))
    if not pipeline_cfg or not model_cfg:
        return dict(row, result='not a train config',
                    reason='no train pipeline or model')
    # as the Runner does
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    try:
        apply_curriculum_args(cfg, args)
    except ValueError as e:
        return dict(row, result='refused', reason=str(e))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    torch.manual_seed(0)
    # the stock config's own parts: if they do not build, the config is
    # broken without mmet
    try:
        model = MODELS.build(model_cfg)
        row['params_m'] = round(
            sum(p.numel() for p in model.parameters()) / 1e6, 1)
        if row['params_m'] > args.max_params:
            return dict(row, result='skipped',
                        reason=f'too large for this CPU ({row["params_m"]}M '
                        f'parameters > --max-params {args.max_params:g})')
        pipeline = Compose([TRANSFORMS.build(t) for t in pipeline_cfg
                            if t['type'] != 'LoadImageFromFile'])
        optim_wrapper = build_optim_wrapper(model, cpu_optim_wrapper(cfg))
    except Exception as e:
        return dict(row, result='not a train config',
                    reason=f'mmpretrain cannot build it: {type(e).__name__}: '
                    + ' '.join(str(e).split()))
    dataset = RandomImages(pipeline)
    # what the loop and the hook do before the first epoch: plan, adapt,
    # check, preflight
    try:
        plan = plan_from_config(cfg)
        driver = StageDriver(plan.base_curriculum, args.low_pass or 'fourier')
        driver.bind(dataset, model)
        check_drivable(driver, warn=lambda text: None)
        states = list({s.size: s for s in plan.clock.states()}.values())
        preflight_pipeline(dataset, driver, plan)
        check_model(model, driver, plan)
    except REFUSALS as e:
        return dict(row, result='refused', reason=' '.join(str(e).split()))
    # one train step per B: what fails here, mmet let through
    model.train()
    for state in states:
        driver.apply(state)
        batch = default_collate([dataset[i] for i in range(2)])
        losses = model.train_step(batch, optim_wrapper)
        if not all(torch.isfinite(torch.as_tensor(v)).all()
                   for v in losses.values()):
            raise FloatingPointError(
                f'the losses are {dict(losses)} at {state}')
        row['sizes'].append(state.size)
    return dict(row, result='trained')


def run(rel: str, args) -> dict:
    """:func:`check` with the time limit; every error becomes a row."""
    start, cpu = time.perf_counter(), time.process_time()
    row = dict(config=rel, backbone='', family=None, result='', reason='',
               sizes=[], params_m=None)

    def too_slow(signum, frame):
        raise TooSlow

    # CPU time, so that other work on the machine does not count
    signal.signal(signal.SIGVTALRM, too_slow)
    signal.setitimer(signal.ITIMER_VIRTUAL, args.timeout)
    try:
        row = check(row, args)
    except TooSlow:
        row.update(result='skipped', reason='too large for this CPU (over '
                   f'--timeout {args.timeout:g} CPU seconds)')
    except Exception as e:  # an error mmet did not explain: a defect
        row.update(result='failed', reason=f'{type(e).__name__}: ' +
                   ' '.join(str(e).split()))
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        gc.collect()
    row['seconds'] = round(time.process_time() - cpu, 1)
    row['wall_s'] = round(time.perf_counter() - start, 1)
    return row


def format_table(rows) -> str:
    head = ('config', 'backbone', 'family', 'result', 'reason', 'cpu s')
    lines = [head] + [
        (r['config'], r.get('backbone') or '', r.get('family') or '-',
         r['result'], (r.get('reason') or '')[:90], f"{r['seconds']:.1f}")
        for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    out = ['  '.join(c.ljust(w) for c, w in zip(line[:5], widths)) +
           f'  {line[5]:>5}' for line in lines]
    out.insert(1, '-' * len(out[0]))
    return '\n'.join(out)


def counts(rows) -> dict:
    return {k: sum(r['result'] == k for r in rows) for k in RESULTS}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # the current logger, quiet: mmengine logs every parameter group
    MMLogger.get_instance('check_configs', log_level='WARNING')
    configs = find_configs(args.patterns)
    if not configs:
        raise SystemExit(f'No *in1k*.py config under {CONFIGS} matches '
                         f'{args.patterns}.')
    rows = []
    for i, rel in enumerate(configs):
        rows.append(run(rel, args))
        r = rows[-1]
        print(f'[{i + 1}/{len(configs)}] {rel}: {r["result"]} '
              f'({r["seconds"]:.1f} s) {r.get("reason", "")[:160]}',
              flush=True)
        if args.out:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out, 'w') as f:
                json.dump(dict(curriculum=args.curriculum,
                               low_pass=args.low_pass or 'fourier',
                               counts=counts(rows), configs=rows), f,
                          indent=1)
    print(format_table(rows))
    print(', '.join(f'{n} {k}' for k, n in counts(rows).items()))


if __name__ == '__main__':
    main()
