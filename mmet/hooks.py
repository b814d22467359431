"""The hook that applies a :class:`~mmet.curriculum.Curriculum` to a Runner.

It only connects the schedule to the runner: once per epoch it asks the
curriculum for (B, m) and writes them into the train pipeline's
:class:`~mmet.transforms.FourierCrop` and :class:`~mmet.transforms.StagedRandAug`.
"""
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple, Union)

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS

from .curriculum import Curriculum, bandwidth_pixels
from .batch_randaug import BatchRandAugment
from .device_pipeline import BatchFourierCrop, DeviceAugmentPreprocessor
from .mae import check_mae_model
from .transforms import (FourierCrop, StagedRandAug,
                         StagedRandomResizedCrop)

# what the hook sets B on, and m on
BANDWIDTH_TRANSFORMS = (FourierCrop, BatchFourierCrop)
MAGNITUDE_TRANSFORMS = (StagedRandAug, BatchRandAugment)

DATA_BATCH = Optional[Union[dict, tuple, list]]


def iter_pipeline_transforms(dataset) -> Iterator:
    """Yield every transform of a dataset's pipelines, through wrappers.

    Walks ``pipeline`` (and nested ``transforms`` such as ``RandomChoice`` or
    ``RandomApply``) and the wrapped ``dataset`` / ``datasets`` of
    ``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset`` and mmdet's
    ``MultiImageMixDataset``.
    """
    seen = set()

    def walk_transforms(transforms):
        for t in transforms or ():
            if id(t) in seen:
                continue
            seen.add(id(t))
            yield t
            # StagedRandAug's own sub-policies are not pipeline steps
            if not isinstance(t, StagedRandAug):
                yield from walk_transforms(getattr(t, 'transforms', None))

    def walk_dataset(ds):
        if ds is None or id(ds) in seen:
            return
        seen.add(id(ds))
        pipeline = getattr(ds, 'pipeline', None)
        if pipeline is not None:
            yield from walk_transforms(
                getattr(pipeline, 'transforms', None) or
                (pipeline if isinstance(pipeline, (list, tuple)) else ()))
        yield from walk_dataset(getattr(ds, 'dataset', None))
        for sub in getattr(ds, 'datasets', None) or ():
            yield from walk_dataset(sub)

    yield from walk_dataset(dataset)


class PipelineStageError(RuntimeError):
    """A train sample failed; the message names the sample and the stage.

    Attributes:
        where (str): The sample's ``img_path``, or ``sample <index>``.
        stage (str): The curriculum stage the pipeline was set to.
    """

    # one-argument construction lets a DataLoader worker's re-raise in the
    # trainer keep the type
    def __init__(self, message: str, where: str = '', stage: str = ''):
        super().__init__(message)
        self.where, self.stage = where, stage


class StagedPipeline:
    """A dataset's pipeline that names the sample and the stage on failure.

    A transform that fails in a data worker (a corrupt JPEG, an image
    smaller than B) reaches the trainer as a worker traceback that may name
    neither the file nor the curriculum stage. This wrapper re-raises any
    exception as :class:`PipelineStageError` naming both, chained to the
    original. It never swallows an error: the run stops as it would have.

    :class:`EfficientTrainHook` installs it when it binds the train dataset
    (before workers fork) and updates ``stage`` with every stage switch; the
    hook restarts persistent workers then, so they see the new text.

    Args:
        pipeline (Callable): The dataset's pipeline, usually a ``Compose``.
            Other attributes (``transforms``) are read through.
    """

    def __init__(self, pipeline: Callable):
        self.pipeline = pipeline
        self.stage = 'before the first stage'

    def __call__(self, results: Any) -> Any:
        # read before the transforms run: they may rebuild the dict
        path = idx = None
        if isinstance(results, dict):
            path, idx = results.get('img_path'), results.get('sample_idx')
        try:
            return self.pipeline(results)
        except Exception as e:
            where = path if path is not None else f'sample {idx}'
            raise PipelineStageError(
                f'The train pipeline failed on {where} in EfficientTrain '
                f'{self.stage}: {type(e).__name__}: {e}', where,
                self.stage) from e

    def __getattr__(self, name: str) -> Any:
        # guard: unpickling probes attributes before __dict__ is filled
        if name.startswith('__') or 'pipeline' not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__['pipeline'], name)

    def __repr__(self) -> str:
        return repr(self.pipeline)


