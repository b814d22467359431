"""Checkpoints that are safe to load and whole after a kill.

Loading: :func:`safe_loading` makes mmengine load checkpoints (local files
and URLs: ``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')``,
``tools/test.py``) with ``weights_only=True`` and an allow-list of the
types that mmengine's, mmpretrain's, mmdet's and mmet's own checkpoints
hold (:data:`SAFE_GLOBALS`), on both stacks. Anything else is refused,
naming the file, the type and the opt-in: ``MMET_UNSAFE_LOAD=1`` (or the
tools' ``--unsafe-load``), which unpickles fully, as torch before 2.6 did.
Unpickling can run code, so opt in only for files you trust. A file that
is no whole checkpoint (empty, truncated, text) is named with its size and
the checkpoints to use instead. mmet's entry points (``tools/train.py``,
``tools/test.py``, ``tools/extract_backbone.py`` ...) call it; ``import
mmet`` does not.

Saving: :class:`SafeCheckpointHook`, mmengine's ``CheckpointHook`` with
three guarantees a kill during a save needs:

- the checkpoint that ``max_keep_ckpts`` (or a new best) drops is removed
  only once the new one is on disk (mmengine removes it first);
- checkpoints and ``last_checkpoint`` are written to a temporary file and
  renamed over the target, so a reader sees the old file or the new one
  (mmengine writes in place);
- temporary files of killed saves are removed at the next start;

and, before anything is loaded, a ``resume`` or ``load_from`` that would
fail on a broken ``last_checkpoint`` or checkpoint file is refused with the
cause and the fix. One line turns it on in any config::

    default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
"""
import builtins
import os
import os.path as osp
import pickle
import re
import stat
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional, Set, Union

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import find_latest_checkpoint
from mmengine.structures import BaseDataElement, InstanceData, LabelData
from mmpretrain.registry import HOOKS
from mmpretrain.structures import DataSample

from . import compat

#: The environment switch that lets mmet's entry points unpickle a
#: checkpoint fully (it can run code): only for files you trust.
UNSAFE_ENV = 'MMET_UNSAFE_LOAD'


def _numpy_globals() -> list:
    core = getattr(np, '_core', None) or np.core
    dtypes = [type(np.dtype(t)) for t in np.sctypeDict.values()
              if isinstance(t, type)]
    return [core.multiarray._reconstruct, core.multiarray.scalar,
            np.ndarray, np.dtype, *dict.fromkeys(dtypes)]


