"""EfficientTrain++'s replay buffer, for loaders that cannot keep up.

At low resolution the model trains faster than the CPU pipeline augments
images. The official ``engine_buffer.py`` (LeapLabTHU/EfficientTrain
@2b9011c) then loads batches of ``bs / R``, splits each into ``split`` (32)
chunks, pushes them into a bounded FIFO and trains on the fresh chunks plus
``(R - 1) * split`` chunks drawn at random from the buffer, which restores a
batch of ``bs``. Loading drops R-fold; optimizer steps do not.

:class:`ReplayBuffer` does the same on mmengine data batches (the collated
``dict(inputs=..., data_samples=...)`` of the train loader, before the data
preprocessor), so batch augmentations such as Mixup and CutMix see the whole
mixed batch, as in the official code (mixup after the concatenation).
:class:`StageReplay` gives each stage of :class:`~mmet.loops.EfficientTrainLoop`
its buffer and, through :class:`ReplayStateHook`, keeps it in checkpoints,
so a resumed run draws what the uninterrupted one would.
"""
import copy
from collections import deque
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


def _batch_len(batch: Dict[str, Any]) -> int:
    sizes = {len(v) for v in batch.values()
             if isinstance(v, (list, tuple, torch.Tensor))}
    if len(sizes) != 1:
        raise ValueError(
            'ReplayBuffer needs a data batch whose entries all hold one item '
            f'per sample; got lengths {sorted(sizes)} for keys '
            f'{sorted(batch)}.')
    return sizes.pop()


def _to_cpu(v):
    """Tensors and data samples (or lists of them) on the CPU."""
    if isinstance(v, list):
        return [_to_cpu(x) for x in v]
    if isinstance(v, torch.Tensor) or (hasattr(v, 'cpu') and
                                       callable(v.cpu)):
        return v.cpu()
    return v


