"""The stage driver: finds every staged transform and sets it to a stage.

This module is the single owner of "stage" and "full size":

- :class:`StagedTransform` is the one small interface to a staged thing:
  its full size (or final magnitude), and ``set_stage``;
- :class:`StageDriver` finds them all, in the dataset pipelines (through
  ``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset`` and mmdet's
  ``MultiImageMixDataset``) and in the model's data preprocessor
  (:class:`~mmet.device_pipeline.DeviceAugmentPreprocessor`), adapts a stock
  pipeline (:mod:`mmet.adapt`) before that, and sets them all to a stage;
  :attr:`StageDriver.full_size` is *the* full size, which the hook, the
  loop and the tools all read (:meth:`StageDriver.from_config` for tools
  that have a config and no Runner);
- :class:`StageSchedule` says when each stage trains (whole epochs, or
  iterations for the batched path) and gives its :class:`StageState`, the
  named state with the one text that every message uses.
"""
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

from mmengine.model import is_model_wrapper

from .batch_randaug import BatchRandAugment
from .curriculum import Curriculum, Stage, bandwidth_pixels, infer_family
from .batch_transforms import BatchFourierCrop
from .transforms import FourierCrop, StagedRandAug, StagedRandomResizedCrop

Size = Union[int, Tuple[int, int]]

# what the curriculum sets B on (and the attribute holding the size), and m
BANDWIDTH_ATTRS = {FourierCrop: 'size', BatchFourierCrop: 'size',
                   StagedRandomResizedCrop: 'scale'}
MAGNITUDE_TYPES = (StagedRandAug, BatchRandAugment)


def _hw(size: Size) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _square(size: Size) -> Size:
    """``(s, s)`` as ``s``: the form FourierCrop sizes and messages use."""
    h, w = _hw(size)
    return h if h == w else (h, w)


# the stage state ------------------------------------------------------------
@dataclass(frozen=True)
class StageState:
    """One stage of a run: what it trains and when.

    Attributes:
        index (int): 0-based; messages number stages from 1.
        num_stages (int): Stages of the curriculum.
        size (int | tuple, optional): B in pixels (None before full size is
            known).
        bandwidth (float): B relative to the full size.
        magnitude (float): RandAugment m.
        first_epoch (int, optional): First epoch of the stage, from 1.
        last_epoch (int, optional): Last epoch of the stage, from 1; below
            ``first_epoch`` for a stage without epochs.
        max_epochs (int, optional): Epochs of the run.
    """
    index: int
    num_stages: int
    size: Optional[Size]
    bandwidth: float
    magnitude: float
    first_epoch: Optional[int] = None
    last_epoch: Optional[int] = None
    max_epochs: Optional[int] = None

    @property
    def number(self) -> int:
        """The stage's number in messages, from 1."""
        return self.index + 1

    def describe(self, span: bool = True) -> str:
        """``'stage 4/5 (B=28, m=7, epochs 7-8 of 10)'``; without ``span``
        (or without a run length), ``'stage 4/5 (B=28, m=7)'``."""
        size = self.size if self.size is not None else \
            f'{self.bandwidth:.3g}'
        text = f'stage {self.number}/{self.num_stages} (B={size}, ' \
            f'm={self.magnitude:g}'
        if span and self.max_epochs:
            first, last = self.first_epoch, self.last_epoch
            when = f'epoch {last}' if first >= last else \
                f'epochs {first}-{last}'
            text += f', {when} of {self.max_epochs}'
        return text + ')'

    def __str__(self) -> str:
        return self.describe()