#: What mmengine's (``message_hub``: ``HistoryBuffer``, numpy arrays and
#: scalars), mmpretrain's and mmdet's (data samples in mmet's replay buffer)
#: and mmet's checkpoints hold beyond tensors and plain containers: the
#: list of onedl-mmengine's loader, plus the data samples.
SAFE_GLOBALS = [slice, getattr, HistoryBuffer, BaseDataElement, LabelData,
                InstanceData, DataSample, *_numpy_globals()]


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that weights-only loading refuses; the message names the
    file, what it holds and the opt-in."""


def _unsafe_allowed(allow_unsafe: bool) -> bool:
    return allow_unsafe or os.environ.get(UNSAFE_ENV, '') not in ('', '0')


def _refused_global(error: Exception) -> str:
    """The qualified name of the global that torch's weights-only
    unpickler refused (torch names a builtin bare, e.g. ``exec``)."""
    found = re.search(r'GLOBAL (\S+)', str(error))
    if not found:
        return 'objects'
    name = found.group(1)
    if '.' not in name and hasattr(builtins, name):
        name = f'builtins.{name}'
    return name


def _refusal(where, what: str) -> UnsafeCheckpointError:
    """The refusal of a checkpoint ``where`` that holds ``what``."""
    return UnsafeCheckpointError(
        f'{where} holds {what} beyond the tensors, numbers and containers '
        "of mmengine's, mmpretrain's and mmet's checkpoints, so it was not "
        'loaded: unpickling it could run code. If you trust the file, load '
        f"it with {UNSAFE_ENV}=1 (or --unsafe-load on mmet's tools); else "
        'ask its author for a weights-only copy.')


def load_safely(file, map_location=None, allow_unsafe: bool = False,
                **kwargs):
    """``torch.load`` with ``weights_only=True`` and :data:`SAFE_GLOBALS`.

    Raises:
        UnsafeCheckpointError: the file holds other types and neither
            ``allow_unsafe`` nor ``MMET_UNSAFE_LOAD=1`` opts in.
        RuntimeError: a local file that is no whole checkpoint.
    """
    kwargs.pop('weights_only', None)  # the caller's choice is ours here
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(file, map_location=map_location,
                              weights_only=True, **kwargs)
    except pickle.UnpicklingError as error:
        where = file if isinstance(file, (str, Path)) else 'the checkpoint'
        if _unsafe_allowed(allow_unsafe):
            print_log(f'Loading {where} with full unpickling '
                      f'({UNSAFE_ENV}=1): it can run code.',
                      logger='current', level=30)
            return torch.load(file, map_location=map_location,
                              weights_only=False, **kwargs)
        raise _refusal(where, _refused_global(error)) from None
    except Exception as error:
        path = osp.abspath(osp.expanduser(str(file))) \
            if isinstance(file, (str, Path)) else None
        problem = checkpoint_file_problem(path) if path else None
        if problem is None:
            raise
        raise RuntimeError(describe_broken(path, problem)) from error


def safe_loading(allow_unsafe: bool = False) -> None:
    """Make mmengine load checkpoints with :func:`load_safely` (local files)
    and ``weights_only=True`` with :data:`SAFE_GLOBALS` (URLs), on either
    stack; safe to call more than once. Without torch's ``safe_globals``
    (torch < 2.5, where ``torch.load`` unpickles fully by default) nothing
    changes."""
    if not hasattr(torch.serialization, 'safe_globals'):
        return

    def load(file, map_location=None, **kwargs):
        return load_safely(file, map_location, allow_unsafe, **kwargs)

    def load_url(url, *args, **kwargs):
        kwargs['weights_only'] = not _unsafe_allowed(allow_unsafe)
        try:
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                return torch.hub.load_state_dict_from_url(url, *args,
                                                          **kwargs)
        except pickle.UnpicklingError:
            raise _refusal(url, 'objects') from None

    compat.set_checkpoint_loaders(load, load_url)


# broken files ------------------------------------------------------------------
# ``epoch_N.pth`` / ``iter_N.pth``, as CheckpointHook names them by default
_CHECKPOINT_NAME = re.compile(r'(?:epoch|iter)_(\d+)\.pth')


def complete_checkpoints(folder: str, exclude: str = '') -> List[str]:
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


def checkpoint_file_problem(path: str) -> Optional[str]:
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


def describe_broken(path: str, problem: str, resume: bool = False) -> str:
    """The message for a broken checkpoint file: the file, its size, what
    is wrong and the complete checkpoints beside it (as ``--resume``
    arguments for a resume)."""
    folder = osp.dirname(path)
    others = complete_checkpoints(folder, exclude=path)
    if others:
        names = ', '.join(osp.basename(p) for p in others)
        use = (f'Resume from another checkpoint, e.g. `--resume {others[0]}`'
               if resume else f'Use another checkpoint, e.g. {others[0]}')
        fix = f'{use} (in {folder}: {names}), or delete {path}.'
    else:
        fix = (f'No other complete epoch_*.pth or iter_*.pth is in '
               f'{folder}: delete {path} and start afresh.')
    return f'Checkpoint {path} ({osp.getsize(path)} bytes) {problem}. {fix}'


def check_checkpoint_file(path: Optional[str], resume: bool = False) -> None:
    """Refuse a local checkpoint file that is no whole checkpoint
    (``resume``: one to resume from, which the fix names so).

    Raises:
        RuntimeError: naming the file, its size, the cause and the fix.
    """
    if not path or '://' in str(path):
        return
    path = osp.abspath(osp.expanduser(str(path)))
    problem = checkpoint_file_problem(path)
    if problem is not None:
        raise RuntimeError(describe_broken(path, problem, resume))


def check_resume(work_dir: str) -> Optional[str]:
    """The checkpoint ``resume=True`` (without ``load_from``) would load
    from ``work_dir``, checked: None where there is none (a fresh start).

    Raises:
        FileNotFoundError: ``last_checkpoint`` is empty or names a missing
            file; the message names the newest complete checkpoint.
        RuntimeError: the checkpoint it names is broken.
    """
    last_saved = find_latest_checkpoint(work_dir)
    save_file = osp.join(work_dir, 'last_checkpoint')
    if last_saved == '':
        problem = f'{save_file} is empty (a run killed while writing it?)'
        folder = work_dir
    elif (last_saved and '://' not in last_saved
          and not osp.exists(last_saved)):
        problem = f'{save_file} names {last_saved}, which does not exist'
        folder = osp.dirname(last_saved) or work_dir
    else:
        check_checkpoint_file(last_saved, resume=True)
        return last_saved
    newest = complete_checkpoints(folder)
    fix = (f'Resume from the newest complete checkpoint, `--resume '
           f'{newest[0]}`, or' if newest else
           f'No complete epoch_*.pth or iter_*.pth is in {folder}:')
    raise FileNotFoundError(
        f'{problem}. {fix} delete {save_file} to start afresh.')


# saving --------------------------------------------------------------------------
# a temporary file of ``_atomic_write``: ``.<name>.<pid>.<8 hex digits>.tmp``
_TEMP_NAME = re.compile(r'\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp')


def atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` so that a reader sees the old file or the new one.

    The data goes to a temporary file in the same folder, is synced and
    renamed over ``filepath``; a process killed on the way leaves only the
    temporary file, which :class:`SafeCheckpointHook` removes later.
    """
    filepath = os.fspath(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(filepath)}.'
                   f'{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    # mode 0o666 less the umask, as ``open(filepath, 'wb')`` would create it
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


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` never leaves a partly
    written file (:func:`atomic_write`)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def remove_stale_temp_files(folder: str) -> List[str]:
    """Remove the temporary files of :func:`atomic_write` that processes no
    longer alive left in ``folder``; their names."""
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


class _DeferredRemovals:
    """A file backend whose removals wait for :meth:`flush`."""

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


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose saves survive a kill: see the module
    docstring. Takes every argument of mmengine's ``CheckpointHook``; local
    checkpoints are written through :class:`AtomicLocalBackend` unless
    ``backend_args`` or ``file_client_args`` name another backend."""

    def __init__(self, *args, backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None, **kwargs):
        if backend_args is None and file_client_args is None:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args,
                         file_client_args=file_client_args, **kwargs)

    def before_run(self, runner) -> None:
        path, resume = compat.checkpoint_to_load(runner)
        if resume and path is None:
            check_resume(runner.work_dir)
        else:
            check_checkpoint_file(path, resume)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():  # the rank that writes checkpoints
            return
        for folder in sorted({runner.work_dir, self.out_dir}):
            removed = remove_stale_temp_files(folder) if osp.isdir(
                folder) else []
            if removed:
                runner.logger.info(
                    f'Removed the temporary files of killed saves in '
                    f'{folder}: {", ".join(removed)}')

    @contextmanager
    def _removals_after_save(self):
        """Removals wait until the save returned; ``last_checkpoint`` is
        replaced atomically. A save that fails keeps the old checkpoints."""
        backend = getattr(self, 'file_backend', None)
        if backend is None:  # Runner.val() without training: no saves
            yield
            return
        self.file_backend = deferred = _DeferredRemovals(backend)
        try:
            with compat.atomic_text_writes(atomic_write):
                yield
        finally:
            self.file_backend = backend
        # a checkpoint saved again under a dropped one's name stays
        deferred.flush(keep={
            self.last_ckpt, getattr(self, 'best_ckpt_path', None),
            *getattr(self, 'best_ckpt_path_dict', {}).values()})

    def after_train_epoch(self, runner) -> None:
        with self._removals_after_save():
            super().after_train_epoch(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        with self._removals_after_save():
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_val_epoch(self, runner, metrics) -> None:
        with self._removals_after_save():
            super().after_val_epoch(runner, metrics)


__all__ = ['SAFE_GLOBALS', 'UNSAFE_ENV', 'UnsafeCheckpointError',
           'load_safely', 'safe_loading', 'check_checkpoint_file',
           'check_resume', 'atomic_write', 'AtomicLocalBackend',
           'SafeCheckpointHook']
