"""The stage driver: finds every staged thing of a run and sets it to a stage.

:class:`StageDriver` binds to the train set and the model once, before the
data workers fork:

- it adapts a stock train pipeline (:mod:`mmet.adapt`) unless the data
  preprocessor is the staged part;
- it finds the staged transforms (:mod:`mmet.staged`) of every train
  pipeline, through dataset and transform wrappers, and the data
  preprocessor if it is one;
- it wraps each pipeline in a :class:`StagedPipeline`, which names the
  sample and the stage when a sample fails and seeds the workers' random
  state per epoch;
- it finds the model's Swin windows (:class:`~mmet.swin.SwinWindows`),
  which follow B.

:meth:`StageDriver.apply` then sets a stage on all of them. The driver owns
*the* full size (:attr:`StageDriver.full_size`); tools that have a config
and no Runner reach it through :meth:`StageDriver.from_config`.
"""
import multiprocessing
import os
import random
from types import SimpleNamespace
from typing import Any, Callable, List, NamedTuple, Optional

import numpy as np
import torch
from multiprocessing.context import get_spawning_popen

from .config import dataset_pipelines, type_name
from .pipelines import leaf_datasets, unwrap_model, walk_transforms
from .curriculum import Curriculum, StageState
from .sizes import Size
from .staged import StagedTransform, follows_bandwidth, follows_magnitude
from .swin import SwinWindows

LOW_PASS = ('fourier', 'resize')


class Staged(NamedTuple):
    """A staged transform the driver found.

    Attributes:
        target (StagedTransform): The transform (or data preprocessor).
        in_pipeline (bool): Whether it runs in the data workers.
    """
    target: StagedTransform
    in_pipeline: bool


# the pipeline wrapper ----------------------------------------------------------
class PipelineStageError(RuntimeError):
    """A train sample failed; the message names the sample and the stage.

    Attributes:
        where (str): The sample's ``img_path``, or ``sample <index>``.
        stage (str): The curriculum stage the pipeline was set to.
        problem (str): What is wrong with the file, where the cause does not
            say it (an empty file), with the fix; else ``''``.
    """

    # one-argument construction lets a DataLoader worker's re-raise in the
    # trainer keep the type
    def __init__(self, message: str, where: str = '', stage: str = '',
                 problem: str = ''):
        super().__init__(message)
        self.where, self.stage, self.problem = where, stage, problem


class StagedPipeline:
    """A train dataset's pipeline under the curriculum.

    - A transform that fails in a data worker (a corrupt JPEG, an image
      smaller than B) reaches the trainer as a worker traceback that may
      name neither the file nor the stage: this wrapper re-raises any
      exception as :class:`PipelineStageError` naming both, chained to the
      original. It never swallows an error.
    - In a data worker, the first sample of each epoch seeds ``random``,
      ``numpy`` and torch from (seed, epoch, rank, worker id), as timm
      does, so that an epoch draws the same augmentations whether the run
      was resumed or not. The epoch lives in shared memory that the
      trainer sets (:meth:`set_epoch`), so persistent workers see it.

    Args:
        pipeline (Callable): The dataset's pipeline, usually a ``Compose``.
            Other attributes (``transforms``) are read through.
        seed (int, optional): The run's seed; None: no seeding.
        rank (int): The process's rank.
    """

    def __init__(self, pipeline: Callable, seed: Optional[int] = None,
                 rank: int = 0):
        self.pipeline = pipeline
        self.stage = 'before the first stage'
        self.adapted: List[str] = []  # what adapt_pipeline changed in it
        self.seed, self.rank = seed, rank
        self._epoch = multiprocessing.RawValue('q', -1)
        self._seeded = (None, None)  # (pid, epoch) of the last seeding

    def set_epoch(self, epoch: int) -> None:
        """The epoch the workers seed from (set before it starts)."""
        self._epoch.value = epoch

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        # shared memory travels only to a process being spawned; a plain
        # copy (pickle, deepcopy) keeps the epoch's value
        if get_spawning_popen() is None:
            state['_epoch'] = self._epoch.value
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state['_epoch'], int):
            state['_epoch'] = multiprocessing.RawValue('q', state['_epoch'])
        self.__dict__.update(state)

    def _seed_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        epoch = self._epoch.value
        if self.seed is None or info is None or epoch < 0 or \
                self._seeded == (os.getpid(), epoch):
            return
        self._seeded = (os.getpid(), epoch)
        state = np.random.SeedSequence(
            [self.seed % 2**32, epoch, self.rank, info.id]).generate_state(2)
        random.seed(int(state[0]))
        np.random.seed(int(state[0]))
        torch.manual_seed(int(state[0]) << 32 | int(state[1]))

    def __call__(self, results: Any) -> Any:
        self._seed_worker()
        # read before the transforms run: they may rebuild the dict
        path = idx = None
        if isinstance(results, dict):
            path, idx = results.get('img_path'), results.get('sample_idx')
        try:
            return self.pipeline(results)
        except Exception as e:
            where = path if path is not None else f'sample {idx}'
            problem = _file_problem(path)
            raise PipelineStageError(
                f'The train pipeline failed on {where} in EfficientTrain '
                f'{self.stage}: {problem}{type(e).__name__}: {e}', where,
                self.stage, problem) from e

    def __getattr__(self, name: str) -> Any:
        # guard: unpickling probes attributes before __dict__ is filled
        if name.startswith('__') or 'pipeline' not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__['pipeline'], name)

    def __repr__(self) -> str:
        return repr(self.pipeline)