class StageSchedule:
    """When each stage of a curriculum trains, and its :class:`StageState`.

    Args:
        curriculum (Curriculum): The stages.
        max_epochs (int): Epochs of the run.
        full_size (int | tuple, optional): The full size (B in pixels).
        epoch_length (int, optional): Iterations per epoch: given, stages
            switch at iterations (each stage gets its share to within one
            iteration); else at whole epochs.
        edges (list[int], optional): First epoch (or iteration) of each
            stage, then the end: a plan recorded in a checkpoint. Defaults
            to the curriculum's boundaries.
    """

    def __init__(self, curriculum: Curriculum, max_epochs: int,
                 full_size: Optional[Size] = None,
                 epoch_length: Optional[int] = None,
                 edges: Optional[List[int]] = None):
        self.curriculum, self.max_epochs = curriculum, max_epochs
        self.full_size, self.epoch_length = full_size, epoch_length
        ticks = max_epochs * epoch_length if epoch_length else max_epochs
        # without a run length (a driver used alone) stages have no span
        if edges is None and ticks:
            edges = curriculum.boundaries(ticks)
        self.edges = edges

    @property
    def by_iter(self) -> bool:
        return bool(self.epoch_length)

    def index_at(self, tick: int) -> int:
        """Stage index of an epoch (or, by iteration, a global iteration)."""
        for i in range(len(self.curriculum) - 1, -1, -1):
            if self.edges[i] <= tick:
                return i
        return 0

    def extend_from(self, tick: int, index: int,
                    past: Optional[List[int]] = None) -> None:
        """Re-plan from ``tick`` on without going back before stage
        ``index``.

        From ``tick`` on, each epoch (or iteration) trains the later of its
        own stage and stage ``index``, so B and m never fall below stage
        ``index``'s. Before ``tick``, the stages up to ``index`` keep their
        edges in ``past`` (the plan trained so far; defaults to this one).
        :meth:`index_at`, :meth:`states` and the spans of :meth:`state`
        follow the new edges.
        """
        past = self.edges if past is None else past
        self.edges = [min(p, tick) if i <= index else max(e, tick)
                      for i, (p, e) in enumerate(zip(past, self.edges))]

    def stage_ticks(self) -> List[int]:
        """Epochs (or iterations) of each stage."""
        return [b - a for a, b in zip(self.edges, self.edges[1:])]

    def state(self, index: int) -> StageState:
        stage = self.curriculum.stages[index]
        a, b = self.edges[index:index + 2] if self.edges else (0, 0)
        if self.by_iter:
            length = self.epoch_length
            first, last = a // length + 1, -(-b // length)
        else:
            first, last = a + 1, b
        size = None if self.full_size is None else \
            bandwidth_pixels(stage.bandwidth, self.full_size)
        return StageState(
            index=index, num_stages=len(self.curriculum), size=size,
            bandwidth=stage.bandwidth, magnitude=stage.magnitude,
            first_epoch=first, last_epoch=last, max_epochs=self.max_epochs)

    def states(self) -> List[StageState]:
        """The states of the stages that train (have an epoch/iteration)."""
        return [self.state(i) for i, n in enumerate(self.stage_ticks())
                if n > 0]


# the staged things ----------------------------------------------------------
class StagedTransform:
    """One transform (or batch transform) the curriculum drives.

    A bandwidth transform's configured size is its full size; the stage sets
    ``bandwidth * full`` in pixels. A magnitude transform gets each stage's
    m as it is (the curriculum's m are on mmpretrain's 0-10 scale); its
    configured level is what tools read as the final m (see
    :func:`~mmet.checks.check_drivable`). The configured value is kept
    on the transform itself, so binding again (a second ``runner.train()``,
    a tool) after a stage was applied still finds the full size.

    Args:
        target: A FourierCrop, StagedRandomResizedCrop, BatchFourierCrop,
            StagedRandAug or BatchRandAugment.
        in_pipeline (bool): Whether it runs in the data workers.
    """

    def __init__(self, target: Any, in_pipeline: bool):
        self.target, self.in_pipeline = target, in_pipeline
        kind = type(target)
        self.attr = next((a for t, a in BANDWIDTH_ATTRS.items()
                          if issubclass(kind, t)), 'magnitude_level')
        self.is_bandwidth = self.attr != 'magnitude_level'
        if not hasattr(target, '_mmet_full'):
            target._mmet_full = getattr(target, self.attr)

    @property
    def full(self) -> Union[Size, float]:
        """The full size (bandwidth transforms) or final magnitude."""
        full = self.target._mmet_full
        return _square(full) if self.is_bandwidth else full

    def set_stage(self, stage: Stage) -> None:
        if not self.is_bandwidth:
            self.target.magnitude_level = stage.magnitude
            return
        size = bandwidth_pixels(stage.bandwidth, self.full)
        # RandomResizedCrop keeps its scale as (h, w)
        setattr(self.target, self.attr, _hw(size) if self.attr == 'scale'
                else size)

    def __repr__(self) -> str:
        return f'StagedTransform({self.target!r})'


