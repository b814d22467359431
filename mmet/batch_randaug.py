"""RandAugment for whole ``N x C x H x W`` batches on any torch device.

:class:`BatchRandAugment` draws, per sample, the same random choices as
mmpretrain's :class:`~mmpretrain.datasets.transforms.RandAugment` and
applies the same operations as the mmcv functions behind its policies, but
batched: each round, the samples that apply one policy are gathered, the
policy runs once on that sub-batch with per-sample magnitudes, and the
result is scattered back. Nothing loops over samples in Python; one call
costs a single host synchronisation (the sub-batch sizes).

mmpretrain works on ``uint8`` arrays, so each of its operations rounds (or
truncates, as ``astype(np.uint8)`` does) and saturates its output. The
operations here do the same, in the same places, so that an integer-valued
input gives mmpretrain's result to the grey level (see the notes of
:class:`BatchRandAugment` for the few places where it can differ by one).
"""
import math
from dataclasses import dataclass
from numbers import Number
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmengine.utils import is_list_of, is_seq_of
from mmpretrain.datasets.transforms.auto_augment import (RANDAUG_POLICIES,
                                                         merge_hparams)
from mmpretrain.registry import BATCH_AUGMENTS, TRANSFORMS

from .curriculum import Stage
from .staged import check_magnitude

# The argument of each mmpretrain policy that holds a fixed magnitude (None:
# the policy has no magnitude).
_MAGNITUDE_ARG = {
    'AutoContrast': None,
    'Equalize': None,
    'Invert': None,
    'Rotate': 'angle',
    'Posterize': 'bits',
    'Solarize': 'thr',
    'SolarizeAdd': 'magnitude',
    'ColorTransform': 'magnitude',
    'Contrast': 'magnitude',
    'Brightness': 'magnitude',
    'Sharpness': 'magnitude',
    'Shear': 'magnitude',
    'Translate': 'magnitude',
}
# Policies that call ``random_negative`` on their magnitude; mmpretrain
# forces ``random_negative_prob=0`` on the others.
_NEGATABLE = ('Rotate', 'Shear', 'Translate', 'ColorTransform', 'Contrast',
              'Brightness', 'Sharpness')
_AFFINE = ('Rotate', 'Shear', 'Translate')
# mmcv's interpolation names as cv2.warpAffine applies them: it warps with
# INTER_LINEAR when asked for INTER_AREA.
_WARP_MODES = {
    'nearest': 'nearest',
    'bilinear': 'bilinear',
    'bicubic': 'bicubic',
    'area': 'bilinear'
}
# cv2.cvtColor(COLOR_BGR2GRAY) on uint8 (OpenCV 5): fixed point, 15 bits.
_GREY_RGB = (9798., 19235., 3735.)
_GREY_SHIFT = 32768.


@dataclass
class _Policy:
    """One policy of the list, as its mmpretrain transform was built."""

    type: str
    prob: float
    negative_prob: float
    magnitude: Optional[float] = None  # a fixed magnitude, or
    magnitude_range: Optional[Tuple[float, float]] = None  # the level's map
    interpolation: str = 'nearest'
    pad_val: Union[int, Tuple[int, ...]] = 128
    direction: str = 'horizontal'
    center: Optional[Tuple[float, float]] = None
    scale: float = 1.0
    thr: float = 128


