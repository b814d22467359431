"""Adapt a stock train pipeline to the curriculum, in place.

A curriculum needs two things of the train pipeline: a RandAugment whose
magnitude it can set, and a low-pass that takes each sample to the stage's
B. :func:`adapt_pipeline` makes both from the transforms a stock mmpretrain
config already has, keeping every argument:

- ``RandAugment`` becomes :class:`~mmet.transforms.StagedRandAug` with the
  same policies, ``num_policies``, ``magnitude_std``, ``total_level`` and
  ``hparams``; the curriculum then sets its m per stage (the presets end at
  m=9; the hook warns where the config's ``magnitude_level`` differs).
- ``low_pass='fourier'``: a :class:`~mmet.transforms.FourierCrop` to the
  output size of the last resize/crop goes just before the packing
  transform, after every full-size augmentation (the paper's order, as
  ``configs/_base_/efficienttrain.py``'s ``et_train_pipeline``).
- ``low_pass='resize'``: ``RandomResizedCrop`` becomes
  :class:`~mmet.transforms.StagedRandomResizedCrop` (the cheap path: the
  crop is resized straight to B). cv2's bilinear and bicubic kernels alias
  when they shrink, so such a crop switches to the Pillow backend (same
  interpolation), and the change says so.

A RandAugment inside ``RandomApply`` is staged where it is (the wrapper
keeps its probability). A pipeline that already holds a staged transform
(:mod:`mmet.staged`) is the user's own and is left as it is. A pipeline
without RandAugment has no augmentation strength to stage and keeps its
augmentations. Whatever cannot be adapted is refused
before anything changes, with the transform and the fix named.
"""
from typing import List, Sequence, Tuple

import torchvision.transforms as tvt
from mmcv.transforms import CenterCrop, RandomChoiceResize, RandomResize
from mmcv.transforms import Resize as MMCVResize
from mmpretrain.datasets.transforms import (EfficientNetCenterCrop,
                                            RandAugment, RandomCrop,
                                            RandomResizedCrop, ResizeEdge)
from mmpretrain.datasets.transforms.processing import \
    TorchVisonTransformWrapper

from .device_pipeline import LoadImageBytes
from .pipelines import FIXED_STRENGTH, transform_name, walk_transforms
from .sizes import hw, square
from .staged import StagedTransform
from .transforms import FourierCrop, StagedRandAug, StagedRandomResizedCrop

LOW_PASS = ('fourier', 'resize')
# wrappers inside which a RandAugment is staged in place
STAGED_IN = ('RandomApply', )
# they draw a mask on the patch grid of the full size
MASK_GENERATORS = ('BEiTMaskGenerator', 'SimMIMMaskGenerator')
# a resize whose output depends on the image: no single full size
VARIABLE = 'variable'
# the RandAugment these settings make, for the messages
RANDAUG_HINT = ("RandAugment(policies='timm_increasing', num_policies=2, "
                'magnitude_level=9, magnitude_std=0.5)')


class AdaptationError(RuntimeError):
    """A train pipeline the curriculum cannot adapt; the message names the
    transform and the fix."""


def _fixed_strength(t) -> bool:
    return transform_name(t).split('/')[-1] in FIXED_STRENGTH


def output_size(t):
    """What a transform resizes or crops to.

    Returns:
        tuple | str | None: ``(h, w)``; :data:`VARIABLE` if the size
        depends on the image (a resize that keeps the aspect ratio, a random
        scale); None for a transform that keeps the size.
    """
    if isinstance(t, TorchVisonTransformWrapper):
        t = t.t
    if isinstance(t, RandomResizedCrop):  # also EfficientNetRandomCrop
        return hw(t.scale)
    if isinstance(t, RandomCrop):
        return hw(t.crop_size)
    if isinstance(t, EfficientNetCenterCrop):
        return hw(t.crop_size)
    if isinstance(t, CenterCrop):
        w, h = t.crop_size  # mmcv's (w, h)
        return h, w
    if isinstance(t, (RandomResize, RandomChoiceResize, ResizeEdge)):
        return VARIABLE
    if isinstance(t, MMCVResize):  # also mmdet's
        if t.scale is None or t.keep_ratio:
            return VARIABLE
        w, h = t.scale
        return h, w
    if isinstance(t, (tvt.RandomResizedCrop, tvt.RandomCrop,
                      tvt.CenterCrop)):
        return hw(t.size)
    if isinstance(t, tvt.Resize):
        return hw(t.size) if isinstance(t.size, (list, tuple)) and \
            len(t.size) == 2 else VARIABLE
    if transform_name(t) == 'RandomResizedCropAndInterpolationWithTwoPic':
        return VARIABLE
    return None


def _is_packing(t) -> bool:
    name = transform_name(t)
    return name.startswith('Pack') and name.endswith('Inputs')


