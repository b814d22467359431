"""Fixes for the OpenMMLab stacks on modern torch, applied on import.

Two stacks are supported (``MMET_STACK``, README "Two commands"): upstream
mmengine 0.10.7 and the maintained fork, onedl-mmengine 0.10.12 (same
import names). Each fix is applied only where it bites, told from the
installed versions, and each has a test that fails without it on the stack
that needs it: ``tests/test_compat.py`` (checkpoints),
``tests/test_checkpoint_safety.py`` (killed saves, broken checkpoints) and
``tests/test_distributed.py`` (DDP on CPU). All but the first apply to both
stacks (the fork's code there is upstream's).

- torch >= 2.6 loads with ``weights_only=True`` by default. mmengine up to
  0.10.7 never passes the argument, so its own checkpoints (which hold
  ``HistoryBuffer`` and numpy scalars in ``message_hub``) cannot be read
  back: ``--resume``, ``load_from`` and ``init_cfg=dict(type='Pretrained')``
  all fail. The fix gives mmengine's checkpoint module a ``torch`` whose
  ``load`` unpickles fully. It is scoped: ``torch.load`` elsewhere keeps its
  safe default. URL schemes (``http(s)://``, ``torchvision://``,
  ``open-mmlab://``) need no fix: mmengine's ``load_url`` is torch's
  ``load_state_dict_from_url``, which passes ``weights_only=False`` itself.
  The fork (from 0.10.8) loads by itself, in the same module: first with
  ``weights_only=True`` and an allow-list that covers the Runner's
  checkpoints, unpickling fully only for a file that fails that, so there
  the fix is not applied. Unpickling can run code, so load only
  checkpoints you trust (your own runs').
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
  file or the new one, never a part (``_atomic_write``).
- ``CheckpointHook`` removes the checkpoint that ``max_keep_ckpts`` (or a
  new best) drops *before* it saves the new one, and writes
  ``last_checkpoint`` in place: SIGKILL during a save with
  ``max_keep_ckpts=1`` leaves no checkpoint, and ``last_checkpoint`` names
  the removed one. Its ``_save_checkpoint_with_step`` and
  ``_save_best_checkpoint`` now defer those removals until the save
  returned (a failed save keeps them), and see a module ``open`` whose
  ``'w'`` replaces ``last_checkpoint`` atomically. The wrap applies only
  where both methods are the code it was written for (checked by a hash of
  their source: mmengine 0.10.7, and onedl-mmengine 0.10.12, whose methods
  are the same); elsewhere they are left alone, and the old order stands.
- Nothing removes the hidden temporary files of killed writes
  (``.<name>.<pid>.<hex>.tmp``). ``CheckpointHook.before_train`` now
  removes those of processes no longer alive from the work dir and the
  checkpoint folder.
- An empty, truncated or non-torch ``.pth`` fails to load with a bare
  ``EOFError``, ``UnpicklingError`` or zip ``RuntimeError`` that does not
  name the file. mmengine's local checkpoint loader (``load_from_local``,
  re-registered for local paths) now says which file, its size, what is
  wrong and which checkpoints to use instead; other failures pass as they
  are. It loads nothing more than before.
- An empty ``last_checkpoint`` gives ``FileNotFoundError:  can not be
  found.``, one naming a removed file ``<file> can not be found.``. The
  ``find_latest_checkpoint`` that the Runner imported into its module now
  says what is wrong with ``last_checkpoint`` and names the newest complete
  checkpoint to resume from.

The patches replace names inside mmengine: ``runner.checkpoint.torch``,
``dist.utils._init_dist_pytorch``, ``MMDistributedDataParallel.__init__``,
``LocalBackend.put``, ``CheckpointHook``'s private
``_save_checkpoint_with_step`` and ``_save_best_checkpoint`` (and, during
them, its module's ``open`` and the hook's ``file_backend``),
``CheckpointHook.before_train``, the local loader of ``CheckpointLoader``
and ``runner.runner.find_latest_checkpoint``. Below the patches, every
other reach into private mmengine or torch state that mmet needs sits
behind one named function here (``restart_workers``,
``built_eval_dataloader``, ``accumulative_counts``,
``set_accumulative_counts``), so an upgrade of the
stack has one place to check.
"""
import functools
import hashlib
import inspect
import io
import os
import os.path as osp
import re
import stat
import uuid
import zipfile
from pathlib import Path
from typing import List, Optional, Set, Union