@BATCH_AUGMENTS.register_module()
class BatchRandAugment:
    r"""Per-sample RandAugment of a batch, with mmpretrain's distribution.

    The arguments and their meaning are those of mmpretrain's
    :class:`~mmpretrain.datasets.transforms.RandAugment`: every sample picks
    ``num_policies`` policies uniformly with replacement and applies them in
    order, each with its ``prob``; a policy with a ``magnitude_range`` maps
    the level :math:`\mathcal{N}(magnitude\_level, magnitude\_std)` clipped
    to ``[0, total_level]`` (or ``Uniform(0, magnitude_level)`` for
    ``magnitude_std='inf'``, or ``magnitude_level`` itself for
    ``magnitude_std <= 0``) linearly onto it, drawn per sample and per
    operation; Rotate, Shear, Translate, ColorTransform, Contrast,
    Brightness and Sharpness negate it with their
    ``random_negative_prob``.

    Unlike mmpretrain's, ``magnitude_level`` is read on each call, so a
    curriculum hook can change it between epochs (as with mmet's
    ``StagedRandAug``); ``0`` returns the batch untouched.

    Supported policies: AutoContrast, Equalize, Invert, Rotate, Posterize,
    Solarize, SolarizeAdd, ColorTransform, Contrast, Brightness, Sharpness,
    Shear and Translate, i.e. all of ``'timm_increasing'``. The policy dicts
    are merged with ``hparams`` and validated by building the mmpretrain
    transform, so their defaults (``prob=0.5``, the interpolations, ...)
    are mmpretrain's.

    Note:
        - Colours are in the channel order of the batch (RGB): a sequence
          ``pad_val`` fills channel ``i`` with ``pad_val[i]``. mmpretrain
          applies it to its BGR arrays, which is why its configs pass
          ``bgr_mean``; reverse such a list for an RGB batch. A single
          number fills every channel. (mmcv's ``imrotate`` hands an int
          ``border_value`` to cv2, which fills the first channel only, so
          mmpretrain's Rotate with an int ``pad_val`` pads with
          ``(pad_val, 0, 0)`` BGR; here it pads all channels.) A one-channel
          batch pads with a single value, or with the grey of a three-value
          ``pad_val``.
        - Every operation rounds its input to integers and its output as
          mmcv does on ``uint8`` (rounding for cv2 warps and
          ``addWeighted`` on ``uint8``, truncation for the float blends and
          look-up tables), then clips to ``[0, 255]``. Samples that no
          operation touches keep their exact values.
        - Sharpness smooths with mmcv's kernel and cv2's default border
          (reflect-101) over the whole image, as mmcv does (PIL keeps the
          one-pixel border instead).
        - The grey image of ColorTransform and Contrast is OpenCV 5's
          fixed-point BGR2GRAY, and the warps map pixels as OpenCV 5's own
          ``warpAffine`` kernel does (float32 coordinates, nearest rounding
          half to even); the bilinear and bicubic weights are
          grid_sample's, which puts about one pixel in a few hundred one
          grey level off cv2's.
        - OpenCV versions checked, as mmpretrain runs them (mmcv's
          ``imrotate``, ``imshear`` and ``imtranslate`` call
          ``cv2.warpAffine`` on the ``uint8`` image with the policy's
          interpolation and a constant fill; opencv-python(-headless)
          wheels on x86-64):

          * 5.0.0.93, locked on the upstream stack: as above, the nearest
            warps and the point operations agree exactly.
          * 5.1.0.95: its x86-64 wheels run ``warpAffine`` through Intel
            IPP (OpenCV 5.1 enabled the IPP HAL's warps, PRs #29669 and
            #29771). IPP's nearest neighbour rounds the source coordinate,
            computed in double precision, half up, and counts a coordinate
            of exactly ``size - 0.5`` as inside the image, where OpenCV's
            own kernel (unchanged since 5.0) rounds the float32 coordinate
            half to even. Only exact half-pixel ties differ, but by a whole
            pixel: a half-pixel Translate, a Shear row whose offset lands
            on ``k + 0.5`` (ShearH at level 2.5 on a 32 px image: 16
            pixels, up to 239 grey levels). Bilinear: one value in 30 000
            a level off; bicubic and the point operations are 5.0's. With
            ``OPENCV_IPP=disabled``, or where the wheel has no IPP (e.g.
            aarch64), 5.1 gives 5.0's results bit for bit: what an
            mmpretrain user gets from 5.1 depends on the machine, not a new
            definition of the warp, so the lock stays on 5.0.
          * 4.12.0.88, locked on the fork's stack (its imaug needs
            opencv < 4.13), and 4.14.0.94, which warps alike: fixed-point
            warps. Nearest rounds coordinates on a 1/1024 px grid, half up
            (ties go to the other neighbour than here, and the fill's edge
            moves by a pixel); bilinear and bicubic sample on a 1/32 px grid
            (up to 1/32 of the image's range off); other grey weights, and
            a float32 ``addWeighted`` without fused multiply-add (Contrast,
            Sharpness: a level off on <= 2.8 % of pixels).
            ``tests/test_batch_randaug.py`` bounds each difference.
        - Grey batches (``C=1``) run every policy on the one channel;
          ColorTransform is then the identity, as it is on a grey image in
          mmcv.

    Args:
        policies (str | list[dict]): ``'timm_increasing'`` (or another key
            of mmpretrain's ``RANDAUG_POLICIES``) or a list of policy dicts
            as for mmpretrain's ``RandAugment``. Defaults to
            ``'timm_increasing'``.
        num_policies (int): Policies applied to each sample. Defaults to 2.
        magnitude_level (int | float): The level on the
            ``0``-``total_level`` scale; a public attribute a curriculum may
            change between calls. ``0`` disables the augmentation.
            Defaults to 9.
        magnitude_std (Number | str): The level's noise: a positive std, 0
            (or negative) for none, or ``'inf'``. Defaults to 0.5.
        total_level (int | float): The top of the level scale. Defaults to
            10.
        hparams (dict): Arguments merged into the policies that accept them
            and do not set them (e.g. ``pad_val``, ``interpolation``).
            Defaults to ``dict(pad_val=128)``.

    Examples:
        >>> aug = BatchRandAugment(magnitude_level=9, magnitude_std=0.5)
        >>> imgs = torch.randint(0, 256, (8, 3, 32, 32)).float()
        >>> aug(imgs).shape
        torch.Size([8, 3, 32, 32])
        >>> aug.magnitude_level = 5  # e.g. set by a curriculum hook
    """

    def __init__(self,
                 policies: Union[str, List[dict]] = 'timm_increasing',
                 num_policies: int = 2,
                 magnitude_level: Union[int, float] = 9,
                 magnitude_std: Union[Number, str] = 0.5,
                 total_level: Union[int, float] = 10,
                 hparams: dict = dict(pad_val=128)):
        if isinstance(policies, str):
            if policies not in RANDAUG_POLICIES:
                raise ValueError(
                    f'Invalid policies "{policies}", choose from '
                    f'{list(RANDAUG_POLICIES)}.')
            policies = RANDAUG_POLICIES[policies]
        if not is_list_of(policies, dict) or not policies:
            raise TypeError('policies must be a non-empty list of dicts.')
        if isinstance(magnitude_std, str):
            if magnitude_std != 'inf':
                raise ValueError('magnitude_std must be a number or "inf", '
                                 f'got "{magnitude_std}".')
        elif not isinstance(magnitude_std, Number):
            raise TypeError('magnitude_std must be a number or "inf", got '
                            f'{type(magnitude_std)}.')
        if num_policies <= 0:
            raise ValueError('num_policies must be greater than 0.')
        if total_level <= 0:
            raise ValueError('total_level must be greater than 0.')

        self.num_policies = num_policies
        self.magnitude_std = magnitude_std
        self.total_level = total_level
        self.hparams = hparams
        self._check_level(magnitude_level)
        self.magnitude_level = magnitude_level
        self.full_magnitude = float(magnitude_level)
        self.policies = [self._parse(p) for p in policies]
        # small constant tensors, kept per device so that a call on a GPU
        # copies nothing from the host
        self._prob_cache: Dict[torch.device, torch.Tensor] = {}
        self._pad_cache: Dict[tuple, torch.Tensor] = {}

    # set-up ------------------------------------------------------------------
    def _parse(self, policy: dict) -> _Policy:
        """Merge ``hparams`` into a policy and read back its arguments.

        Building mmpretrain's transform validates the dict and fills in the
        defaults of its class, exactly as ``RandAugment`` does.
        """
        if not isinstance(policy, dict) or 'type' not in policy:
            raise TypeError('Each policy must be a dict with key "type".')
        name = policy['type']
        if name not in _MAGNITUDE_ARG:
            raise NotImplementedError(
                f'BatchRandAugment has no batched version of the policy '
                f'"{name}"; supported: {sorted(_MAGNITUDE_ARG)}.')
        if 'magnitude_range' in policy and not (
                is_seq_of(policy['magnitude_range'], Number)
                and len(policy['magnitude_range']) == 2):
            raise TypeError(f'`magnitude_range` of policy {name} should be '
                            'a sequence of two numbers.')
        cfg = merge_hparams(policy, self.hparams)
        cfg.pop('magnitude_key', None)  # for backward compatibility
        if 'magnitude_range' in cfg:
            cfg.update(
                magnitude_level=self.magnitude_level,
                magnitude_std=self.magnitude_std,
                total_level=self.total_level)
        # mmpretrain's ops even where another scope (mmdet) is the default
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            op = TRANSFORMS.build(cfg)

        arg = _MAGNITUDE_ARG[name]
        fixed = getattr(op, arg) if arg else None
        interpolation = getattr(op, 'interpolation', 'nearest')
        if name in _AFFINE and interpolation not in _WARP_MODES:
            raise NotImplementedError(
                f'{name}: interpolation "{interpolation}" is not supported, '
                f'use one of {sorted(_WARP_MODES)}.')
        center = getattr(op, 'center', None)
        return _Policy(
            type=name,
            prob=float(op.prob),
            negative_prob=float(op.random_negative_prob)
            if name in _NEGATABLE else 0.,
            magnitude=None if fixed is None else float(fixed),
            magnitude_range=None if fixed is not None or arg is None else
            tuple(float(v) for v in cfg['magnitude_range']),
            interpolation=interpolation,
            pad_val=getattr(op, 'pad_val', 128),
            direction=getattr(op, 'direction', 'horizontal'),
            center=None if center is None else tuple(center),
            scale=float(getattr(op, 'scale', 1.0)),
            thr=float(op.thr) if name == 'SolarizeAdd' else 128.)

    def _check_level(self, level: Union[int, float]) -> None:
        if not isinstance(level, Number):
            raise TypeError(f'BatchRandAugment magnitude_level must be a '
                            f'number, got {level!r}.')
        check_magnitude(self, level, self.total_level)

    full_size = None

    def set_stage(self, stage: Stage) -> None:
        """Augment at the stage's m (a staged transform,
        :mod:`mmet.staged`)."""
        check_magnitude(self, stage.magnitude, self.total_level)
        self.magnitude_level = stage.magnitude

    # the call ----------------------------------------------------------------
    def __call__(self,
                 imgs: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Augment a batch.

        Args:
            imgs (torch.Tensor): ``N x C x H x W`` floating-point images in
                ``[0, 255]``, RGB (``C=3``) or grey (``C=1``), on any device.
            generator (torch.Generator, optional): The source of all the
                random draws. It may live on another device than ``imgs``
                (the draws are then moved). Defaults to None: torch's
                default generator of ``imgs``' device.

        Returns:
            torch.Tensor: The augmented batch, of the shape, dtype and device
            of ``imgs``. ``imgs`` itself when nothing applies (e.g.
            ``magnitude_level == 0``); ``imgs`` is never modified.
        """
        if not isinstance(imgs, torch.Tensor) or imgs.dim() != 4:
            raise TypeError('BatchRandAugment expects an N x C x H x W '
                            f'tensor, got {_describe(imgs)}.')
        if imgs.size(1) not in (1, 3):
            raise ValueError(
                'BatchRandAugment needs RGB (C=3) or grey (C=1) images, got '
                f'C={imgs.size(1)} (shape {tuple(imgs.shape)}).')
        if not imgs.is_floating_point():
            raise TypeError('BatchRandAugment expects floating-point images '
                            f'in [0, 255], got {imgs.dtype}.')
        level = self.magnitude_level
        self._check_level(level)
        n, k, npol = imgs.size(0), self.num_policies, len(self.policies)
        if level == 0 or n == 0:
            return imgs

        device = imgs.device
        draw = dict(
            generator=generator,
            device=generator.device if generator is not None else device)
        choice = torch.randint(npol, (n, k), **draw).to(device)
        u_apply = torch.rand(n, k, **draw).to(device)
        u_negative = torch.rand(n, k, dtype=torch.float64, **draw).to(device)
        levels = self._draw_levels(level, (n, k), draw).to(device)

        # Sort each round's samples by policy (``npol``: none), so that each
        # policy's sub-batch is a slice; one sync fetches the slice sizes.
        applied = u_apply < self._probs(device)[choice]
        key = torch.where(applied, choice, torch.full_like(choice, npol))
        order = torch.argsort(key, dim=0, stable=True)
        counts = key.new_zeros(k, npol + 1).scatter_add_(
            1, key.t(), key.new_ones(1, 1).expand(k, n))
        counts = counts[:, :npol].tolist()
        if not any(map(any, counts)):
            return imgs

        x = imgs.to(torch.float32, copy=True)
        for r in range(k):
            start = 0
            warps: Dict[tuple, list] = {}
            for p, count in enumerate(counts[r]):
                if not count:
                    continue
                idx = order[start:start + count, r]
                start += count
                pol = self.policies[p]
                mag = self._magnitudes(pol, levels[idx, r], u_negative[idx, r])
                if pol.type in _AFFINE:
                    # all warps of a round with the same mode and fill go
                    # through one grid_sample call
                    group = (_WARP_MODES[pol.interpolation], pol.pad_val)
                    warps.setdefault(group, []).append(
                        (idx, _affine_matrix(pol, mag, x.shape[-2:])))
                    continue
                sub = x[idx].round_().clamp_(0, 255)
                x.index_copy_(0, idx, _POINT_OPS[pol.type](sub, mag, pol))
            for (mode, pad_val), parts in warps.items():
                idx = torch.cat([i for i, _ in parts])
                mats = torch.cat([m for _, m in parts])
                sub = x[idx].round_().clamp_(0, 255)
                pad = self._pad(pad_val, x)
                x.index_copy_(0, idx, _warp_affine(sub, mats, mode, pad))
        return x.to(imgs.dtype)

    def _probs(self, device: torch.device) -> torch.Tensor:
        """Each policy's ``prob``, cached on ``device``."""
        if device not in self._prob_cache:
            self._prob_cache[device] = torch.tensor(
                [p.prob for p in self.policies], device=device)
        return self._prob_cache[device]

    def _pad(self, pad_val: Union[Number, Sequence[Number]],
             x: torch.Tensor) -> torch.Tensor:
        """A fill value per channel, cached on ``x``'s device."""
        key = (pad_val, x.size(1), x.device)
        if key not in self._pad_cache:
            self._pad_cache[key] = x.new_tensor(
                _pad_values(pad_val, x.size(1)))
        return self._pad_cache[key]

    def _draw_levels(self, level: float, shape: Tuple[int, int],
                     draw: dict) -> torch.Tensor:
        """Per-sample, per-operation levels (``BaseAugTransform``'s law)."""
        std = self.magnitude_std
        if std == 'inf':
            return torch.rand(shape, dtype=torch.float64, **draw) * level
        if std > 0:
            noise = torch.randn(shape, dtype=torch.float64, **draw)
            return (noise * std + level).clamp_(0, self.total_level)
        return torch.full(shape, float(level), dtype=torch.float64,
                          device=draw['device'])

    def _magnitudes(self, pol: _Policy, levels: torch.Tensor,
                    u_negative: torch.Tensor) -> Optional[torch.Tensor]:
        """The float64 magnitudes of one policy's sub-batch, or None."""
        if pol.magnitude is not None:
            mag = torch.full_like(levels, pol.magnitude)
        elif pol.magnitude_range is not None:
            val1, val2 = pol.magnitude_range
            # mmpretrain's expression, in the same order and precision
            mag = levels / self.total_level * (val2 - val1) + val1
        else:
            return None
        if pol.negative_prob > 0:
            mag = torch.where(u_negative < pol.negative_prob, -mag, mag)
        return mag

    def __repr__(self) -> str:
        policies_str = ''
        for pol in self.policies:
            policies_str += f'\n    {pol.type}'
            if pol.magnitude_range is not None:
                val1, val2 = pol.magnitude_range
                policies_str += f' ({val1:g}, {val2:g})'
            elif pol.magnitude is not None:
                policies_str += f' ({pol.magnitude:g})'
        repr_str = self.__class__.__name__
        repr_str += f'(num_policies={self.num_policies}, '
        repr_str += f'magnitude_level={self.magnitude_level}, '
        repr_str += f'magnitude_std={self.magnitude_std}, '
        repr_str += f'total_level={self.total_level}, '
        repr_str += f'policies:{policies_str}\n)'
        return repr_str


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f'a tensor of shape {tuple(obj.shape)}'
    return f'{type(obj).__name__}'


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    """``(n,)`` to ``(n, 1, 1, 1)``, to broadcast over an image batch."""
    return v.view(-1, 1, 1, 1)


# point operations: x is an integer-valued float32 sub-batch in [0, 255] -----
def _as_index(x: torch.Tensor) -> torch.Tensor:
    """The pixels as ``n*C x H*W`` look-up indices."""
    return x.long().flatten(2).flatten(0, 1)


def _auto_contrast(x: torch.Tensor, mag: None, pol: _Policy) -> torch.Tensor:
    """mmcv ``auto_contrast`` (cutoff 0): stretch each channel to 0-255."""
    low = x.flatten(2).amin(2).flatten().double()[:, None]
    high = x.flatten(2).amax(2).flatten().double()[:, None]
    # mmcv's float64 look-up table, truncated by astype(uint8); with a
    # tensor numerator (``255.0 / t`` multiplies by the reciprocal)
    scale = torch.full_like(low, 255.0) / (high - low).clamp_(min=1)
    offset = -low * scale
    lut = torch.arange(256, dtype=torch.float64, device=x.device)
    lut = (lut * scale + offset).clamp_(0, 255).floor_().float()
    # a flat channel (low == high) stays as it is: the identity table
    identity = torch.arange(256, dtype=lut.dtype, device=lut.device)
    lut = torch.where(high > low, lut, identity)
    return lut.gather(1, _as_index(x)).view_as(x)


def _equalize(x: torch.Tensor, mag: None, pol: _Policy) -> torch.Tensor:
    """mmcv ``imequalize``: PIL's histogram equalisation per channel."""
    index = _as_index(x)
    hist = index.new_zeros(index.size(0), 256)
    hist.scatter_add_(1, index, index.new_ones(1, 1).expand_as(index))
    bins = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, bins, -1).amax(1, keepdim=True)
    step = (index.size(1) - hist.gather(1, last)) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = F.pad(lut[:, :-1], (1, 0)).clamp_(max=255)
    # step 0 (a near-constant channel) keeps the channel: identity table
    lut = torch.where(step > 0, lut, bins)
    return lut.float().gather(1, index).view_as(x)


