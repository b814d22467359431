"""Fixes for the pinned OpenMMLab stack on modern torch, applied on import.

Each fix is applied only where it bites, and each has a test that fails
without it: ``tests/test_compat.py`` (checkpoints) and
``tests/test_distributed.py`` (DDP on CPU).

- torch >= 2.6 loads with ``weights_only=True`` by default. mmengine never
  passes the argument, so its own checkpoints (which hold ``HistoryBuffer``
  and numpy scalars in ``message_hub``) cannot be read back: ``--resume``,
  ``load_from`` and ``init_cfg=dict(type='Pretrained')`` all fail. The fix
  gives mmengine's checkpoint module a ``torch`` whose ``load`` unpickles
  fully. It is scoped: ``torch.load`` elsewhere keeps its safe default.
  URL schemes (``http(s)://``, ``torchvision://``, ``open-mmlab://``) need
  no fix: mmengine's ``load_url`` is torch's ``load_state_dict_from_url``,
  which passes ``weights_only=False`` itself. Unpickling can run code, so
  load only checkpoints you trust (your own runs').
- mmengine's ``--launcher pytorch`` always calls ``torch.cuda.set_device``
  and wraps the model in DDP with ``device_ids=[LOCAL_RANK]``; on a machine
  without CUDA both fail, so torchrun/Slurm DDP cannot run on CPUs. The fix
  initialises the process group without a device (switching the default
  ``nccl`` to ``gloo``, which is the CPU backend) and drops ``device_ids``
  for CPU modules. With CUDA present nothing changes.
- torchrun's static rendezvous keeps one store across restarts
  (``--max-restarts``), so a restarted gloo group can read a peer address
  of the failed attempt and hang or fail in ``connectFullMesh``. A restarted
  group now uses the store under a prefix of its own attempt.
- mmengine writes checkpoints to local disk in place (``open(path, 'wb')``),
  so a run killed while saving leaves a truncated ``epoch_N.pth`` that the
  next ``--resume`` picks up. Local writes now go to a temporary file in the
  same folder, which is then renamed over the target: a reader sees the old
  file or the new one, never a part.

Below the patches, every other reach into private mmengine or torch state
that mmet needs sits behind one named function here (``restart_workers``,
``built_eval_dataloader``, ``accumulative_counts``,
``set_accumulative_counts``), so an upgrade of the
stack has one place to check.
"""
import functools
import os
import stat
import uuid
from pathlib import Path
from typing import Union

import torch
import torch.distributed as torch_dist
from mmengine.dist import utils as _mm_dist_utils
from mmengine.fileio.backends import LocalBackend
from mmengine.logging import print_log
from mmengine.model.wrappers import distributed as _mm_ddp
from mmengine.runner import checkpoint as _mm_checkpoint
from mmengine.utils import digit_version


class _FullUnpicklingTorch:
    """``torch`` as mmengine's checkpoint module sees it after the fix."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(*args, **kwargs):
        kwargs.setdefault('weights_only', False)
        return torch.load(*args, **kwargs)


def _needs_full_unpickling() -> bool:
    return digit_version(torch.__version__) >= digit_version('2.6.0')


def _restart_store(rank: int, world_size: int):
    """torchrun's store under a prefix of its own for a restarted group.

    torchrun's static rendezvous keeps one store across restarts, so a
    restarted gloo group can read its peer's address from the failed
    attempt and hang or fail in ``connectFullMesh``. None on a first start.
    """
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    if attempt == '0':
        return None
    store, _, _ = next(
        torch_dist.rendezvous('env://', rank=rank, world_size=world_size))
    return torch_dist.PrefixStore(f'mmet/restart_{attempt}/', store)


def _init_dist_pytorch_cpu(init_dist_pytorch):
    """Wrap mmengine's torchrun initialisation so it works without CUDA."""

    @functools.wraps(init_dist_pytorch)
    def wrapper(backend, init_backend='torch', **kwargs):
        if torch.cuda.is_available() or init_backend != 'torch':
            return init_dist_pytorch(backend, init_backend, **kwargs)
        if backend == 'nccl':
            print_log('No CUDA device: using the gloo backend instead of '
                      'nccl (set env_cfg.dist_cfg.backend=gloo to silence).',
                      logger='current')
            backend = 'gloo'
        rank, world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
        store = _restart_store(rank, world_size)
        if store is not None:
            kwargs['store'] = store
        torch_dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, **kwargs)

    wrapper._mmet_cpu = True
    return wrapper