import mmengine
import torch
import torch.distributed as torch_dist
from mmengine.dist import is_main_process
from mmengine.dist import utils as _mm_dist_utils
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.hooks import checkpoint_hook as _mm_ckpt_hook
from mmengine.logging import print_log
from mmengine.model.wrappers import distributed as _mm_ddp
from mmengine.runner import checkpoint as _mm_checkpoint
from mmengine.runner import runner as _mm_runner
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
    """Whether mmengine's checkpoint loading needs ``_FullUnpicklingTorch``:
    torch defaults to ``weights_only=True`` and this mmengine passes nothing.

    onedl-mmengine 0.10.8 (the fork's first release; upstream stopped at
    0.10.7) added its own ``weights_only`` handling to the module.
    """
    return (digit_version(torch.__version__) >= digit_version('2.6.0')
            and digit_version(mmengine.__version__) < digit_version('0.10.8'))


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


# ``_atomic_write``'s temporary file: ``.<name>.<pid>.<8 hex digits>.tmp``
_TEMP_NAME = re.compile(r'\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp')


def _atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` so that a reader sees the old file or the new one.

    The data goes to a temporary file in the same folder, is synced, and is
    renamed over ``filepath``; a process killed on the way leaves only the
    temporary file, which ``_remove_stale_temp_files`` removes later.
    """
    filepath = os.fspath(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(filepath)}.'
                   f'{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    # mode 0o666 less the umask, as ``open(filepath, 'wb')`` would create it
    # (``tempfile.mkstemp`` would make every checkpoint owner-only, 0o600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            if osp.exists(filepath):  # an overwrite keeps its mode
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(filepath).st_mode))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        os.unlink(tmp)
        raise


def _atomic_put(self, obj: bytes, filepath: Union[str, Path]) -> None:
    """``LocalBackend.put`` that never leaves a partly written file."""
    _atomic_write(obj, filepath)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _remove_stale_temp_files(folder: str) -> List[str]:
    """Remove the temporary files of ``_atomic_write`` that processes no
    longer alive (killed while writing) left in ``folder``; their names."""
    removed = []
    for name in sorted(os.listdir(folder)):
        match = _TEMP_NAME.fullmatch(name)
        if match and not _pid_alive(int(match['pid'])):
            try:
                os.unlink(osp.join(folder, name))
            except FileNotFoundError:  # removed meanwhile
                continue
            removed.append(name)
    return removed


class _AtomicTextFile(io.StringIO):
    """A text file opened with ``'w'`` that reaches the disk whole, when
    closed; closed by a ``with`` block that raised, it leaves the file."""

    def __init__(self, filepath: Union[str, Path]):
        super().__init__()
        self._filepath = filepath
        self._failed = False

    def __exit__(self, exc_type, *args):
        self._failed = exc_type is not None
        return super().__exit__(exc_type, *args)

    def close(self) -> None:
        try:
            if not self.closed and not self._failed:
                _atomic_write(self.getvalue().encode(), self._filepath)
        finally:
            super().close()


def _atomic_open(file, mode: str = 'r', *args, **kwargs):
    """``open`` as mmengine's checkpoint hook module sees it during a save:
    ``'w'`` (only used there for ``last_checkpoint``) replaces atomically."""
    if mode == 'w':
        return _AtomicTextFile(file)
    return open(file, mode, *args, **kwargs)


class _DeferredRemovals:
    """A ``CheckpointHook``'s file backend whose removals wait for
    ``flush``."""

    def __init__(self, backend):
        self.backend = backend
        self.pending = []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def remove(self, filepath: str) -> None:
        self.pending.append((self.backend.remove, filepath))

    def rmtree(self, dir_path: str) -> None:  # deepspeed's checkpoints
        self.pending.append((self.backend.rmtree, dir_path))

    def flush(self, keep: Set[str]) -> None:
        for remove, path in self.pending:
            if path not in keep:
                remove(path)


# sha256 of the ``CheckpointHook`` methods ``_save_then_remove`` wraps, as in
# mmengine 0.10.7 (and onedl-mmengine 0.10.12, where they are the same): the
# fix relies on them removing old checkpoints through ``self.file_backend``
# and writing ``last_checkpoint`` with their module's ``open``.
_SAVE_METHODS = {
    '_save_checkpoint_with_step':
    'cdbc1b54c7c88d9525ab025a9d51a3d3be6e6e36396c0f1151ecf51281fd3482',
    '_save_best_checkpoint':
    '8e1e477297ea08d7125b641c662fc44f5023556b72059986b043b4f147e03f26',
}


def _has_source(func, sha256: str) -> bool:
    """Whether ``func`` (unwrapped) is the code of this hash."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):  # no source to check: not the expected one
        return False
    return hashlib.sha256(source.encode()).hexdigest() == sha256


def _save_then_remove(save):
    """Wrap a ``CheckpointHook`` save: old checkpoints are removed only once
    the new one is on disk, and ``last_checkpoint`` is replaced atomically.

    mmengine removes the checkpoint that ``max_keep_ckpts`` (or a new best)
    drops before it saves the new one, so a run killed while saving can be
    left with none, and ``last_checkpoint`` naming the removed one; it writes
    ``last_checkpoint`` in place with a bare ``open``. A save that fails
    keeps the old checkpoints.
    """

    @functools.wraps(save)
    def wrapper(self, runner, *args, **kwargs):
        backend = getattr(self, 'file_backend', None)
        # nested (_save_best_checkpoint calls _save_checkpoint_with_step), or
        # a Runner.val() without training: before_train made no backend, and
        # the save returns early (nothing to save)
        if backend is None or isinstance(backend, _DeferredRemovals):
            return save(self, runner, *args, **kwargs)
        self.file_backend = deferred = _DeferredRemovals(backend)
        _mm_ckpt_hook.open = _atomic_open
        try:
            save(self, runner, *args, **kwargs)
        finally:
            self.file_backend = backend
            del _mm_ckpt_hook.open
        # a checkpoint saved again under a dropped one's name stays
        deferred.flush(keep={
            self.last_ckpt, getattr(self, 'best_ckpt_path', None),
            *getattr(self, 'best_ckpt_path_dict', {}).values()})

    wrapper._mmet_safe = True
    return wrapper


def _patch_checkpoint_saves() -> None:
    """Wrap the ``CheckpointHook`` saves with ``_save_then_remove`` if they
    are the code it was written for; leave them alone otherwise."""
    methods = {name: getattr(CheckpointHook, name) for name in _SAVE_METHODS}
    if all(not getattr(method, '_mmet_safe', False)
           and _has_source(method, _SAVE_METHODS[name])
           for name, method in methods.items()):
        for name, method in methods.items():
            setattr(CheckpointHook, name, _save_then_remove(method))


def _remove_stale_temp_files_first(before_train):
    """Wrap ``CheckpointHook.before_train``: the temporary files of saves
    killed in an earlier run are removed from its folders (nothing else
    removes them: they are hidden, and named per process)."""

    @functools.wraps(before_train)
    def wrapper(self, runner) -> None:
        before_train(self, runner)
        if not is_main_process():  # the rank that writes checkpoints
            return
        for folder in sorted({runner.work_dir, self.out_dir}):
            removed = _remove_stale_temp_files(folder) if osp.isdir(
                folder) else []
            if removed:
                runner.logger.info(
                    f'Removed the temporary files of killed saves in '
                    f'{folder}: {", ".join(removed)}')

    wrapper._mmet_safe = True
    return wrapper


# ``epoch_N.pth`` / ``iter_N.pth``, as CheckpointHook names them by default
_CHECKPOINT_NAME = re.compile(r'(?:epoch|iter)_(\d+)\.pth')


def _complete_checkpoints(folder: str, exclude: str = '') -> List[str]:
    """The ``epoch_N.pth`` / ``iter_N.pth`` in ``folder`` that are whole
    torch archives, highest N first."""
    if not osp.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _CHECKPOINT_NAME.fullmatch(name)
        path = osp.join(folder, name)
        if match and path != exclude and zipfile.is_zipfile(path):
            found.append((int(match[1]), path))
    return [path for _, path in sorted(found, reverse=True)]


def _checkpoint_file_problem(path: str) -> Optional[str]:
    """What makes the local file ``path`` no torch checkpoint; None if it
    looks like one (or is no file), so that a failure lies elsewhere."""
    if not osp.isfile(path):
        return None
    if osp.getsize(path) == 0:
        return 'is empty (a run killed while saving it?)'
    if zipfile.is_zipfile(path):  # a whole archive, as torch saves
        return None
    with open(path, 'rb') as f:
        head = f.read(4)
    if head == b'PK\x03\x04':
        return ('is truncated: a zip archive, as torch saves, without its '
                'end (a run killed while saving it, or a copy cut short?)')
    if head[:1] == b'\x80':  # a pickle: torch's legacy format
        return None
    return ('is not a torch checkpoint (neither a zip archive, as torch '
            'saves, nor a pickle)')


def _explain_bad_checkpoint_file(load_from_local):
    """Wrap mmengine's local checkpoint loader: a file that is empty,
    truncated or no torch checkpoint at all fails with a message that names
    it, its size, what is wrong and the checkpoints to use instead.

    ``torch.load`` says only ``EOFError: Ran out of input`` or
    ``UnpicklingError: invalid load key``, without the file. Other failures
    (of a file that looks whole) are raised as they are.
    """

    @functools.wraps(load_from_local)
    def wrapper(filename, map_location):
        try:
            return load_from_local(filename, map_location)
        except Exception as error:
            path = osp.abspath(osp.expanduser(filename))
            problem = _checkpoint_file_problem(path)
            if problem is None:
                raise
            folder = osp.dirname(path)
            others = _complete_checkpoints(folder, exclude=path)
            if others:
                names = ', '.join(osp.basename(p) for p in others)
                fix = (f'Resume from another checkpoint, e.g. `--resume '
                       f'{others[0]}` (in {folder}: {names}), or delete '
                       f'{path}.')
            else:
                fix = (f'No other complete epoch_*.pth or iter_*.pth is in '
                       f'{folder}: delete {path} and start afresh.')
            raise RuntimeError(
                f'Checkpoint {path} ({osp.getsize(path)} bytes) {problem}. '
                f'{fix}') from error

    wrapper._mmet_safe = True
    return wrapper