def _invert(x: torch.Tensor, mag: None, pol: _Policy) -> torch.Tensor:
    return 255 - x


def _posterize(x: torch.Tensor, mag: torch.Tensor,
               pol: _Policy) -> torch.Tensor:
    """Keep the top ``ceil(magnitude)`` bits, as mmpretrain rounds them."""
    bits = mag.ceil().clamp(0, 8)
    step = _per_sample(torch.exp2(8 - bits).float())
    return torch.div(x, step, rounding_mode='floor') * step


def _solarize(x: torch.Tensor, mag: torch.Tensor,
              pol: _Policy) -> torch.Tensor:
    # for integer x: x < thr <=> x < ceil(thr), exact in float32
    thr = _per_sample(mag.ceil().float())
    return torch.where(x < thr, x, 255 - x)


def _solarize_add(x: torch.Tensor, mag: torch.Tensor,
                  pol: _Policy) -> torch.Tensor:
    # mmpretrain truncates x + magnitude; for integer x that is
    # x + floor(magnitude), exact in float32
    add = _per_sample(mag.floor().float())
    return torch.where(x < math.ceil(pol.thr), (x + add).clamp_(0, 255), x)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """cv2's uint8 BGR2GRAY of an RGB (or grey) batch, ``n x 1 x H x W``."""
    if x.size(1) == 1:
        return x
    r, g, b = _GREY_RGB
    grey = x[:, :1] * r + x[:, 1:2] * g + x[:, 2:] * b
    return torch.floor((grey + _GREY_SHIFT / 2) / _GREY_SHIFT)