def iter_preprocessor_transforms(model) -> Iterator:
    """Yield the staged parts of a model's data preprocessor, if any.

    :class:`~mmet.device_pipeline.DeviceAugmentPreprocessor` augments on the
    model's device; its Fourier crop and RandAugment are driven like the
    pipeline's. DDP and other model wrappers are looked through.
    """
    preprocessor = _data_preprocessor(model)
    yield from getattr(preprocessor, 'staged_transforms', lambda: [])()


def _data_preprocessor(model):
    """A model's data preprocessor, through DDP and other wrappers."""
    if is_model_wrapper(model):
        model = model.module
    return getattr(model, 'data_preprocessor', None)


def iter_staged_transforms(dataset, model=None) -> Iterator:
    """Every transform of ``dataset``'s pipelines, then the staged parts of
    ``model``'s data preprocessor: all the hook may drive."""
    yield from iter_pipeline_transforms(dataset)
    yield from iter_preprocessor_transforms(model)


def iter_leaf_datasets(dataset) -> Iterator:
    """Yield every dataset that has its own callable ``pipeline``.

    Goes through the same wrappers as :func:`iter_pipeline_transforms`.
    mmdet's ``MultiImageMixDataset`` keeps a list of transforms, not a
    callable; only its wrapped dataset's pipeline is yielded.
    """
    seen = set()

    def walk(ds):
        if ds is None or id(ds) in seen:
            return
        seen.add(id(ds))
        pipeline = getattr(ds, 'pipeline', None)
        if callable(pipeline) and not isinstance(pipeline, (list, tuple)):
            yield ds
        yield from walk(getattr(ds, 'dataset', None))
        for sub in getattr(ds, 'datasets', None) or ():
            yield from walk(sub)

    yield from walk(dataset)


def _spatial_shapes(inputs) -> List[Tuple[int, int]]:
    if isinstance(inputs, (list, tuple)):
        return [tuple(x.shape[-2:]) for x in inputs]
    return [tuple(inputs.shape[-2:])] * inputs.shape[0]


def _hw(size) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


