"""The checks that make a curriculum that does not take effect fail loudly.

- :func:`check_drivable`: the train pipeline can express the curriculum;
- :func:`preflight_pipeline`: one sample per stage through the pipeline, in
  the trainer, so that an image smaller than B fails at start;
- :func:`check_first_batch`: the first batch of a stage has the stage's B;
- the model side: :func:`check_patch_multiples` (ViT, DeiT, Swin: B a
  multiple of the patch), :func:`~mmet.mae.check_mae_model`, and
  :func:`preflight_model`, one forward and backward per B, so that a model
  that does not accept a B fails at start with the model and B named.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.runner import EpochBasedTrainLoop

from . import compat
from .driver import PipelineStageError, StageDriver
from .mae import check_mae_model
from .pipelines import (leaf_datasets, transform_name, unwrap_model,
                        walk_transforms)
from .curriculum import StageState
from .plan import TrainPlan, resolve_curriculum
from .sizes import Size, hw
from .staged import StagedTransform, follows_bandwidth
from .transforms import FourierCrop


def _spatial_shapes(inputs) -> List[Tuple[int, int]]:
    if isinstance(inputs, (list, tuple)):
        return [tuple(x.shape[-2:]) for x in inputs]
    return [tuple(inputs.shape[-2:])] * inputs.shape[0]


# the run -----------------------------------------------------------------------
def check_train_loop(runner, hook_type: type) -> None:
    """An epoch-based loop and one curriculum hook.

    Raises:
        TypeError: an iteration-based loop, which runs ``before_train_epoch``
            once, so stages would never switch.
        RuntimeError: several hooks, which would fight over the transforms.
    """
    loop = runner.train_loop
    if not isinstance(loop, EpochBasedTrainLoop):
        raise TypeError(
            f'EfficientTrainHook needs an EpochBasedTrainLoop, got '
            f'{type(loop).__name__}: an iteration-based loop runs '
            'before_train_epoch once, so stages would never switch. Use '
            'train_cfg=dict(by_epoch=True, max_epochs=...).')
    count = sum(isinstance(h, hook_type) for h in runner.hooks)
    if count > 1:
        raise RuntimeError(
            f'{count} EfficientTrainHooks are registered; they would fight '
            'over the same transforms. Keep one in custom_hooks (check the '
            '_base_ configs you inherit).')


def check_hook_follows(curriculum, low_pass: Optional[str], loop) -> None:
    """A hook under ``EfficientTrainLoop`` sets no other curriculum or
    ``low_pass`` than the loop, which plans the run.

    Raises:
        ValueError: naming the fix.
    """
    mine = None if curriculum is None else [
        (s.bandwidth, s.magnitude)
        for s in resolve_curriculum(curriculum).stages]
    theirs = [(s.bandwidth, s.magnitude)
              for s in loop.plan.base_curriculum.stages]
    if mine not in (None, theirs) or low_pass not in (
            None, loop.driver.low_pass):
        raise ValueError(
            'EfficientTrainHook in custom_hooks has another curriculum or '
            'low_pass than EfficientTrainLoop, which plans the run: give '
            'them to train_cfg only and drop them (or the hook: the loop '
            'registers one) from custom_hooks.')


# the pipeline ----------------------------------------------------------------
def check_drivable(driver: StageDriver, warn=None) -> None:
    """Refuse a train pipeline that cannot express the curriculum.

    A stock pipeline that the driver adapted but that has no RandAugment
    (ResNet-50's) keeps its own augmentation: only B follows the curriculum,
    and ``warn`` says so. A pipeline written for the curriculum must
    express all of it.

    Raises:
        RuntimeError: naming what was found and what to add.
    """
    found = ', '.join(driver.found) or 'nothing'
    if not driver.staged:
        raise RuntimeError(
            'EfficientTrainHook found no FourierCrop, StagedRandomResizedCrop'
            ' or StagedRandAug (or other staged transform) in the train '
            f'pipeline (found: {found}) and no DeviceAugmentPreprocessor, '
            'so the curriculum would do nothing. Add '
            "dict(type='StagedRandAug') after the flip and "
            "dict(type='FourierCrop', size=<final size>) "
            'before PackInputs to train_dataloader.dataset.pipeline '
            '(see configs/_base_/efficienttrain.py).')
    if driver.lowers_bandwidth and not driver.bandwidth_transforms:
        raise RuntimeError(
            'The curriculum lowers the bandwidth B, but the train pipeline '
            f'has no FourierCrop or StagedRandomResizedCrop (found: '
            f"{found}). Add dict(type='FourierCrop', size=<final size>) "
            'before PackInputs, or give every stage bandwidth=1.0.')
    _check_magnitude_scale(driver)
    for stage in driver.curriculum.stages:  # each refuses what it cannot
        for t in driver.staged:
            try:
                t.target.set_stage(stage)
            except ValueError as e:
                raise RuntimeError(str(e)) from e
    final, configured = driver.curriculum.stages[-1].magnitude, \
        driver.final_magnitude
    if driver.changes_magnitude and configured is not None and \
            configured != final and warn is not None:
        warn(f'The train pipeline configures RandAugment at magnitude_level='
             f'{configured:g}, but the curriculum ends at m={final:g}, so its '
             'last stage trains another augmentation strength than the '
             'config. Give the hook a curriculum whose last stage has '
             f'magnitude={configured:g} to keep the recipe, or set '
             f'magnitude_level={final:g}.')
    if driver.changes_magnitude and not driver.magnitude_transforms and \
            driver.changes and warn is not None:
        warn('The curriculum changes the RandAugment magnitude m, but the '
             'adapted train pipeline has no RandAugment, so it keeps its own '
             'augmentation and only B follows the curriculum. Add '
             "dict(type='RandAugment', policies='timm_increasing', "
             'num_policies=2, magnitude_level=9, magnitude_std=0.5) after '
             'the flip to stage m too.')
    elif driver.changes_magnitude and not driver.magnitude_transforms:
        raise RuntimeError(
            'The curriculum changes the RandAugment magnitude m, but the '
            f'train pipeline has no StagedRandAug (found: {found}). '
            "Replace RandAugment with dict(type='StagedRandAug'), or give "
            'every stage the same magnitude.')
    if driver.changes_magnitude:
        _check_randaug_driven(driver)


def _check_magnitude_scale(driver: StageDriver) -> None:
    """Refuse, before anything trains, a curriculum whose largest m lies
    outside a staged RandAugment's ``total_level``."""
    top = max(s.magnitude for s in driver.curriculum.stages)
    for t in driver.magnitude_transforms:
        level = getattr(t, 'total_level', None)
        if level is not None and top > level:
            raise RuntimeError(
                f'The curriculum raises the RandAugment magnitude to '
                f'm={top:g}, but {type(t).__name__} has total_level='
                f'{level:g}, so that m lies outside its scale. Set '
                "total_level=10 (mmpretrain's scale, which the presets use) "
                f'or give stages magnitudes of at most {level:g}.')


def _check_randaug_driven(driver: StageDriver) -> None:
    """Refuse a RandAugment in a train pipeline that the curriculum does not
    drive (one its adaptation left, e.g. inside ``RandomChoice``)."""
    for p in driver.pipelines:
        for step in walk_transforms(p):
            t = step.transform
            if 'RandAugment' in [c.__name__ for c in type(t).__mro__] and \
                    not isinstance(t, StagedTransform):
                where = f' inside {step.parent}' if step.parent else ''
                raise RuntimeError(
                    f'The curriculum changes the RandAugment magnitude m, '
                    f'but the train pipeline has a {transform_name(t)}'
                    f'{where} that it does not drive: its samples would keep '
                    f'magnitude_level={getattr(t, "magnitude_level", "?")} '
                    'in every stage. Replace it by dict(type='
                    "'StagedRandAug', ...) with its arguments, or give every "
                    'stage the same magnitude.')


def preflight_pipeline(dataset, driver: StageDriver, plan: TrainPlan
                       ) -> Dict[int, Optional[Tuple[int, int]]]:
    """Run one sample through each stage's pipeline in this process.

    Errors such as an image smaller than B surface now, with the stage
    named, instead of inside a worker hours later. Leaves the transforms at
    the last stage tried.

    Returns:
        dict: Per stage index, the (h, w) the workers must deliver, or None
        where the pipeline does not decide it (the batched path).

    Raises:
        RuntimeError: the stage and the cause.
    """
    if len(dataset) == 0:
        raise RuntimeError('The train dataset is empty.')
    expected, seen = {}, {}  # stage -> (h, w); B -> sample size
    for state in plan.clock.states():
        driver.apply(state)
        try:
            sample = dataset[0]
        except Exception as e:
            # name the stage once, with the cause the wrapper recorded
            where, cause, problem = '', e, ''
            if isinstance(e, PipelineStageError) and e.__cause__:
                where, cause = f' on {e.where}', e.__cause__
                problem = e.problem
            raise RuntimeError(
                f'EfficientTrainHook: the train pipeline fails in {state}'
                f'{where}: {problem}{type(cause).__name__}: {cause}') from e
        inputs = sample.get('inputs') if isinstance(sample, dict) else None
        # encoded bytes (the device pipeline) have no size yet
        got = _spatial_shapes(inputs)[0] \
            if getattr(inputs, 'ndim', 0) >= 2 else None
        # only check batches whose size the pipeline decides
        expected[state.index] = got if driver.sized_in_pipeline else None
        seen[state] = got
    if driver.sized_in_pipeline:
        _check_delivered_sizes(dataset, driver, seen)
    driver.full_model()  # apply() fitted Swin windows
    return expected


def _check_delivered_sizes(dataset, driver: StageDriver,
                           seen: Dict[StageState, Optional[Tuple[int, int]]]
                           ) -> None:
    """Refuse a pipeline that does not deliver each stage's B.

    Raises:
        RuntimeError: naming the stage, the sizes and the transform after
            the low-pass that changes them.
    """
    wrong = [(s, got) for s, got in seen.items()
             if got is not None and got != hw(s.size)]
    if not wrong:
        return
    state, got = wrong[0]
    driver.apply(state)  # find what changes the size of this stage's output
    changers = ', '.join(_size_changers(dataset)) or \
        'a transform after FourierCrop'
    delivered = set(seen.values())
    sizes = list(dict.fromkeys(s.size for s in seen))
    if len(sizes) > 1 and len(delivered) == 1:
        raise RuntimeError(
            f'The curriculum sets FourierCrop to B={sizes}, but the train '
            f'pipeline delivers {delivered.pop()} images in every stage: '
            f'{changers} resizes or crops its output, so early stages would '
            'cost as much as the last. Put FourierCrop after the last '
            'resize/crop, just before PackInputs.')
    raise RuntimeError(
        f'EfficientTrainHook set {state.describe(span=False)}, but the train '
        f'pipeline delivers {got[0]}x{got[1]} images: {changers} after the '
        'low-pass changes their size, so the model would not train at the '
        "stage's B. Move it before FourierCrop (or the "
        'StagedRandomResizedCrop), or remove it; for padding to a multiple, '
        'choose a full size and bandwidths whose B already are multiples.')


def _size_changers(dataset) -> List[str]:
    """The transforms after the last low-pass of the first train pipeline
    that change the image size of sample 0 (for messages; [] if unknown)."""
    ds = next(iter(leaf_datasets(dataset)), None)
    transforms = getattr(getattr(ds, 'pipeline', None), 'transforms', None)
    if not isinstance(transforms, list) or not hasattr(ds, 'get_data_info'):
        return []
    low_pass = [i for i, t in enumerate(transforms)
                if isinstance(t, StagedTransform) and follows_bandwidth(t)]
    if not low_pass:
        return []
    changers = []
    try:
        results = ds.get_data_info(0)
        for i, t in enumerate(transforms):
            before = getattr(results.get('img'), 'shape', (None, None))[:2]
            results = t(results)
            if not isinstance(results, dict) or 'img' not in results:
                break  # packed
            if i > low_pass[-1] and results['img'].shape[:2] != before:
                changers.append(type(t).__name__)
    except Exception:  # the message falls back to a generic name
        return changers
    return changers


def check_first_batch(state: StageState, data_batch,
                      expected: Optional[Tuple[int, int]],
                      preprocessor=None) -> None:
    """Check the first train batch of a stage.

    Raises:
        RuntimeError: the batch cannot carry the stage (float images the
            batched path leaves alone) or has another size than the stage's:
            the curriculum did not reach the data workers.
    """
    if not isinstance(data_batch, dict):
        return
    if preprocessor is not None and \
            not preprocessor.augments(data_batch['inputs']):
        raise RuntimeError(
            f'EfficientTrainHook set {state.describe(span=False)} in '
            'DeviceAugmentPreprocessor, but the train loader delivered '
            'images that are neither encoded nor uint8, which it takes as '
            'augmented already and leaves alone: the curriculum would not '
            'reach them. Deliver uint8 images (no Normalize or float '
            'conversion in the train pipeline) or encoded ones '
            "(LoadImageBytes + PackInputs(input_key='img_bytes')).")
    if expected is None:
        return
    shapes = set(_spatial_shapes(data_batch['inputs']))
    if shapes != {expected}:
        raise RuntimeError(
            f'EfficientTrainHook set {state.describe(span=False)}, but the '
            f'train loader delivered inputs of {sorted(shapes)} instead of '
            f'{expected}: the curriculum did not reach the data workers. '
            'Something restarted or replaced the dataloader behind the '
            'hook; report this with your config.')


def warn_eval_pipelines(runner, mode: str) -> None:
    """Warn about a FourierCrop in the built ``'val'`` or ``'test'``
    pipeline: evaluation normally runs at full size, and the curriculum
    only drives the train pipeline."""
    loader = compat.built_eval_dataloader(runner, mode)
    crops = eval_fourier_crops(loader.dataset) if loader is not None else []
    if crops:
        runner.logger.warning(
            f'The {mode} pipeline contains {crops[0]!r}. Evaluation normally '
            'runs at full size; the curriculum only drives the train '
            'pipeline, so this crop stays at its configured size. Remove it '
            f'from the {mode}_dataloader pipeline unless you mean it.')


def eval_fourier_crops(dataset) -> List[FourierCrop]:
    """The FourierCrops of an eval dataset's pipelines (normally none)."""
    return [s.transform for ds in leaf_datasets(dataset)
            for s in walk_transforms(ds.pipeline)
            if isinstance(s.transform, FourierCrop)]


# the model -------------------------------------------------------------------
def check_model(model: torch.nn.Module, driver: StageDriver,
                plan: TrainPlan) -> None:
    """The model side of a curriculum that lowers B, at start: a stock MAE
    is refused, B must be a multiple of a patch embedding's patch, and one
    forward and backward runs per B below full size (Swin windows fitted).
    """
    if not driver.lowers_bandwidth:
        return
    model = unwrap_model(model)
    check_mae_model(model)
    states = plan.clock.states()
    if plan.full_size is None:
        return
    check_patch_multiples(model, states)
    tried = set()
    try:
        for state in states:
            if state.bandwidth < 1 and state.size not in tried:
                tried.add(state.size)
                driver.apply(state)
                preflight_model(model, [state.size])
    finally:
        driver.full_model()


def _backbone(model: torch.nn.Module) -> torch.nn.Module:
    model = unwrap_model(model)
    return getattr(model, 'backbone', None) or model


def model_name(model: torch.nn.Module) -> str:
    """``'ImageClassifier with VisionTransformer'``, for messages."""
    model = unwrap_model(model)
    backbone = getattr(model, 'backbone', None)
    return type(model).__name__ + (
        f' with {type(backbone).__name__}' if backbone is not None else '')


def patch_size(model: torch.nn.Module) -> Optional[Tuple[int, int]]:
    """The patch of a patch-embedding backbone (ViT, DeiT, Swin, ...):
    the stride of ``backbone.patch_embed.projection``; None otherwise."""
    proj = getattr(getattr(_backbone(model), 'patch_embed', None),
                   'projection', None)
    stride = getattr(proj, 'stride', None)
    return tuple(stride) if stride is not None else None


def check_patch_multiples(model: torch.nn.Module,
                          states: Sequence[StageState]) -> None:
    """Refuse a stage whose B is not a multiple of the backbone's patch.

    A patch embedding pads (or drops) the remainder, so such a stage would
    train on inputs the curriculum did not ask for.

    Raises:
        ValueError: naming the stage, the patch and the fix.
    """
    patch = patch_size(model)
    if patch is None:
        return
    for state in states:
        h, w = hw(state.size)
        if h % patch[0] or w % patch[1]:
            raise ValueError(
                f'{model_name(model)} embeds {patch[0]}x{patch[1]} patches, '
                f'but {state} trains at B={state.size}, which is not a '
                'multiple of the patch, so the patch embedding would pad '
                'it. Choose bandwidths whose B is a multiple of '
                f'{patch[0]} (at 224 px: 96, 128, 160, 192; e.g. '
                "curriculum='efficienttrain++' with family='deit'), or a "
                'full size whose curriculum B are (the ET preset at 224 '
                'px: 160, 192).')


def _channels(model: torch.nn.Module) -> int:
    conv = next((m for m in _backbone(model).modules()
                 if isinstance(m, torch.nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def _float_outputs(out) -> List[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _float_outputs(o)]
    return []


def preflight_model(model: torch.nn.Module, sizes: Sequence[Size],
                    batch_size: int = 2, name: Optional[str] = None) -> None:
    """One forward and backward of the backbone at each B, at start.

    Runs a batch of ``batch_size`` random images at each size on the
    model's device, in train mode, and restores everything it touched:
    gradients, buffers (BatchNorm statistics), the RNG and the mode.
    ``tools/check_configs.py`` calls it per config; the hook calls it for
    the curriculum's B below full size.

    Args:
        model (nn.Module): A model with a ``backbone`` (or a backbone).
        sizes (Sequence[int | tuple]): The B to try, in pixels.
        batch_size (int): Images per batch. Defaults to 2.
        name (str, optional): The model's name in messages (default: its
            type and backbone type).

    Raises:
        RuntimeError: the model, the B and the cause.
    """
    backbone = _backbone(model)
    params = [p for p in backbone.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device('cpu')
    grads = [p.grad for p in params]
    buffers = {k: v.clone() for k, v in backbone.state_dict().items()
               if k in dict(backbone.named_buffers())}
    training = backbone.training
    channels = _channels(model)
    devices = [device.index or 0] if device.type == 'cuda' else []
    try:
        with torch.random.fork_rng(devices=devices):
            backbone.train()
            for size in dict.fromkeys(sizes):
                h, w = hw(size)
                x = torch.randn(batch_size, channels, h, w, device=device)
                try:
                    outs = [o for o in _float_outputs(backbone(x))
                            if o.requires_grad]  # none: a frozen backbone
                    if outs:
                        sum(o.float().sum() for o in outs).backward()
                except Exception as e:
                    raise RuntimeError(
                        f'{name or model_name(model)} does not train at '
                        f'B={size} (one forward and backward of a batch of '
                        f'{batch_size} random {h}x{w} images failed: '
                        f'{type(e).__name__}: {e}). Give the curriculum '
                        'bandwidths the model accepts (the smallest B is '
                        'the usual culprit), or leave this model at full '
                        'size.') from e
    finally:
        backbone.train(training)
        for p, g in zip(params, grads):
            p.grad = g
        backbone.load_state_dict(buffers, strict=False)