def _add_weighted(x: torch.Tensor, alpha: torch.Tensor,
                  other: torch.Tensor) -> torch.Tensor:
    """``x * alpha + other * (1 - alpha)`` as cv2.addWeighted computes it.

    cv2 casts the weights to float32 and evaluates
    ``fma(x, alpha, other * beta)``: the float64 sum of the exact product
    and the float32 ``other * beta``, rounded once to float32, is the fused
    result bit for bit, which matters where it truncates to uint8.
    ``other`` broadcasts against ``x``.
    """
    term = other * _per_sample((1 - alpha).float())
    out = x.double().mul_(_per_sample(alpha.float().double()))
    return out.add_(term).float()


def _color(x: torch.Tensor, mag: torch.Tensor, pol: _Policy) -> torch.Tensor:
    """mmcv ``adjust_color``: cv2.addWeighted of uint8, which rounds."""
    out = _add_weighted(x, 1 + mag, _grey(x))
    return out.round_().clamp_(0, 255)


def _contrast(x: torch.Tensor, mag: torch.Tensor,
              pol: _Policy) -> torch.Tensor:
    """mmcv ``adjust_contrast``: blend with the rounded mean grey."""
    grey = _grey(x)
    mean = grey.sum(dim=(1, 2, 3), dtype=torch.float64) / grey[0].numel()
    mean = _per_sample(mean.round().float())
    return _add_weighted(x, 1 + mag, mean).clamp_(0, 255).floor_()


