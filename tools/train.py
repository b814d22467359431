"""Train with an mmet, mmpretrain or mmdet config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--no-validate] [--no-pin-memory]
        [--no-persistent-workers] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]
        [--curriculum {efficienttrain,efficienttrain++}
         [--budget E | --speedup S] [--low-pass {fourier,resize}]]

CONFIG is a file or an installed config's name, e.g.
``mmpretrain::resnet/resnet50_8xb32_in1k.py``. ``--curriculum`` trains any
epoch-based config with the curriculum and no edit to it (see
:mod:`mmet.cli`).

The registry scope comes from the config's ``default_scope`` (mmpretrain or
mmdet), so one script serves classification and detection. Checkpoints load
weights-only with mmet's allow-list (:func:`mmet.checkpoint.safe_loading`;
``--unsafe-load`` opts out for a file you trust); a resume from a broken
checkpoint or ``last_checkpoint`` is refused naming the fix; without CUDA,
``--launcher pytorch`` trains DDP on gloo (:mod:`mmet.distributed`).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmet  # noqa: E402,F401
from mmet.checkpoint import (UnsafeCheckpointError,  # noqa: E402
                             check_checkpoint_file, check_resume,
                             safe_loading)
from mmet.cli import (add_curriculum_args, apply_curriculum_args,  # noqa
                      load_config)
from mmet.distributed import setup_cpu_ddp  # noqa: E402
from mmet.hooks import EfficientTrainHook  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a path from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--amp', action='store_true',
        help='enable automatic mixed precision training')
    parser.add_argument(
        '--no-validate', action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the LR by actual / base batch size (auto_scale_lr)')
    parser.add_argument(
        '--no-pin-memory', action='store_true',
        help='disable pin_memory in every dataloader')
    parser.add_argument(
        '--no-persistent-workers', action='store_true',
        help='disable persistent_workers in every dataloader')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value; lists as key="[a,b]"')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument(
        '--unsafe-load', action='store_true',
        help='load checkpoints that hold more than weights with full '
        'unpickling, which can run code: only for files you trust')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_curriculum_args(parser)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def amp_device_available() -> bool:
    """Whether a device that mmengine's ``AmpOptimWrapper`` accepts is
    present (it asserts one of these when it is built)."""
    from mmengine import device
    return any(getattr(device, f'is_{name}_available', lambda: False)()
               for name in ('cuda', 'npu', 'mlu', 'musa'))


def merge_args(cfg: Config, args) -> Config:
    """Fold the command-line options into the config."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        if not amp_device_available():
            raise SystemExit(
                "tools/train.py: error: --amp needs a CUDA (or NPU, MLU, "
                "MUSA) device: mmengine's AmpOptimWrapper does not train on "
                'the CPU, and this machine has none. Drop --amp here.')
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise SystemExit(f'--amp does not support the custom optimizer '
                             f'wrapper {wrapper!r}.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise SystemExit('--auto-scale-lr needs auto_scale_lr='
                             'dict(base_batch_size=...) in the config.')
        cfg.auto_scale_lr.enable = True
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(name) is None:
            continue
        if args.no_pin_memory:
            cfg[name].pin_memory = False
        if args.no_persistent_workers:
            cfg[name].persistent_workers = False
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def check_checkpoint(cfg) -> None:
    """Refuse, before anything is built, a checkpoint to load that is
    broken, or a ``last_checkpoint`` that names none."""
    if cfg.get('resume') and cfg.get('load_from') is None:
        check_resume(cfg.work_dir)
    else:
        check_checkpoint_file(cfg.get('load_from'), bool(cfg.get('resume')))


def main():
    args = parse_args()
    cfg = merge_args(load_config(args.config), args)
    try:
        # after --cfg-options, so an ET++ baseline is the epochs given there
        apply_curriculum_args(cfg, args)
        check_checkpoint(cfg)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        raise SystemExit(f'tools/train.py: error: {e}') from None
    safe_loading(allow_unsafe=args.unsafe_load)
    setup_cpu_ddp(cfg, args.launcher)
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    try:
        runner.train()
    except UnsafeCheckpointError as e:
        raise SystemExit(f'tools/train.py: error: {e}') from None
    except (Exception, KeyboardInterrupt) as e:
        log_curriculum_stage(runner, e)
        raise


def log_curriculum_stage(runner: Runner, error: BaseException) -> None:
    """Log the curriculum stage a failed run was in, then let it fail.

    A data worker killed by the OOM killer or a signal ends the run with
    PyTorch's "DataLoader worker (pid X) is killed" and nothing about the
    curriculum; the stage tells which B (and so which memory footprint)
    was training.
    """
    first_line = (str(error).splitlines() or [''])[0]
    for hook in runner.hooks:
        if isinstance(hook, EfficientTrainHook) and hook.current_stage:
            runner.logger.error(
                f'Training stopped in EfficientTrain {hook.current_stage}: '
                f'{type(error).__name__}: {first_line}')


if __name__ == '__main__':
    main()