def _ddp_init_cpu(ddp_init):
    """Drop ``device_ids`` for CPU modules, which DDP refuses otherwise."""

    @functools.wraps(ddp_init)
    def __init__(self, module, *args, **kwargs):
        if kwargs.get('device_ids') and all(
                p.device.type == 'cpu' for p in module.parameters()):
            kwargs['device_ids'] = None
        ddp_init(self, module, *args, **kwargs)

    __init__._mmet_cpu = True
    return __init__


def _atomic_put(self, obj: bytes, filepath: Union[str, Path]) -> None:
    """``LocalBackend.put`` that never leaves a partly written file."""
    filepath = os.fspath(filepath)
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{os.path.basename(filepath)}.'
                       f'{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    # mode 0o666 less the umask, as ``open(filepath, 'wb')`` would create it
    # (``tempfile.mkstemp`` would make every checkpoint owner-only, 0o600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            if os.path.exists(filepath):  # an overwrite keeps its mode
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(filepath).st_mode))
            f.write(obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        os.unlink(tmp)
        raise


# private reaches into mmengine and torch, each behind one name -------------
def restart_workers(loader) -> None:
    """Make a loader's persistent workers re-fork at its next ``iter()``.

    Persistent workers keep the copy of the dataset (and its pipeline) they
    forked with; torch's ``DataLoader`` reuses them through its private
    ``_iterator``, and has no public way to drop them. mmpretrain's
    ``SwitchRecipeHook`` resets the same attribute.
    """
    if getattr(loader, 'persistent_workers', False):
        loader._iterator = None


def built_eval_dataloader(runner, mode: str):
    """The ``'val'`` or ``'test'`` loader if the Runner has built its loop.

    ``runner.val_loop`` builds the loop (and its loader) when it is still a
    config, so the built one is read from the private ``_val_loop`` /
    ``_test_loop``; None when it is not built (yet).
    """
    loop = getattr(runner, f'_{mode}_loop', None)
    return getattr(loop, 'dataloader', None)


def accumulative_counts(optim_wrapper) -> int:
    """The gradient accumulation of a built ``OptimWrapper`` (or its config).

    mmengine keeps it in the private ``_accumulative_counts``, with no getter.
    """
    if isinstance(optim_wrapper, dict):
        return optim_wrapper.get('accumulative_counts', 1)
    return getattr(optim_wrapper, '_accumulative_counts', 1)


def set_accumulative_counts(optim_wrapper, counts: int) -> None:
    """Change the gradient accumulation of a built ``OptimWrapper``.

    mmengine has no setter; the private count status is recomputed as
    ``OptimWrapper.initialize_count_status`` does.
    """
    optim_wrapper._accumulative_counts = counts
    optim_wrapper._remainder_counts = optim_wrapper._max_counts % counts


def apply_compat_patches() -> None:
    """Apply the fixes this stack needs; safe to call more than once."""
    if _needs_full_unpickling() and not isinstance(
            _mm_checkpoint.torch, _FullUnpicklingTorch):
        _mm_checkpoint.torch = _FullUnpicklingTorch()
    if not getattr(_mm_dist_utils._init_dist_pytorch, '_mmet_cpu', False):
        _mm_dist_utils._init_dist_pytorch = _init_dist_pytorch_cpu(
            _mm_dist_utils._init_dist_pytorch)
    LocalBackend.put = _atomic_put
    ddp = _mm_ddp.MMDistributedDataParallel
    if not getattr(ddp.__init__, '_mmet_cpu', False):
        ddp.__init__ = _ddp_init_cpu(ddp.__init__)


apply_compat_patches()