class ReplayBuffer:
    """A bounded FIFO of batch chunks that refills small fresh batches.

    Args:
        times (int): Replay factor R: the training batch is R times the
            loaded one. 1 disables replay (and holds nothing).
        size (int): Capacity in loaded batches (each kept as ``split``
            chunks), as ``--replay_buffer_size`` in the official code.
        split (int): Chunks per loaded batch. Defaults to 32. A batch with
            fewer samples is split into one chunk per sample.
        fp16 (bool): Keep floating-point tensors in float16, as the official
            code does (``ToHalf``); they return in their own dtype. Integer
            inputs (mmpretrain's uint8 images) are stored as they are, which
            is exact and half the size of float16. Defaults to True.
        seed (int, optional): Seed of the draws.
    """

    def __init__(self, times: int = 1, size: int = 0, split: int = 32,
                 fp16: bool = True, seed: Optional[int] = None):
        self.split = int(split)
        if self.split < 1:
            raise ValueError(f'split must be >= 1, got {split}.')
        self.fp16 = fp16
        self._chunks: deque = deque()
        self._generator = torch.Generator()
        self._generator.manual_seed(0 if seed is None else int(seed))
        self.configure(times, size)

    def configure(self, times: int, size: int) -> None:
        """Set R and the capacity for a new stage, and empty the buffer.

        The official code starts each stage in a new process, so each stage
        starts with an empty buffer; here, too, nothing is carried over.
        """
        times, size = int(times), int(size)
        if times < 1 or size < 0:
            raise ValueError(
                f'Replay needs times >= 1 and size >= 0, got times={times}, '
                f'size={size}.')
        if times > 1 and size < 1:
            raise ValueError(
                f'Replay with times={times} needs a buffer (size >= 1 loaded '
                'batch) to draw from.')
        self.times, self.size = times, size
        self._chunks.clear()

    # sizes -----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Most chunks the buffer holds: ``size * split``."""
        return self.size * self.split if self.times > 1 else 0

    def __len__(self) -> int:
        """Chunks held."""
        return len(self._chunks)

    @property
    def num_samples(self) -> int:
        return sum(c['_n'] for c in self._chunks)

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data held."""
        total = 0
        for c in self._chunks:
            for v in c.values():
                if isinstance(v, torch.Tensor):
                    total += v.numel() * v.element_size()
                elif isinstance(v, list):
                    total += sum(x.numel() * x.element_size() for x in v
                                 if isinstance(x, torch.Tensor))
        return total

    # storing ---------------------------------------------------------------
    def _store(self, v):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            if self.fp16 and v.is_floating_point():
                # a copy even of float16: a view would keep (and a
                # checkpoint would save) the whole loaded batch
                return v.to(torch.float16, copy=True)
            return v.clone()
        if hasattr(v, 'clone') and callable(v.clone):  # BaseDataElement
            return v.clone()
        return copy.deepcopy(v)

    def _chunk(self, batch: Dict[str, Any], idx: np.ndarray) -> dict:
        chunk: Dict[str, Any] = {'_n': len(idx)}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                chunk[key] = self._store(value[idx[0]:idx[-1] + 1])
                chunk['_dtype_' + key] = value.dtype
            elif isinstance(value, (list, tuple)):
                items = [value[i] for i in idx]
                chunk[key] = [self._store(x) for x in items]
                chunk['_dtype_' + key] = [
                    x.dtype if isinstance(x, torch.Tensor) else None
                    for x in items
                ]
            else:
                chunk[key] = value
        return chunk

    def push(self, batch: Dict[str, Any]) -> None:
        """Split ``batch`` into chunks and append them, dropping the oldest
        beyond the capacity."""
        n = _batch_len(batch)
        for idx in np.array_split(np.arange(n), min(self.split, n)):
            self._chunks.append(self._chunk(batch, idx))
        while len(self._chunks) > self.capacity:
            self._chunks.popleft()

    # drawing ---------------------------------------------------------------
    def _restore(self, chunk: dict) -> Dict[str, Any]:
        out = {}
        for key, value in chunk.items():
            if key.startswith('_'):
                continue
            dtype = chunk.get('_dtype_' + key)
            if isinstance(value, torch.Tensor):
                out[key] = value.to(dtype)
            elif isinstance(value, list):
                out[key] = [
                    x.to(d) if isinstance(x, torch.Tensor) else
                    (x.clone() if hasattr(x, 'clone') else copy.deepcopy(x))
                    for x, d in zip(value, dtype)
                ]
            else:
                out[key] = value
        return out

    def draw(self, num_samples: int) -> List[Dict[str, Any]]:
        """Random chunks (with replacement) holding ``num_samples`` samples.

        The last chunk is cut so that the count is exact.
        """
        if num_samples <= 0:
            return []
        if not self._chunks:
            raise RuntimeError('The replay buffer is empty; push first.')
        drawn, count = [], 0
        while count < num_samples:
            i = int(torch.randint(len(self._chunks), (1, ),
                                  generator=self._generator))
            chunk = self._restore(self._chunks[i])
            n = self._chunks[i]['_n']
            if count + n > num_samples:
                keep = num_samples - count
                chunk = {k: v[:keep] if isinstance(v, (list, torch.Tensor))
                         else v for k, v in chunk.items()}
                n = keep
            drawn.append(chunk)
            count += n
        return drawn

    def mix(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """Push a fresh batch of ``n`` and return it with ``(R - 1) * n``
        replayed samples appended (the batch itself when R = 1)."""
        if self.times == 1:
            return batch
        if not isinstance(batch, dict):
            raise TypeError(
                'Replay works on dict data batches (mmengine collate), got '
                f'{type(batch).__name__}.')
        n = _batch_len(batch)
        self.push(batch)
        parts = self.draw((self.times - 1) * n)
        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                out[key] = torch.cat([value] + [p[key] for p in parts])
            elif isinstance(value, (list, tuple)):
                merged = list(value)
                for p in parts:
                    merged.extend(p[key])
                out[key] = merged
            else:
                out[key] = value
        return out

    # checkpoints -----------------------------------------------------------
    def state_dict(self, contents: bool = True) -> dict:
        """The random state of the draws and, with ``contents``, the chunks.

        The chunks are kept as stored: floats in float16 (with ``fp16``),
        integer images as they are, so at most :attr:`nbytes` of tensors.
        """
        return dict(generator=self._generator.get_state(),
                    chunks=list(self._chunks) if contents else None)

    def load_state_dict(self, state: dict, contents: bool = True) -> None:
        """Restore the draws of :meth:`state_dict` and, with ``contents``,
        its chunks (the newest up to the capacity); otherwise start empty.

        Tensors come back to the CPU, where the buffer keeps them, whatever
        device the checkpoint was loaded to.
        """
        self._generator.set_state(state['generator'].cpu())
        self._chunks.clear()
        if contents and state.get('chunks'):
            self._chunks.extend({k: _to_cpu(v) for k, v in c.items()}
                                for c in state['chunks'])
            while len(self._chunks) > self.capacity:
                self._chunks.popleft()

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(times={self.times}, size={self.size},'
                f' split={self.split}, chunks={len(self)}/{self.capacity})')


class StageReplay:
    """The replay buffer of each stage of a run.

    Each stage with R > 1 gets an empty buffer of its size (the official
    code starts each stage in a new process); :meth:`state_dict` is what a
    checkpoint keeps of it, :meth:`load_state_dict` what a resume gives
    back, restored when the buffer of the resumed stage is made.

    Args:
        settings (dict): :func:`~mmet.plan.replay_settings`.
        seed (int): Seed of the draws (per rank).
        logger: Where warnings go.
    """

    def __init__(self, settings: dict, seed: int, logger):
        self.settings, self.seed, self.logger = settings, seed, logger
        self.buffer: Optional[ReplayBuffer] = None
        self.stage: Optional[int] = None
        self._saved: Optional[tuple] = None  # (state, iteration)
        self._warned: set = set()  # stages saved without their contents

    def enter(self, stage: int, iteration: int) -> None:
        """Stage ``stage`` starts (or resumes) at ``iteration``."""
        if stage == self.stage:
            return
        times = self.settings['times'][stage]
        size = self.settings['buffer_size'][stage]
        if self.buffer is None:
            self.buffer = ReplayBuffer(
                times, size, split=self.settings['split'],
                fp16=self.settings['fp16'], seed=self.seed)
        else:
            self.buffer.configure(times, size)
        self.stage = stage
        self._restore(iteration)

    def mix(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        return self.buffer.mix(batch) if self.buffer is not None else batch

    def state_dict(self) -> Optional[dict]:
        """``dict(stage=, rank=, buffer=ReplayBuffer.state_dict())``, the
        contents only up to ``checkpoint_mb`` MiB; None before a stage."""
        if self.buffer is None:
            return None
        limit_mb = self.settings['checkpoint_mb']
        contents = self.buffer.nbytes <= limit_mb * 2**20
        if not contents and self.stage not in self._warned:
            self._warned.add(self.stage)
            self.logger.warning(
                f'EfficientTrainLoop: the replay buffer holds '
                f'{self.buffer.nbytes / 2**20:.0f} MiB, more than '
                f'replay.checkpoint_mb={limit_mb:g}: the checkpoint keeps '
                'its random state but not its contents, so a run resumed '
                'from it refills the buffer. Raise checkpoint_mb to keep '
                'them.')
        return dict(stage=self.stage, rank=get_rank(),
                    buffer=self.buffer.state_dict(contents=contents))

    def load_state_dict(self, state: dict, iteration: Optional[int]) -> None:
        """Keep a checkpoint's state (saved at ``iteration``) until the
        resumed stage's buffer is made."""
        self._saved = (state, iteration)

    def _restore(self, iteration: int) -> None:
        if self._saved is None:
            return
        (state, saved_at), self._saved = self._saved, None
        # weights loaded with load_from start afresh; a resume is at the
        # checkpoint's iteration
        if saved_at != iteration or state['rank'] != get_rank():
            return
        same_stage = state['stage'] == self.stage
        self.buffer.load_state_dict(state['buffer'], contents=same_stage)
        if same_stage and state['buffer']['chunks'] is None:
            self.logger.warning(
                'EfficientTrainLoop: the checkpoint kept the replay buffer '
                'without its contents (over replay.checkpoint_mb): it '
                'refills, so the next batches replay fewer samples than the '
                'uninterrupted run.')
        if get_world_size() > 1:
            self.logger.warning(
                "EfficientTrainLoop: the checkpoint holds rank 0's replay "
                'buffer only (mmengine saves on rank 0): the other ranks '
                'refill theirs.')


@HOOKS.register_module()
class ReplayStateHook(Hook):
    """Keep :class:`EfficientTrainLoop`'s replay buffer in checkpoints.

    The loop registers it when it replays. A checkpoint then holds
    ``replay_buffer`` (:meth:`StageReplay.state_dict`); a resume hands it
    back to the loop's :class:`StageReplay`.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = runner.train_loop.replay.state_dict()
        if state is not None:
            checkpoint['replay_buffer'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('replay_buffer')
        if state is not None:
            runner.train_loop.replay.load_state_dict(
                state, checkpoint.get('meta', {}).get('iter'))
