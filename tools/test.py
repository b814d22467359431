"""Evaluate a checkpoint with an mmet, mmpretrain or mmdet config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

``--out`` dumps the metrics (``.json``) or the raw predictions (``.pkl``);
any other suffix is refused before anything is loaded. The checkpoint loads
weights-only with mmet's allow-list (:func:`mmet.checkpoint.safe_loading`);
``--unsafe-load`` unpickles fully, for a file you trust.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmet  # noqa: E402,F401
from mmet.checkpoint import (UnsafeCheckpointError,  # noqa: E402
                             check_checkpoint_file, safe_loading)
from mmet.distributed import setup_cpu_ddp  # noqa: E402

# what --out writes, by suffix
OUT_SUFFIXES = {'.json': 'the metrics', '.pkl': 'the raw predictions'}


def parse_args():
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs')
    parser.add_argument(
        '--out', help='save metrics (.json) or predictions (.pkl) here')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value; lists as key="[a,b]"')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument(
        '--unsafe-load', action='store_true',
        help='load a checkpoint that holds more than weights with full '
        'unpickling, which can run code: only for files you trust')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.out is not None:
        suffix = osp.splitext(args.out)[1]
        if suffix not in OUT_SUFFIXES:
            allowed = ' or '.join(f'{k} ({v})'
                                  for k, v in OUT_SUFFIXES.items())
            parser.error(
                f'--out {args.out}: {suffix or "no suffix"} is not a format '
                f'test.py writes; end the name with {allowed}.')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    try:
        check_checkpoint_file(args.checkpoint)
    except RuntimeError as e:
        raise SystemExit(f'tools/test.py: error: {e}') from None
    safe_loading(allow_unsafe=args.unsafe_load)
    setup_cpu_ddp(cfg, args.launcher)
    suffix = osp.splitext(args.out or '')[1]
    if suffix == '.pkl':
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
            cfg.test_evaluator, dict) else list(cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpResults',
                                       out_file_path=args.out))
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    try:
        metrics = runner.test()
    except UnsafeCheckpointError as e:
        raise SystemExit(f'tools/test.py: error: {e}') from None
    if suffix == '.json':
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=2)


if __name__ == '__main__':
    main()