def _explain_bad_last_checkpoint(find_latest_checkpoint):
    """Wrap mmengine's ``find_latest_checkpoint`` for ``--resume``: a
    ``last_checkpoint`` that is empty or names a missing file fails with a
    message that says so and names the newest complete checkpoint.

    mmengine resumes from the empty name (``FileNotFoundError:  can not be
    found.``) or from the missing file (``... can not be found.``).
    """

    @functools.wraps(find_latest_checkpoint)
    def wrapper(path: str) -> Optional[str]:
        last_saved = find_latest_checkpoint(path)
        save_file = osp.join(path, 'last_checkpoint')
        if last_saved == '':
            problem = f'{save_file} is empty (a run killed while writing it?)'
            folder = path
        elif (last_saved and '://' not in last_saved
              and not osp.exists(last_saved)):
            problem = f'{save_file} names {last_saved}, which does not exist'
            folder = osp.dirname(last_saved) or path
        else:
            return last_saved
        newest = _complete_checkpoints(folder)
        if newest:
            fix = (f'Resume from the newest complete checkpoint, `--resume '
                   f'{newest[0]}`, or')
        else:
            fix = f'No complete epoch_*.pth or iter_*.pth is in {folder}:'
        raise FileNotFoundError(
            f'{problem}. {fix} delete {save_file} to start afresh.')

    wrapper._mmet_safe = True
    return wrapper


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
    _patch_checkpoint_saves()
    if not getattr(CheckpointHook.before_train, '_mmet_safe', False):
        CheckpointHook.before_train = _remove_stale_temp_files_first(
            CheckpointHook.before_train)
    if not getattr(_mm_checkpoint.load_from_local, '_mmet_safe', False):
        _mm_checkpoint.load_from_local = _explain_bad_checkpoint_file(
            _mm_checkpoint.load_from_local)
        _mm_checkpoint.CheckpointLoader.register_scheme(
            prefixes='', loader=_mm_checkpoint.load_from_local, force=True)
    # the Runner calls the name it imported into its module
    if not getattr(_mm_runner.find_latest_checkpoint, '_mmet_safe', False):
        _mm_runner.find_latest_checkpoint = _explain_bad_last_checkpoint(
            _mm_runner.find_latest_checkpoint)
    ddp = _mm_ddp.MMDistributedDataParallel
    if not getattr(ddp.__init__, '_mmet_cpu', False):
        ddp.__init__ = _ddp_init_cpu(ddp.__init__)


apply_compat_patches()