# walking datasets, pipelines and models --------------------------------------
def leaf_datasets(dataset) -> Iterator:
    """Every dataset with a pipeline, through dataset wrappers.

    Walks ``dataset`` / ``datasets`` of ``ConcatDataset``, ``RepeatDataset``,
    ``ClassBalancedDataset`` and mmdet's ``MultiImageMixDataset`` (whose own
    ``pipeline`` is a list of transforms).
    """
    seen = set()

    def walk(ds):
        if ds is None or id(ds) in seen:
            return
        seen.add(id(ds))
        if getattr(ds, 'pipeline', None) is not None:
            yield ds
        yield from walk(getattr(ds, 'dataset', None))
        for sub in getattr(ds, 'datasets', None) or ():
            yield from walk(sub)

    yield from walk(dataset)


def pipeline_transforms(pipeline) -> Iterator:
    """Every transform of a pipeline (a Compose or a list), with the ones
    nested in ``RandomChoice``, ``RandomApply`` and the like."""
    seen = set()

    def walk(transforms):
        for t in transforms or ():
            if id(t) in seen:
                continue
            seen.add(id(t))
            yield t
            # StagedRandAug's own sub-policies are not pipeline steps
            if not isinstance(t, StagedRandAug):
                yield from walk(getattr(t, 'transforms', None))

    yield from walk(pipeline if isinstance(pipeline, (list, tuple)) else
                    getattr(pipeline, 'transforms', None))


def unwrap_model(model):
    """The model inside DDP and other wrappers."""
    return model.module if is_model_wrapper(model) else model


def data_preprocessor(model):
    """A model's data preprocessor, through DDP and other wrappers."""
    return getattr(unwrap_model(model), 'data_preprocessor', None) \
        if model is not None else None


def _is_staged(t) -> bool:
    return isinstance(t, tuple(BANDWIDTH_ATTRS)) or \
        isinstance(t, MAGNITUDE_TYPES)