def _brightness(x: torch.Tensor, mag: torch.Tensor,
                pol: _Policy) -> torch.Tensor:
    """mmcv ``adjust_brightness``: scale, clip, truncate."""
    # fma(x, f, 0 * (1 - f)) is the float32 product
    out = x * _per_sample((1 + mag).float())
    return out.clamp_(0, 255).floor_()


def _sharpness(x: torch.Tensor, mag: torch.Tensor,
               pol: _Policy) -> torch.Tensor:
    """mmcv ``adjust_sharpness``: blend with cv2.filter2D's smoothed image.
    """
    # cv2's default border, reflect-101, is torch's 'reflect'
    mode = 'reflect' if min(x.shape[-2:]) > 1 else 'replicate'
    padded = F.pad(x, (1, 1, 1, 1), mode=mode)
    # the kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] as a 3 x 3 box sum plus
    # 4 x centre: sums of shifted slices stay exact integers on any device
    # (a cuDNN convolution may not)
    rows = padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]
    total = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    total.add_(x, alpha=4)
    # the 13ths are never halfway, so rounding the exact sum is cv2's
    smooth = torch.round(total / 13)
    return _add_weighted(x, 1 + mag, smooth).clamp_(0, 255).floor_()


_POINT_OPS = {
    'AutoContrast': _auto_contrast,
    'Equalize': _equalize,
    'Invert': _invert,
    'Posterize': _posterize,
    'Solarize': _solarize,
    'SolarizeAdd': _solarize_add,
    'ColorTransform': _color,
    'Contrast': _contrast,
    'Brightness': _brightness,
    'Sharpness': _sharpness,
}