@HOOKS.register_module()
class EfficientTrainHook(Hook):
    """Drive the EfficientTrain curriculum: bandwidth B and RandAugment m.

    Before each train epoch it sets ``size`` on every :class:`FourierCrop`
    and ``magnitude_level`` on every :class:`StagedRandAug` of the train
    dataloader's pipeline, from the curriculum stage of that epoch. The stage
    is a pure function of the epoch, so every DDP rank agrees without
    communication and a resumed run lands in the right stage.

    Persistent data workers hold a copy of the pipeline made when they
    started, so at each change of (B, m) the hook restarts them by dropping
    the loader's iterator (as mmpretrain's ``SwitchRecipeHook`` does).
    The first batch of every epoch is then checked against the stage's size:
    a curriculum that does not reach the workers fails loudly.

    Args:
        curriculum (str | list[dict]): A preset name (``'efficienttrain'``)
            or a list of ``dict(share=, bandwidth=, magnitude=)``; see
            :mod:`mmet.curriculum`. Bandwidths are relative to each
            ``FourierCrop``'s configured (full) size.
        check_batches (bool): Verify the spatial size of the first batch of
            each epoch. Defaults to True.
        allow_curriculum_change (bool): Resume from a checkpoint that was
            trained with another curriculum (with a warning) instead of
            refusing. Defaults to False.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 curriculum: Union[str, Sequence[dict]] = 'efficienttrain',
                 check_batches: bool = True,
                 allow_curriculum_change: bool = False):
        self.curriculum = Curriculum.build(curriculum)
        self.check_batches = check_batches
        self.allow_curriculum_change = allow_curriculum_change
        self._crops: List[FourierCrop] = []
        self._resizers: List[StagedRandomResizedCrop] = []
        self._full_sizes: Dict[int, Union[int, Tuple[int, int]]] = {}
        self._randaugs: List[StagedRandAug] = []
        self._applied: Optional[tuple] = None
        self._expected_hw: Dict[tuple, Optional[Tuple[int, int]]] = {}
        self._pending_check: Optional[tuple] = None
        self._device_preprocessor: Optional[DeviceAugmentPreprocessor] = None
        self._pipelines: List[StagedPipeline] = []
        self._max_epochs: Optional[int] = None
        self._epoch: Optional[int] = None
        self._warned_eval: set = set()

    # set-up -----------------------------------------------------------------
    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if not isinstance(loop, EpochBasedTrainLoop):
            raise TypeError(
                f'EfficientTrainHook needs an EpochBasedTrainLoop, got '
                f'{type(loop).__name__}. The curriculum switches stages between '
                'epochs; an iteration-based loop caches one data iterator and '
                'runs before_train_epoch once, so stages would never switch. '
                'Use train_cfg=dict(by_epoch=True, max_epochs=...).')
        drivers = [h for h in runner.hooks if isinstance(h, EfficientTrainHook)]
        if len(drivers) > 1:
            raise RuntimeError(
                f'{len(drivers)} EfficientTrainHooks are registered; they '
                'would fight over the same transforms. Keep one in '
                'custom_hooks (check the _base_ configs you inherit).')

        dataset = runner.train_dataloader.dataset
        self._max_epochs = runner.max_epochs
        self.bind(dataset, runner.model)
        if any(s.bandwidth != 1 for s in self.curriculum.stages):
            check_mae_model(runner.model)
        self._warn_eval_pipelines(runner, ('_val_loop', ))
        self._preflight(runner, dataset)

    def bind(self, dataset, model=None) -> None:
        """Find the transforms to drive in ``dataset``'s pipelines.

        And in ``model``'s data preprocessor, for the device pipeline.

        Also wraps each pipeline in a :class:`StagedPipeline`, so that a
        sample that fails names its file and the stage. This must happen
        before the data workers fork, i.e. in ``before_train``.

        Raises:
            RuntimeError: if the pipeline cannot express the curriculum.
        """
        in_pipeline = list(iter_pipeline_transforms(dataset))
        transforms = in_pipeline + list(iter_preprocessor_transforms(model))
        # the device pipeline, whose input batches before_train_iter checks
        pre = _data_preprocessor(model)
        self._device_preprocessor = pre if isinstance(
            pre, DeviceAugmentPreprocessor) else None
        # samples leave the workers at B only if the pipeline sizes them
        self._sized_in_pipeline = any(
            isinstance(t, (FourierCrop, StagedRandomResizedCrop))
            for t in in_pipeline)
        self._crops = [
            t for t in transforms if isinstance(t, BANDWIDTH_TRANSFORMS)
        ]
        self._resizers = [
            t for t in transforms if isinstance(t, StagedRandomResizedCrop)
        ]
        self._randaugs = [
            t for t in transforms if isinstance(t, MAGNITUDE_TRANSFORMS)
        ]
        # configured sizes are the full sizes (kept across repeated runs)
        for c in self._crops:
            self._full_sizes.setdefault(id(c), c.size)
        for r in self._resizers:
            self._full_sizes.setdefault(id(r), tuple(r.scale))
        self._check_drivable(transforms)
        self._pipelines = []
        for ds in iter_leaf_datasets(dataset):
            if not isinstance(ds.pipeline, StagedPipeline):
                ds.pipeline = StagedPipeline(ds.pipeline)
            self._pipelines.append(ds.pipeline)

    def _check_drivable(self, transforms) -> None:
        stages = self.curriculum.stages
        needs_b = any(s.bandwidth != 1 for s in stages)
        needs_m = len({s.magnitude for s in stages}) > 1
        found = ', '.join(type(t).__name__ for t in transforms) or 'nothing'
        if not self._crops and not self._resizers and not self._randaugs:
            raise RuntimeError(
                'EfficientTrainHook found no FourierCrop, '
                'StagedRandomResizedCrop or StagedRandAug in '
                f'the train pipeline (found: {found}) and no '
                'DeviceAugmentPreprocessor, so the curriculum '
                'would do nothing. Add dict(type=\'StagedRandAug\') after the '
                'flip and dict(type=\'FourierCrop\', size=<final size>) '
                'before PackInputs to train_dataloader.dataset.pipeline '
                '(see configs/_base_/efficienttrain.py).')
        if needs_b and not self._crops and not self._resizers:
            raise RuntimeError(
                'The curriculum lowers the bandwidth B, but the train pipeline '
                f'has no FourierCrop or StagedRandomResizedCrop (found: '
                f"{found}). Add dict(type='FourierCrop', size=<final size>) "
                'before PackInputs, or give every stage bandwidth=1.0.')
        if needs_m and not self._randaugs:
            raise RuntimeError(
                'The curriculum changes the RandAugment magnitude m, but the '
                f'train pipeline has no StagedRandAug (found: {found}). '
                "Replace RandAugment with dict(type='StagedRandAug'), or give "
                'every stage the same magnitude.')

    def _warn_eval_pipelines(self, runner, names: Sequence[str]) -> None:
        """Warn (once per loop) about a FourierCrop in an eval pipeline."""
        for name in names:
            loop = getattr(runner, name, None)
            loader = getattr(loop, 'dataloader', None)
            if loader is None or name in self._warned_eval:
                continue
            crops = [t for t in iter_pipeline_transforms(loader.dataset)
                     if isinstance(t, FourierCrop)]
            if crops:
                self._warned_eval.add(name)
                runner.logger.warning(
                    f'The {name[1:-5]} pipeline contains {crops[0]!r}. '
                    'Evaluation normally runs at full size; EfficientTrainHook '
                    'only drives the train pipeline, so this crop stays at '
                    'its configured size. Remove it from the '
                    f'{name[1:-5]}_dataloader pipeline unless you mean it.')

    def before_val(self, runner) -> None:
        self._warn_eval_pipelines(runner, ('_val_loop', ))

    def before_test(self, runner) -> None:
        self._warn_eval_pipelines(runner, ('_test_loop', ))

    def _states(self, max_epochs: int) -> Dict[tuple, int]:
        """Distinct (stage, B, m) settings and the first epoch of each."""
        states = {}
        for epoch in range(max_epochs):
            states.setdefault(self._key(epoch, max_epochs), epoch)
        return states

    def _preflight(self, runner, dataset) -> None:
        """Run one sample through each stage's pipeline in this process.

        Errors such as an image smaller than B surface now, with the stage
        named, instead of inside a worker hours later. The sizes seen here
        are what :meth:`before_train_iter` expects from the workers.
        """
        self._expected_hw = {}
        seen = {}  # B -> sample size
        if len(dataset) == 0:
            raise RuntimeError('The train dataset is empty.')
        for key, epoch in self._states(runner.max_epochs).items():
            self._apply(key)
            try:
                sample = dataset[0]
            except Exception as e:
                # name the stage once, with the cause the wrapper recorded
                where, cause = '', e
                if isinstance(e, PipelineStageError) and e.__cause__:
                    where, cause = f' on {e.where}', e.__cause__
                raise RuntimeError(
                    f'EfficientTrainHook: the train pipeline fails in stage '
                    f'{key[0] + 1} (first epoch {epoch}, B={key[1]}, '
                    f'm={key[2]:g}){where}: {type(cause).__name__}: '
                    f'{cause}') from e
            inputs = sample.get('inputs') if isinstance(sample, dict) else None
            # encoded bytes (the device pipeline) have no size yet
            hw = _spatial_shapes(inputs)[0] \
                if getattr(inputs, 'ndim', 0) >= 2 else None
            # only check batches whose size the FourierCrop decides
            self._expected_hw[key] = hw if hw == _hw(key[1]) and \
                self._sized_in_pipeline else None
            seen[key[1]] = hw
        self._applied = None
        sizes = set(seen.values())
        if self._sized_in_pipeline and len(seen) > 1 and len(sizes) == 1 and \
                None not in sizes:
            raise RuntimeError(
                f'The curriculum sets FourierCrop to B={list(seen)}, but the '
                f'train pipeline delivers {sizes.pop()} images in every '
                'stage: a transform after FourierCrop resizes or crops its '
                'output, so early stages would cost as much as the last. '
                'Put FourierCrop after the last resize/crop, just before '
                'PackInputs.')

    @property
    def current_size(self) -> Optional[Union[int, Tuple[int, int]]]:
        """B in pixels of the stage applied last (None before the first)."""
        return self._applied[1] if self._applied else None

    @property
    def full_size(self) -> Optional[Union[int, Tuple[int, int]]]:
        """The final input size of the first bound transform (after bind)."""
        return next(iter(self._full_sizes.values()), None)

    # per epoch --------------------------------------------------------------
    def _key(self, epoch: int, max_epochs: int) -> tuple:
        """(stage index, size for the first crop, magnitude) of an epoch."""
        state = self.curriculum.at(epoch, max_epochs, self.full_size or 1)
        return (state.index, state.size, state.magnitude)

    def _apply(self, key: tuple) -> None:
        self.apply_stage(key[0])
        self._applied = key

    def apply_stage(self, index: int) -> None:
        """Set stage ``index``'s B and m on the bound transforms."""
        stage = self.curriculum.stages[index]
        for c in self._crops:
            c.size = bandwidth_pixels(stage.bandwidth, self._full_sizes[id(c)])
        for r in self._resizers:
            r.scale = _hw(
                bandwidth_pixels(stage.bandwidth, self._full_sizes[id(r)]))
        for r in self._randaugs:
            r.magnitude_level = stage.magnitude
        text = self._stage_text(index)
        for p in self._pipelines:
            p.stage = text

    def _stage_text(self, index: int) -> str:
        """``stage i/n (B=, m=, epochs a-b of E)`` for error messages.

        Persistent workers keep the text from their fork until the next
        stage switch, so it names the stage's epochs, not the current one.
        """
        stage = self.curriculum.stages[index]
        full = self.full_size
        size = (bandwidth_pixels(stage.bandwidth, full) if full is not None
                else f'{stage.bandwidth:.3g}')
        text = (f'stage {index + 1}/{len(self.curriculum)} (B={size}, '
                f'm={stage.magnitude:g}')
        if self._max_epochs:
            edges = self.curriculum.boundaries(self._max_epochs)
            first, last = edges[index] + 1, edges[index + 1]
            span = f'epoch {last}' if first == last else \
                f'epochs {first}-{last}'
            text += f', {span} of {self._max_epochs}'
        return text + ')'

    @property
    def current_stage(self) -> Optional[str]:
        """Where training is: ``'stage 4/5 (B=24, m=7), epoch 7/10'``.

        ``None`` before the first train epoch. ``tools/train.py`` logs it
        when training fails, e.g. after a data worker was killed.
        """
        if self._applied is None or self._epoch is None:
            return None
        index, size, magnitude = self._applied
        epoch = f'epoch {self._epoch + 1}'
        if self._max_epochs:
            epoch += f'/{self._max_epochs}'
        return (f'stage {index + 1}/{len(self.curriculum)} (B={size}, '
                f'm={magnitude:g}), {epoch}')

    def before_train_epoch(self, runner) -> None:
        epoch, max_epochs = runner.epoch, runner.max_epochs
        self._epoch, self._max_epochs = epoch, max_epochs
        key = self._key(epoch, max_epochs)
        if key != self._applied:
            self._apply(key)
            self._restart_workers(runner.train_dataloader)
        index, size, magnitude = key
        n = len(self.curriculum)
        runner.logger.info(
            f'EfficientTrain epoch {epoch + 1}/{max_epochs}: stage '
            f'{index + 1}/{n}, B={size}, m={magnitude:g}')
        hub = runner.message_hub
        hub.update_scalar('train/et_stage', index + 1)
        hub.update_scalar('train/et_B', _hw(size)[0])
        hub.update_scalar('train/et_m', magnitude)
        self._pending_check = key if self.check_batches else None

    @staticmethod
    def _restart_workers(loader) -> None:
        """Make persistent workers re-fork with the updated pipeline."""
        if getattr(loader, 'persistent_workers', False):
            loader._iterator = None

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        key, self._pending_check = self._pending_check, None
        pre = self._device_preprocessor
        if key and pre is not None and isinstance(data_batch, dict) and \
                not pre.augments(data_batch['inputs']):
            raise RuntimeError(
                f'EfficientTrainHook set stage {key[0] + 1} (B={key[1]}, '
                f'm={key[2]:g}) in DeviceAugmentPreprocessor, but the train '
                'loader delivered images that are neither encoded nor uint8, '
                'which it takes as augmented already and leaves alone: the '
                'curriculum would not reach them. Deliver uint8 images (no '
                'Normalize or float conversion in the train pipeline) or '
                "encoded ones (LoadImageBytes + PackInputs(input_key="
                "'img_bytes')).")
        expected = self._expected_hw.get(key) if key else None
        if expected is None or not isinstance(data_batch, dict):
            return
        shapes = set(_spatial_shapes(data_batch['inputs']))
        if shapes != {expected}:
            raise RuntimeError(
                f'EfficientTrainHook set stage {key[0] + 1} (B={key[1]}, '
                f'm={key[2]:g}), but the train loader delivered inputs of '
                f'{sorted(shapes)} instead of {expected}: the curriculum did '
                'not reach the data workers. Something restarted or replaced '
                'the dataloader behind the hook; report this with your '
                'config.')

    # checkpoints ------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})['efficienttrain'] = dict(
            curriculum=self.curriculum.to_list())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('meta', {}).get('efficienttrain')
        if saved is None:
            return
        before = Curriculum(saved['curriculum'])
        if before == self.curriculum:
            return
        changes = _describe_change(before, self.curriculum)
        message = (
            'The checkpoint was trained with a different curriculum: '
            f'{changes}. Resuming would continue with the new one from the '
            'resumed epoch')
        if not self.allow_curriculum_change:
            raise RuntimeError(
                f'{message}. Resume with the curriculum you started with, or '
                'set allow_curriculum_change=True on EfficientTrainHook to '
                'continue with the new one.')
        runner.logger.warning(f'{message}; allowed by '
                              'allow_curriculum_change=True.')


def _describe_change(old: Curriculum, new: Curriculum) -> str:
    """A short, human-readable difference between two curricula."""
    if len(old) != len(new):
        return f'{len(old)} stages before, {len(new)} now ({new!r})'
    diffs = []
    for i, (a, b) in enumerate(zip(old.stages, new.stages)):
        for field in ('share', 'bandwidth', 'magnitude'):
            x, y = getattr(a, field), getattr(b, field)
            if x != y:
                diffs.append(f'stage {i + 1} {field} {x:.4g} -> {y:.4g}')
    return ', '.join(diffs)