# the pipeline wrapper that names the stage on failure ------------------------
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
    """A dataset's pipeline that names the sample and the stage on failure.

    A transform that fails in a data worker (a corrupt JPEG, an image
    smaller than B) reaches the trainer as a worker traceback that may name
    neither the file nor the curriculum stage. This wrapper re-raises any
    exception as :class:`PipelineStageError` naming both, chained to the
    original. It never swallows an error: the run stops as it would have.

    :class:`StageDriver` installs it when it binds the train dataset (before
    workers fork) and updates ``stage`` with every stage it applies; the
    hook restarts persistent workers then, so they see the new text.

    Args:
        pipeline (Callable): The dataset's pipeline, usually a ``Compose``.
            Other attributes (``transforms``) are read through.
    """

    def __init__(self, pipeline: Callable):
        self.pipeline = pipeline
        self.stage = 'before the first stage'
        self.adapted: List[str] = []  # what adapt_pipeline changed in it

    def __call__(self, results: Any) -> Any:
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
    """Find every staged transform of a train set and model; set a stage.

    Args:
        curriculum (Curriculum): The stages to drive.
        low_pass (str): How :meth:`bind` adapts a stock pipeline:
            ``'fourier'`` (a ``FourierCrop`` before the packing) or
            ``'resize'`` (``RandomResizedCrop`` becomes the cheap path,
            ``StagedRandomResizedCrop``). See :mod:`mmet.adapt`.
        adapt (bool): Adapt stock pipelines at all. Defaults to True.
    """

    LOW_PASS = ('fourier', 'resize')

    def __init__(self, curriculum: Curriculum, low_pass: str = 'fourier',
                 adapt: bool = True):
        if low_pass not in self.LOW_PASS:
            raise ValueError(f'low_pass must be one of {self.LOW_PASS}, got '
                             f'{low_pass!r}.')
        self.curriculum, self.low_pass, self.adapt = \
            curriculum, low_pass, adapt
        self.transforms: List[StagedTransform] = []
        self.pipelines: List[StagedPipeline] = []
        self.preprocessor = None
        self.found: List[str] = []
        # what adapt_pipeline changed; non-empty: a stock pipeline
        self.changes: List[str] = []

    @property
    def lowers_bandwidth(self) -> bool:
        return any(s.bandwidth != 1 for s in self.curriculum.stages)

    @property
    def changes_magnitude(self) -> bool:
        return len({s.magnitude for s in self.curriculum.stages}) > 1

    # binding ----------------------------------------------------------------
    def bind(self, dataset, model=None, log: Optional[Callable] = None
             ) -> None:
        """Adapt, wrap and find the staged transforms; before workers fork.

        A pipeline without staged transforms is adapted in place by
        :func:`mmet.adapt.adapt_pipeline` (unless the data preprocessor is
        the staged part), and ``log`` gets the pipeline before and after.
        Each leaf pipeline is wrapped in a :class:`StagedPipeline`.

        Raises:
            mmet.adapt.AdaptationError: a stock pipeline it cannot adapt.
        """
        leaves = list(leaf_datasets(dataset))
        pre = data_preprocessor(model)
        pre_staged = [t for t in getattr(pre, 'staged_transforms',
                                         lambda: [])()]
        changes = self._adapt(leaves, log) if self.adapt and \
            not pre_staged else {}
        for ds in leaves:
            if callable(ds.pipeline) and not isinstance(
                    ds.pipeline, (list, tuple, StagedPipeline)):
                ds.pipeline = StagedPipeline(ds.pipeline)
            if isinstance(ds.pipeline, StagedPipeline):
                ds.pipeline.adapted += changes.get(id(ds), [])
        self.pipelines = [ds.pipeline for ds in leaves
                          if isinstance(ds.pipeline, StagedPipeline)]
        # adapted now or by an earlier bind (the loop binds before the hook)
        self.changes = [c for p in self.pipelines for c in p.adapted]
        in_pipeline = [t for ds in leaves
                       for t in pipeline_transforms(ds.pipeline)]
        self.found = [type(t).__name__ for t in in_pipeline + pre_staged]
        self.transforms = [StagedTransform(t, True) for t in in_pipeline
                           if _is_staged(t)]
        self.transforms += [StagedTransform(t, False) for t in pre_staged]
        self.preprocessor = pre if pre_staged else None

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
                    'EfficientTrainHook found no FourierCrop, '
                    'StagedRandomResizedCrop or StagedRandAug in the train '
                    f'pipeline (found: {found}) and no '
                    'DeviceAugmentPreprocessor, and cannot adapt it: '
                    f'{e}') from e
            if changes and log is not None:
                log(f'EfficientTrain adapted the train pipeline of '
                    f'{type(ds).__name__} ({"; ".join(changes)}).\nBefore:\n'
                    f'{before}\nAfter:\n{describe_pipeline(transforms)}')
            out[id(ds)] = changes
        return out

    @classmethod
    def from_config(cls, cfg, curriculum: Optional[Curriculum] = None
                    ) -> 'StageDriver':
        """A driver bound to the pipelines and preprocessor of a config.

        Builds the train datasets' pipelines (not the datasets) and the data
        preprocessor if it is a ``DeviceAugmentPreprocessor``, adapts them
        as a Runner would (with the hook's or loop's ``low_pass``), and binds
        to them: the tools' way to the one definition of full size.
        """
        from mmengine.dataset import Compose
        from mmengine.registry import MODELS, init_default_scope
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        settings = dict(cfg.get('train_cfg') or {})
        for hook in cfg.get('custom_hooks') or []:
            if str(hook.get('type', '')).split('.')[-1] == \
                    'EfficientTrainHook':
                settings = dict(hook)
        if curriculum is None:
            loop = str(settings.get('type', '')).split('.')[-1] == \
                'EfficientTrainLoop'
            family = settings.get('family')
            if loop and family is None:
                backbone = (cfg.get('model') or {}).get('backbone') or {}
                family = infer_family(backbone.get('type', ''))
            curriculum = Curriculum.build(
                settings.get('curriculum', 'efficienttrain++' if loop else
                             'efficienttrain'), family=family)
        leaves = [SimpleNamespace(pipeline=Compose(p)) for p in
                  _config_pipelines(cfg.train_dataloader.get('dataset'))]
        model = SimpleNamespace(data_preprocessor=None)
        pre_cfg = (cfg.get('model') or {}).get('data_preprocessor') or \
            cfg.get('data_preprocessor')
        if pre_cfg and str(pre_cfg.get('type', '')).split('.')[-1] == \
                'DeviceAugmentPreprocessor':
            model.data_preprocessor = MODELS.build(dict(pre_cfg))
        driver = cls(curriculum, low_pass=settings.get('low_pass',
                                                       'fourier'))
        driver.bind(SimpleNamespace(datasets=leaves), model)
        return driver

    # what it found -----------------------------------------------------------
    @property
    def bandwidth_transforms(self) -> List[StagedTransform]:
        return [t for t in self.transforms if t.is_bandwidth]

    @property
    def magnitude_transforms(self) -> List[StagedTransform]:
        return [t for t in self.transforms if not t.is_bandwidth]

    @property
    def full_size(self) -> Optional[Size]:
        """The full input size: the configured size of the first Fourier
        crop (in the pipeline, else the batched one), else of the first
        ``StagedRandomResizedCrop``; None without bandwidth transforms."""
        crops = self.bandwidth_transforms
        first = [t for t in crops if t.attr == 'size'] + crops
        return first[0].full if first else None

    @property
    def final_magnitude(self) -> Optional[float]:
        """The configured m of the first magnitude transform, or None."""
        mags = self.magnitude_transforms
        return float(mags[0].full) if mags else None

    @property
    def in_pipeline(self) -> bool:
        """Whether any staged transform runs in the data workers (so a stage
        switch needs fresh workers, i.e. whole epochs)."""
        return any(t.in_pipeline for t in self.transforms)

    @property
    def sized_in_pipeline(self) -> bool:
        """Whether the workers deliver samples at B."""
        return any(t.in_pipeline and t.is_bandwidth for t in self.transforms)

    # driving ----------------------------------------------------------------
    def apply(self, state: StageState) -> None:
        """Set every staged transform to ``state``'s stage."""
        stage = self.curriculum.stages[state.index]
        for t in self.transforms:
            t.set_stage(stage)
        text = state.describe()
        for p in self.pipelines:
            p.stage = text


def _config_pipelines(node) -> List[list]:
    """The pipeline lists of a dataset config, through wrappers."""
    if not isinstance(node, dict):
        return []
    found = []
    if isinstance(node.get('pipeline'), (list, tuple)):
        found.append(list(node['pipeline']))
    found += _config_pipelines(node.get('dataset'))
    for sub in node.get('datasets') or ():
        found += _config_pipelines(sub)
    return found


def config_full_size(cfg) -> Optional[Size]:
    """The full input size of a config's training (None if it has none):
    :attr:`StageDriver.full_size` of :meth:`StageDriver.from_config`."""
    return StageDriver.from_config(cfg).full_size


__all__ = ['StageState', 'StageSchedule', 'StagedTransform', 'StageDriver',
           'StagedPipeline', 'PipelineStageError', 'leaf_datasets',
           'pipeline_transforms', 'data_preprocessor', 'unwrap_model',
           'config_full_size']