# geometric operations --------------------------------------------------------
def _affine_matrix(pol: _Policy, mag: torch.Tensor,
                   size: Sequence[int]) -> torch.Tensor:
    """The ``n x 2 x 3`` float64 matrices mmcv hands cv2.warpAffine."""
    h, w = size
    one, zero = torch.ones_like(mag), torch.zeros_like(mag)
    if pol.type == 'Rotate':
        # cv2.getRotationMatrix2D(center, -angle, scale), in float64
        cx, cy = pol.center if pol.center is not None else \
            ((w - 1) * 0.5, (h - 1) * 0.5)
        angle = -mag * (math.pi / 180)
        alpha, beta = angle.cos() * pol.scale, angle.sin() * pol.scale
        rows = [[alpha, beta, (1 - alpha) * cx - beta * cy],
                [-beta, alpha, beta * cx + (1 - alpha) * cy]]
    else:
        # mmcv builds these matrices in float32
        if pol.type == 'Translate':
            mag = mag * (w if pol.direction == 'horizontal' else h)
        mag = mag.float().double()
        horizontal = pol.direction == 'horizontal'
        if pol.type == 'Shear':
            rows = [[one, mag, zero], [zero, one, zero]] if horizontal \
                else [[one, zero, zero], [mag, one, zero]]
        else:
            rows = [[one, zero, mag], [zero, one, zero]] if horizontal \
                else [[one, zero, zero], [zero, one, mag]]
    return torch.stack([torch.stack(row, -1) for row in rows], 1)


