"""Every reach into private mmengine or torch state, each behind one name.

Nothing here runs on ``import mmet``: each function is called where it is
needed, and says why it has to reach where it does, so that an upgrade of
either stack (upstream mmengine 0.10.7, or the fork onedl-mmengine 0.10.12;
``MMET_STACK``) has one place to check. ``docs/compatibility.md`` lists
which of them each stack needs and what they change.
"""
import builtins
import io
from contextlib import contextmanager
from typing import Callable, Optional, Tuple

from mmengine.hooks import checkpoint_hook as _mm_checkpoint_hook
from mmengine.runner import checkpoint as _mm_checkpoint


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


def build_train_dataloader(runner, dataloader):
    """A train loader from its config, as mmengine's ``BaseLoop`` builds it.

    ``BaseLoop`` reads ``diff_rank_seed`` from the Runner's private
    ``_randomness_cfg``; :class:`~mmet.loops.EfficientTrainLoop` builds its
    loader before its parent does (its plan needs the loader's length).
    """
    if not isinstance(dataloader, dict):
        return dataloader
    diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
    return runner.build_dataloader(
        dataloader, seed=runner.seed, diff_rank_seed=diff_rank_seed)


def checkpoint_to_load(runner) -> Tuple[Optional[str], bool]:
    """``(load_from, resume)`` of a Runner, which it keeps private
    (``_load_from``, ``_resume``) until ``load_or_resume``."""
    return runner._load_from, bool(runner._resume)


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


class _TorchWithLoad:
    """``torch`` as mmengine's checkpoint module sees it: ``load`` is
    :func:`mmet.checkpoint.load_safely`."""

    def __init__(self, torch_module, load: Callable):
        self._torch, self.load = torch_module, load

    def __getattr__(self, name):
        return getattr(self._torch, name)


def set_checkpoint_loaders(load: Callable, load_url: Callable) -> None:
    """Make mmengine's checkpoint loading call ``load`` and ``load_url``.

    mmengine's ``runner.checkpoint`` module calls its module-level ``torch``
    (``torch.load`` in ``load_from_local`` and the fork's
    ``_safe_torch_load``) and ``load_url`` (``http(s)://``,
    ``torchvision://``, ``open-mmlab://``); it has no option for how to
    unpickle, so these names are replaced (once: calling again swaps the
    functions).
    """
    current = _mm_checkpoint.torch
    torch_module = current._torch if isinstance(current, _TorchWithLoad) \
        else current
    _mm_checkpoint.torch = _TorchWithLoad(torch_module, load)
    _mm_checkpoint.load_url = load_url


class _AtomicTextFile(io.StringIO):
    """A text file opened with ``'w'`` that reaches the disk whole, when
    closed; closed by a ``with`` block that raised, it leaves the file."""

    def __init__(self, path, write: Callable[[bytes, str], None]):
        super().__init__()
        self._path, self._write, self._failed = path, write, False

    def __exit__(self, exc_type, *args):
        self._failed = exc_type is not None
        return super().__exit__(exc_type, *args)

    def close(self) -> None:
        try:
            if not self.closed and not self._failed:
                self._write(self.getvalue().encode(), self._path)
        finally:
            super().close()


@contextmanager
def atomic_text_writes(write: Callable[[bytes, str], None]):
    """Within the block, ``open(path, 'w')`` in mmengine's checkpoint hook
    module writes through ``write(data, path)`` when the file closes.

    ``CheckpointHook`` writes ``last_checkpoint`` in place with the builtin
    ``open`` of its module (a run killed meanwhile leaves it empty), and
    has no option for it; the module's ``open`` is shadowed for the block.
    """
    def open_(file, mode='r', *args, **kwargs):
        if mode == 'w':
            return _AtomicTextFile(file, write)
        return builtins.open(file, mode, *args, **kwargs)

    _mm_checkpoint_hook.open = open_
    try:
        yield
    finally:
        del _mm_checkpoint_hook.open