def _file_problem(path: Optional[str]) -> str:
    """What is wrong with a local image file that decoders only report as
    ``!buf.empty()``: ``'x.jpg is empty (0 bytes ...): <fix>. '``, else
    ``''``."""
    if not isinstance(path, str) or not os.path.isfile(path) or \
            os.path.getsize(path) > 0:
        return ''
    return (f'{path} is empty (0 bytes; an interrupted download or copy?): '
            'replace the file, or remove it and its entry from the '
            'annotation file. ')


# the driver ------------------------------------------------------------------
class StageDriver:
    """Find every staged thing of a train set and model; set a stage.

    Args:
        curriculum (Curriculum): The stages to drive.
        low_pass (str): How :meth:`bind` adapts a stock pipeline:
            ``'fourier'`` (a ``FourierCrop`` before the packing) or
            ``'resize'`` (``RandomResizedCrop`` becomes the cheap path,
            ``StagedRandomResizedCrop``). See :mod:`mmet.adapt`.
        adapt (bool): Adapt stock pipelines at all. Defaults to True.
    """

    def __init__(self, curriculum: Curriculum, low_pass: str = 'fourier',
                 adapt: bool = True):
        if low_pass not in LOW_PASS:
            raise ValueError(f'low_pass must be one of {LOW_PASS}, got '
                             f'{low_pass!r}.')
        self.curriculum, self.low_pass, self.adapt = \
            curriculum, low_pass, adapt
        self.staged: List[Staged] = []
        self.pipelines: List[StagedPipeline] = []
        self.preprocessor: Optional[StagedTransform] = None
        self.swin: Optional[SwinWindows] = None
        self.found: List[str] = []  # every transform's name, for messages
        self.changes: List[str] = []  # what adaptation changed

    @property
    def lowers_bandwidth(self) -> bool:
        return any(s.bandwidth != 1 for s in self.curriculum.stages)

    @property
    def changes_magnitude(self) -> bool:
        return len({s.magnitude for s in self.curriculum.stages}) > 1

    # binding ----------------------------------------------------------------
    def bind(self, dataset, model=None, log: Optional[Callable] = None,
             seed: Optional[int] = None, rank: int = 0) -> 'StageDriver':
        """Adapt, wrap and find; before the data workers fork.

        Args:
            dataset: The train dataset (wrappers are walked).
            model (nn.Module, optional): The model (DDP is unwrapped): its
                data preprocessor and Swin windows.
            log (Callable, optional): Gets the adapted pipelines' before
                and after.
            seed (int, optional): The run's seed, which the workers' random
                state per epoch derives from.
            rank (int): This process's rank.

        Raises:
            mmet.adapt.AdaptationError: a stock pipeline it cannot adapt.
        """
        leaves = list(leaf_datasets(dataset))
        model = unwrap_model(model) if model is not None else None
        pre = getattr(model, 'data_preprocessor', None)
        self.preprocessor = pre if isinstance(pre, StagedTransform) else None
        changes = self._adapt(leaves, log) if self.adapt and \
            self.preprocessor is None else {}
        for ds in leaves:
            if callable(ds.pipeline) and not isinstance(
                    ds.pipeline, (list, tuple, StagedPipeline)):
                ds.pipeline = StagedPipeline(ds.pipeline, seed, rank)
            if isinstance(ds.pipeline, StagedPipeline):
                ds.pipeline.adapted += changes.get(id(ds), [])
        self.pipelines = [ds.pipeline for ds in leaves
                          if isinstance(ds.pipeline, StagedPipeline)]
        # adapted now or by an earlier bind (the loop binds before the hook)
        self.changes = [c for p in self.pipelines for c in p.adapted]
        steps = [step.transform for ds in leaves
                 for step in walk_transforms(ds.pipeline)]
        self.found = [type(t).__name__ for t in steps]
        self.staged = [Staged(t, True) for t in steps
                       if isinstance(t, StagedTransform)]
        if self.preprocessor is not None:
            self.found.append(type(self.preprocessor).__name__)
            self.staged.append(Staged(self.preprocessor, False))
        self.swin = SwinWindows.find(model) if isinstance(
            model, torch.nn.Module) and self.lowers_bandwidth else None
        return self

    def _adapt(self, leaves, log: Optional[Callable]) -> dict:
        """Adapt each leaf's pipeline; returns id(leaf) -> its changes."""
        from .adapt import AdaptationError, adapt_pipeline, describe_pipeline
        out = {}
        for ds in leaves:
            transforms = getattr(ds.pipeline, 'transforms', None)
            if not isinstance(transforms, list):
                continue  # mmdet's MultiImageMixDataset: its own list
            before = describe_pipeline(transforms)
            found = ', '.join(type(t).__name__ for t in transforms)
            try:
                changes = adapt_pipeline(
                    transforms, low_pass=self.low_pass,
                    bandwidth=self.lowers_bandwidth,
                    magnitude=self.changes_magnitude)
            except AdaptationError as e:
                raise AdaptationError(
                    'EfficientTrain found no FourierCrop, StagedRandomResized'
                    'Crop or StagedRandAug (or other staged transform) in the '
                    f'train pipeline (found: {found}) and no '
                    f'DeviceAugmentPreprocessor, and cannot adapt it: {e}'
                ) from e
            if changes and log is not None:
                log(f'EfficientTrain adapted the train pipeline of '
                    f'{type(ds).__name__} ({"; ".join(changes)}).\nBefore:\n'
                    f'{before}\nAfter:\n{describe_pipeline(transforms)}')
            out[id(ds)] = changes
        return out

    @classmethod
    def from_config(cls, cfg, curriculum: Curriculum,
                    low_pass: str = 'fourier') -> 'StageDriver':
        """A driver bound to the pipelines and preprocessor of a config.

        Builds the train datasets' pipelines (not the datasets) and the data
        preprocessor if it is a staged one, adapts them as a Runner would,
        and binds to them: the tools' way to the one full size.
        """
        from mmengine.dataset import Compose
        from mmengine.registry import MODELS, init_default_scope
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        leaves = [SimpleNamespace(pipeline=Compose(p)) for p in
                  dataset_pipelines(cfg.train_dataloader.get('dataset'))]
        model = SimpleNamespace(data_preprocessor=None)
        pre_cfg = (cfg.get('model') or {}).get('data_preprocessor') or \
            cfg.get('data_preprocessor')
        if pre_cfg and type_name(pre_cfg) == 'DeviceAugmentPreprocessor':
            model.data_preprocessor = MODELS.build(dict(pre_cfg))
        return cls(curriculum, low_pass).bind(
            SimpleNamespace(datasets=leaves), model)

    # what it found -----------------------------------------------------------
    @property
    def bandwidth_transforms(self) -> List[StagedTransform]:
        return [s.target for s in self.staged if follows_bandwidth(s.target)]

    @property
    def magnitude_transforms(self) -> List[StagedTransform]:
        return [s.target for s in self.staged if follows_magnitude(s.target)]

    @property
    def full_size(self) -> Optional[Size]:
        """*The* full input size: the declared full size of the first
        bandwidth transform in the pipeline, else of the data preprocessor;
        None without one."""
        crops = self.bandwidth_transforms
        return crops[0].full_size if crops else None

    @property
    def final_magnitude(self) -> Optional[float]:
        """The configured m of the first magnitude transform, or None."""
        mags = self.magnitude_transforms
        return float(mags[0].full_magnitude) if mags else None

    @property
    def in_pipeline(self) -> bool:
        """Whether a staged transform runs in the data workers (so a stage
        switch needs fresh workers, i.e. whole epochs)."""
        return any(s.in_pipeline for s in self.staged)

    @property
    def sized_in_pipeline(self) -> bool:
        """Whether the workers deliver samples at B."""
        return any(s.in_pipeline and follows_bandwidth(s.target)
                   for s in self.staged)

    # driving ----------------------------------------------------------------
    def apply(self, state: StageState) -> None:
        """Set every staged thing to ``state``'s stage."""
        stage = self.curriculum.stages[state.index]
        for s in self.staged:
            s.target.set_stage(stage)
        if self.swin is not None and state.size is not None:
            self.swin.set_size(state.size)
        text = state.describe()
        for p in self.pipelines:
            p.stage = text

    def set_epoch(self, epoch: int) -> None:
        """The epoch the data workers seed their random state from."""
        for p in self.pipelines:
            p.set_epoch(epoch)

    def full_model(self) -> None:
        """The model at full size (validation, testing, checkpoints)."""
        if self.swin is not None:
            self.swin.reset()