def _warp_affine(x: torch.Tensor, matrix: torch.Tensor, mode: str,
                 pad: torch.Tensor) -> torch.Tensor:
    """cv2.warpAffine with a constant border, per-sample matrices.

    Args:
        x (torch.Tensor): ``n x C x H x W`` integer-valued float32.
        matrix (torch.Tensor): ``n x 2 x 3`` float64 destination-from-source
            matrices (cv2's convention without ``WARP_INVERSE_MAP``).
        mode (str): 'nearest', 'bilinear' or 'bicubic'.
        pad (torch.Tensor): ``C`` fill values.

    Returns:
        torch.Tensor: The warped batch, rounded and saturated like cv2's
        uint8 output.
    """
    n, _, h, w = x.shape
    # cv2.invertAffineTransform, in float64
    a, b, c = matrix[:, 0].unbind(-1)
    d, e, f = matrix[:, 1].unbind(-1)
    det = a * e - b * d
    det = torch.where(det != 0, 1 / det, torch.zeros_like(det))
    m00, m01, m10, m11 = e * det, -b * det, -d * det, a * det
    m02, m12 = -m00 * c - m01 * f, -m10 * c - m11 * f
    # OpenCV 5's own kernel (not 5.1's IPP path; see BatchRandAugment)
    # maps each destination pixel in float32, as
    # fma(float(m00), x, float(m01 * y + m02)): the float64 sum of the exact
    # product and the row term, rounded once to float32, is that fma.
    xs = torch.arange(w, dtype=torch.float64, device=x.device)
    ys = torch.arange(h, dtype=torch.float64, device=x.device)
    grid = x.new_empty(n, h, w, 2)
    for i, (m_x, m_y, m_1) in enumerate(((m00, m01, m02), (m10, m11, m12))):
        col = m_x.float().double()[:, None] * xs
        row = (ys * m_y[:, None] + m_1[:, None]).float().double()
        grid[..., i] = col[:, None, :] + row[:, :, None]
    if mode == 'nearest':
        # cv2 rounds half to even, as torch.round does; the exact integer
        # then survives grid_sample's normalisation round trip
        grid.round_()
    # to grid_sample's [-1, 1] (align_corners=False: pixel i at (2i+1)/W-1)
    for i, size in enumerate((w, h)):
        grid[..., i].mul_(2).add_(1).div_(size).sub_(1)
    # zero padding of (x - pad) is cv2's constant border: every tap
    # outside the image reads the fill value
    pad = pad.view(1, -1, 1, 1)
    out = F.grid_sample(
        x - pad, grid, mode=mode, padding_mode='zeros', align_corners=False)
    return (out + pad).round_().clamp_(0, 255)


def _pad_values(pad_val: Union[Number, Sequence[Number]],
                channels: int) -> List[float]:
    """``pad_val`` as one fill value per channel."""
    if isinstance(pad_val, Number):
        values = [float(pad_val)] * channels
    else:
        values = [float(v) for v in pad_val]
        if channels == 1 and len(values) == 3:
            r, g, b = _GREY_RGB
            values = [
                math.floor((values[0] * r + values[1] * g + values[2] * b +
                            _GREY_SHIFT / 2) / _GREY_SHIFT)
            ]
        if len(values) != channels:
            raise ValueError(
                f'pad_val {tuple(pad_val)} has {len(values)} values for '
                f'{channels}-channel images.')
    return values