def _is_detection(transforms: list) -> bool:
    return any(transform_name(s.transform) == 'PackDetInputs' or
               type(s.transform).__module__.startswith('mmdet.')
               for s in walk_transforms(transforms))


def _staged_randaug(t: RandAugment) -> Tuple[StagedRandAug, str]:
    """The StagedRandAug that ``t`` becomes, and the change text."""
    new = StagedRandAug(
        policies=t.policies,
        num_policies=t.num_policies,
        magnitude_level=t.magnitude_level,
        magnitude_std=t.magnitude_std,
        total_level=t.total_level,
        hparams=t.hparams)
    return new, (
        f'RandAugment -> StagedRandAug (the same {len(t.policies)} '
        f'policies, num_policies={t.num_policies}, '
        f'magnitude_std={t.magnitude_std}, total_level={t.total_level}; '
        f'magnitude_level={t.magnitude_level:g} in the config; the '
        'curriculum sets m per stage)')


def _staged_crop(t: RandomResizedCrop
                 ) -> Tuple[StagedRandomResizedCrop, str]:
    """The StagedRandomResizedCrop that ``t`` becomes, and the change text."""
    backend = t.backend
    note = ''
    if backend != 'pillow' and t.interpolation != 'area':
        backend = 'pillow'
        note = (f"; backend {t.backend!r} -> 'pillow': {t.backend}'s "
                f'{t.interpolation} kernel aliases when it shrinks to low '
                "B, Pillow's widens with the scale")
    new = StagedRandomResizedCrop(
        scale=tuple(t.scale),
        crop_ratio_range=t.crop_ratio_range,
        aspect_ratio_range=t.aspect_ratio_range,
        max_attempts=t.max_attempts,
        interpolation=t.interpolation,
        backend=backend)
    return new, (f'RandomResizedCrop -> StagedRandomResizedCrop(scale='
                 f'{tuple(t.scale)}, interpolation={t.interpolation!r}, '
                 f'backend={backend!r}){note}')


def _check_magnitude(transforms: list, det: bool) -> list:
    """Where the RandAugments to stage are (``Step``s); refuse what cannot
    be staged."""
    fix = ('give every stage of the curriculum the same magnitude (a list '
           'of dict(share=, bandwidth=, magnitude=))')
    found = []
    for step in walk_transforms(transforms):
        t, parent = step.transform, step.parent
        name = transform_name(t)
        if _fixed_strength(t) or (det and name == 'RandAugment'):
            what = ("mmdet's RandAugment, whose policies move the boxes too,"
                    if det else name)
            raise AdaptationError(
                f'The curriculum changes the RandAugment magnitude m, but '
                f'the train pipeline augments with {what} which has no '
                f'magnitude mmet can stage. Replace it by {RANDAUG_HINT} '
                f'(mmet stages it), or {fix}.')
        if isinstance(t, RandAugment):
            if parent is not None and parent not in STAGED_IN:
                raise AdaptationError(
                    f'The train pipeline has RandAugment inside {parent}, '
                    'where mmet does not stage it: the curriculum would '
                    'drive only some samples. Put '
                    "dict(type='StagedRandAug', ...) with RandAugment's "
                    f'arguments in its place yourself, or {fix}.')
            if t.magnitude_level > t.total_level:
                # mmpretrain extrapolates its ranges; a stage's m does not
                raise AdaptationError(
                    f'The train pipeline has RandAugment(magnitude_level='
                    f'{t.magnitude_level:g}, total_level={t.total_level:g}), '
                    'beyond its own scale, which mmet does not stage: the '
                    "curriculum's m lies on the 0-total_level scale (the "
                    'presets end at m=9 of 10). Set magnitude_level to at '
                    f'most {t.total_level:g}, or {fix} to keep this '
                    'RandAugment as it is.')
            found.append(step)
    return found


def _check_bandwidth(transforms: list, low_pass: str,
                     det: bool) -> Tuple[int, Tuple[int, int]]:
    """The index of the last resize/crop and its output size; refuse a
    pipeline that cannot carry a lower B."""
    names = [transform_name(t) for t in transforms]
    if det:
        raise AdaptationError(
            'The curriculum lowers the bandwidth B, but this is a detection '
            'pipeline: FourierCrop and StagedRandomResizedCrop resize the '
            'image, not gt_bboxes or gt_masks. Train the backbone with the '
            'curriculum on classification and transfer it (configs/det/), '
            'or give every stage bandwidth=1.0.')
    for step in walk_transforms(transforms):
        t, parent = step.transform, step.parent
        name = transform_name(t)
        if name in MASK_GENERATORS:
            raise AdaptationError(
                f'The curriculum lowers the bandwidth B, but {name} draws '
                'its mask on the patch grid of the full size, which a '
                'smaller input does not have. Give every stage '
                'bandwidth=1.0 for masked-image pre-training.')
        if parent == 'MultiView':
            raise AdaptationError(
                'The train pipeline makes several views of each image '
                '(MultiView, self-supervised pre-training); mmet adapts '
                'single-view pipelines. Give every stage bandwidth=1.0.')
        if parent is not None and output_size(t) is not None:
            raise AdaptationError(
                f'The train pipeline resizes inside {parent} ({name}), so '
                'the full size is not one size mmet can take to B. Add '
                "dict(type='FourierCrop', size=<final size>) before the "
                'packing transform yourself.')
    sized = [(i, output_size(t)) for i, t in enumerate(transforms)
             if output_size(t) is not None]
    if not sized:
        raise AdaptationError(
            f'The train pipeline ({", ".join(names)}) has no resize or crop '
            '(RandomResizedCrop, RandomCrop, CenterCrop, Resize, ...), so '
            'its full size is unknown. Add '
            "dict(type='FourierCrop', size=<final size>) before the "
            'packing transform yourself.')
    last, size = sized[-1]
    if size == VARIABLE:
        raise AdaptationError(
            f'The last resize of the train pipeline, {names[last]}, gives '
            'each image its own size, but the curriculum needs one full '
            'size. End the resizing with a crop to the final size (e.g. '
            "dict(type='CenterCrop', crop_size=224)), or add "
            "dict(type='FourierCrop', size=<final size>) yourself.")
    if low_pass == 'resize' and type(transforms[last]) is not \
            RandomResizedCrop:
        raise AdaptationError(
            "low_pass='resize' makes mmpretrain's RandomResizedCrop resize "
            f'straight to B, but the last resize is {names[last]}. Use '
            "low_pass='fourier' (a FourierCrop before the packing).")
    if low_pass == 'fourier':
        packs = [i for i, t in enumerate(transforms) if _is_packing(t)]
        if not packs:
            raise AdaptationError(
                f'The train pipeline ({", ".join(names)}) has no packing '
                'transform (PackInputs), before which FourierCrop goes. '
                'End it with PackInputs.')
        if packs[0] != len(transforms) - 1:
            raise AdaptationError(
                f'{", ".join(names[packs[0] + 1:])} come(s) after '
                f'{names[packs[0]]}, which makes tensors; FourierCrop must '
                'run after every image transform and before the packing. '
                f'Move them before {names[packs[0]]}.')
    return last, size


def adapt_pipeline(transforms: list, *, low_pass: str = 'fourier',
                   bandwidth: bool = True, magnitude: bool = True
                   ) -> List[str]:
    """Adapt the built transforms of a train pipeline to the curriculum.

    Args:
        transforms (list): The pipeline's transforms (``Compose.transforms``),
            changed in place.
        low_pass (str): ``'fourier'`` inserts a ``FourierCrop`` before the
            packing transform; ``'resize'`` makes ``RandomResizedCrop`` a
            ``StagedRandomResizedCrop``. Defaults to ``'fourier'``.
        bandwidth (bool): The curriculum lowers B. Defaults to True.
        magnitude (bool): The curriculum changes the RandAugment magnitude.
            Defaults to True.

    Returns:
        list[str]: One line per change; empty if nothing changed (a pipeline
        with staged transforms, or nothing the curriculum changes).

    Raises:
        AdaptationError: The pipeline cannot carry the curriculum; nothing
            was changed.
    """
    if low_pass not in LOW_PASS:
        raise ValueError(
            f'low_pass must be one of {LOW_PASS}, got {low_pass!r}.')
    if any(isinstance(s.transform, (StagedTransform, LoadImageBytes))
           for s in walk_transforms(transforms)):
        return []
    det = _is_detection(transforms)
    # check everything before changing anything
    randaugs = _check_magnitude(transforms, det) if magnitude else []
    last, size = _check_bandwidth(transforms, low_pass, det) \
        if bandwidth else (None, None)
    changes = []
    for step in randaugs:
        step.owner[step.index], text = _staged_randaug(step.transform)
        where = f' inside {step.parent}' if step.parent else ''
        changes.append(text.replace('RandAugment ->',
                                    f'RandAugment{where} ->', 1))
    if last is not None and low_pass == 'resize':
        transforms[last], text = _staged_crop(transforms[last])
        changes.append(text)
    elif last is not None:
        pack = len(transforms) - 1
        transforms.insert(pack, FourierCrop(size=square(size)))
        changes.append(
            f'inserted FourierCrop(size={square(size)}) before '
            f'{transform_name(transforms[pack + 1])}, after '
            f'{transform_name(transforms[pack - 1])}')
    return changes


def describe_pipeline(transforms: Sequence, width: int = 160) -> str:
    """One line per transform, numbered, for a before/after log."""
    lines = []
    for i, t in enumerate(transforms):
        text = ' '.join(repr(t).split())
        if len(text) > width:
            text = text[:width - 3] + '...'
        lines.append(f'  {i}. {text}')
    return '\n'.join(lines)
