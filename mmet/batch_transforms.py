"""The steps of the device pipeline, one small registered batch transform
each.

Each takes a train batch and returns it: ``N x C x H x W`` (or, before the
crop, a list of ``C x H x W`` images of varied sizes), RGB, on the model's
device. :class:`~mmet.device_pipeline.DeviceAugmentPreprocessor` composes
them in mmpretrain's train-pipeline order, as ``RandomBatchAugment``
composes Mixup and CutMix, and builds them from the same registry
(mmpretrain's ``BATCH_AUGMENTS``); they differ from Mixup and CutMix in
taking images only, without labels.

=========================  ===============================================
:class:`BatchDecode`       encoded or decoded ``uint8`` images to RGB on
                           the device
:class:`BatchRandomResizedCrop`  mmpretrain's ``RandomResizedCrop`` boxes,
                           antialiased bicubic resize
:class:`BatchRandomCrop`   mmpretrain's padded ``RandomCrop``
:class:`BatchFlip`         horizontal flip
``BatchRandAugment``       RandAugment (:mod:`mmet.batch_randaug`)
:class:`BatchRandomErasing`  mmpretrain's ``RandomErasing``, ``'rand'`` mode
:class:`BatchFourierCrop`  the low-pass to the stage's B
=========================  ===============================================

The crops draw their boxes with mmpretrain's own transforms, from the same
``numpy`` random state as the CPU pipeline, so the distribution is the
CPU path's.
"""
import math
from types import SimpleNamespace
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.datasets.transforms import (RandomCrop, RandomErasing,
                                            RandomResizedCrop)
from mmpretrain.registry import BATCH_AUGMENTS
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from .curriculum import Stage
from .sizes import at_bandwidth, hw, square
from .transforms import _spectrum_rows

Images = Union[torch.Tensor, Sequence[torch.Tensor]]


def fourier_crop_batch(x: torch.Tensor,
                       size: Union[int, Sequence[int]]) -> torch.Tensor:
    """:func:`~mmet.transforms.fourier_crop` of a ``N x C x H x W`` batch.

    The same real-input FFT computation as the per-image transform, in
    torch on ``x``'s device. Floating input keeps its dtype (half precision
    is transformed in float32); integer input is rounded and clipped to its
    range. A channels-last batch stays channels-last.

    Args:
        x (torch.Tensor): ``N x C x H x W`` (or ``C x H x W``).
        size (int | Sequence[int]): Output ``h`` (= ``w``) or ``(h, w)``,
            each no larger than the input.

    Returns:
        torch.Tensor: ``N x C x h x w``.
    """
    H, W = x.shape[-2:]
    h, w = hw(size)
    if h > H or w > W:
        raise ValueError(
            f'fourier_crop_batch: the output {h}x{w} is larger than the '
            f'{H}x{W} input; the bandwidth B must not exceed the crop size.')
    if (h, w) == (H, W):
        return x
    dtype = x.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    channels_last = x.dim() == 4 and x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous()
    rep, alt, neg = (torch.as_tensor(i, device=x.device)
                     for i in _spectrum_rows(H, h))
    cols = torch.fft.rfft(x.to(work), dim=-1, norm='forward')[..., :w // 2 + 1]
    spec = torch.fft.fft(cols, dim=-2, norm='forward')
    small = spec.index_select(-2, rep)
    if h % 2 == 0:
        small = 0.5 * (small + spec.index_select(-2, alt))
    if w % 2 == 0:
        # the Nyquist column: F(k, -w/2) = conj(F(-k, w/2)); see fourier_crop
        c = w // 2
        small[..., c] = 0.5 * (spec.index_select(-2, neg)[..., c].conj() +
                               spec.index_select(-2, alt)[..., c])
    out = torch.fft.irfft2(small, s=(h, w), dim=(-2, -1), norm='forward')
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        out = out.round_().clamp_(info.min, info.max)
    out = out.to(dtype)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


@BATCH_AUGMENTS.register_module()
class BatchFourierCrop:
    """The batched low-pass to B: a staged transform (:mod:`mmet.staged`).

    Args:
        size (int | Sequence[int]): The final (full) size; the curriculum
            lowers it to B. At full size it is a no-op.
        mode (str): ``'fft'`` (default): the exact crop of the spectrum,
            :func:`fourier_crop_batch`. ``'bilinear'``: plain bilinear
            down-sampling without antialiasing, as Composer's
            ``ProgressiveResizing`` does; it folds frequencies above B into
            the band, so it serves as the progressive-resizing ablation of
            the Fourier crop.
    """

    MODES = ('fft', 'bilinear')
    full_magnitude = None

    def __init__(self, size: Union[int, Sequence[int]], mode: str = 'fft'):
        if mode not in self.MODES:
            raise ValueError(f'BatchFourierCrop mode must be one of '
                             f'{self.MODES}, got {mode!r}.')
        self.size, self.mode = size, mode
        self.full_size = square(size)

    def set_stage(self, stage: Stage) -> None:
        """Keep the stage's bandwidth of the full size."""
        self.size = at_bandwidth(stage.bandwidth, self.full_size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == 'fft':
            return fourier_crop_batch(x, self.size)
        h, w = hw(self.size)
        if (h, w) == tuple(x.shape[-2:]):
            return x
        return F.interpolate(x, size=(h, w), mode='bilinear',
                             align_corners=False)

    def __repr__(self) -> str:
        extra = '' if self.mode == 'fft' else f", mode='{self.mode}'"
        return f'{self.__class__.__name__}(size={self.size}{extra})'


def is_encoded(inputs) -> bool:
    """Whether a batch holds encoded images (1-D byte tensors)."""
    return isinstance(inputs, (list, tuple)) and len(inputs) > 0 and \
        inputs[0].dim() == 1


def _is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 2 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


@BATCH_AUGMENTS.register_module()
class BatchDecode:
    """Bring a loader batch to RGB ``uint8`` images on a device.

    Encoded images (1-D ``uint8`` tensors from
    :class:`~mmet.device_pipeline.LoadImageBytes`) are decoded, with
    ``torchvision.io.decode_jpeg`` on the GPU for JPEGs and the CPU decoder
    for other formats and CPU runs. Decoded ones (a stacked ``N x C x H x
    W`` tensor from ``default_collate`` or a list of ``C x H x W``) are
    moved to the device and, with ``to_rgb``, turned from the loader's BGR
    to RGB, as ``ClsDataPreprocessor`` would.

    Args:
        to_rgb (bool): Decoded inputs are BGR (mmcv's order). Defaults to
            False.
        grayscale (bool): Decode to one channel. Defaults to False.
    """

    def __init__(self, to_rgb: bool = False, grayscale: bool = False):
        self.to_rgb = to_rgb
        self.mode = ImageReadMode.GRAY if grayscale else ImageReadMode.RGB

    def __call__(self, inputs: Images,
                 device: Union[str, torch.device] = 'cpu') -> Images:
        device = torch.device(device)
        if is_encoded(inputs):
            return self.decode(list(inputs), device)
        if isinstance(inputs, torch.Tensor):  # default_collate
            images = inputs.to(device)
            return images.flip(1) if self.to_rgb and images.size(1) == 3 \
                else images
        images = [x.to(device) for x in inputs]
        if self.to_rgb and images[0].size(0) == 3:
            images = [x.flip(0) for x in images]
        return images

    def decode(self, encoded: List[torch.Tensor],
               device: torch.device) -> List[torch.Tensor]:
        """Decode to ``C x H x W`` uint8 RGB (or grey) images on ``device``.
        """
        encoded = [e.cpu() for e in encoded]
        if device.type != 'cuda':
            return [decode_image(e, mode=self.mode) for e in encoded]
        jpeg = [i for i, e in enumerate(encoded) if _is_jpeg(e)]
        images = [None] * len(encoded)
        if jpeg:
            decoded = decode_jpeg([encoded[i] for i in jpeg], mode=self.mode,
                                  device=device)
            for i, img in zip(jpeg, decoded):
                images[i] = img
        for i, img in enumerate(images):
            if img is None:
                images[i] = decode_image(encoded[i],
                                         mode=self.mode).to(device)
        return images

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(to_rgb={self.to_rgb}, '
                f'grayscale={self.mode == ImageReadMode.GRAY})')


@BATCH_AUGMENTS.register_module()
class BatchRandomResizedCrop:
    """mmpretrain's ``RandomResizedCrop`` on a batch of varied sizes.

    The boxes come from ``RandomResizedCrop.rand_crop_params`` itself; each
    crop is resized to ``size`` with an antialiased bicubic resize (per
    image, since the images differ in size).

    Args:
        size (int | Sequence[int]): Output size.
        crop_ratio_range (Sequence[float]): Area range. Defaults to
            (0.08, 1.0).
        aspect_ratio_range (Sequence[float]): Aspect ratio range. Defaults
            to (3/4, 4/3).
        max_attempts (int): Attempts before the central crop. Defaults to
            10.
    """

    def __init__(self,
                 size: Union[int, Sequence[int]],
                 crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10):
        self.size = size
        self.box_sampler = RandomResizedCrop(
            scale=size,
            crop_ratio_range=tuple(crop_ratio_range),
            aspect_ratio_range=tuple(aspect_ratio_range),
            max_attempts=max_attempts)

    def boxes(self, shapes: Sequence[Tuple[int, int]]
              ) -> List[Tuple[int, int, int, int]]:
        """``(top, left, h, w)`` per image, as mmpretrain draws them."""
        return [
            self.box_sampler.rand_crop_params(SimpleNamespace(shape=shape))
            for shape in shapes
        ]

    def __call__(self, images: Images) -> torch.Tensor:
        size = hw(self.size)
        boxes = self.boxes([tuple(img.shape[-2:]) for img in images])
        out = torch.stack([
            F.interpolate(
                img[None, :, top:top + h, left:left + w].float(),
                size=size, mode='bicubic', align_corners=False,
                antialias=True)[0]
            for img, (top, left, h, w) in zip(images, boxes)
        ])
        return out.clamp_(0, 255)

    def __repr__(self) -> str:
        s = self.box_sampler
        return (f'{type(self).__name__}(size={self.size}, '
                f'crop_ratio_range={s.crop_ratio_range}, '
                f'aspect_ratio_range={s.aspect_ratio_range}, '
                f'max_attempts={s.max_attempts})')


@BATCH_AUGMENTS.register_module()
class BatchRandomCrop:
    """mmpretrain's ``RandomCrop(size, padding=padding)`` on a batch.

    Zero-pads by ``padding`` and crops ``size`` at offsets drawn by
    ``RandomCrop.rand_crop_params`` (CIFAR-style, for images of one size).

    Args:
        size (int | Sequence[int]): Output size.
        padding (int): Zero padding on each side. Defaults to 0.
    """

    def __init__(self, size: Union[int, Sequence[int]], padding: int = 0):
        self.size, self.padding = size, padding
        self.box_sampler = RandomCrop(size, padding=padding)

    def __call__(self, images: Images) -> torch.Tensor:
        th, tw = hw(self.size)
        shapes = sorted({tuple(img.shape[-2:]) for img in images})
        if len(shapes) != 1 or shapes[0][0] < th or shapes[0][1] < tw:
            raise ValueError(
                'DeviceAugmentPreprocessor(crop_padding=...) needs images of '
                f'one size, at least crop_size={self.size}; got {shapes}. '
                'Use the random-resized crop (crop_padding=None) for images '
                'of varied sizes.')
        if not isinstance(images, torch.Tensor):
            images = torch.stack(list(images))
        p = self.padding
        x = F.pad(images.float(), (p, p, p, p))
        padded = SimpleNamespace(shape=x.shape[-2:])
        offsets = torch.tensor(
            [self.box_sampler.rand_crop_params(padded)[:2]
             for _ in range(x.shape[0])], device=x.device)
        rows = offsets[:, :1] + torch.arange(th, device=x.device)
        cols = offsets[:, 1:] + torch.arange(tw, device=x.device)
        n = torch.arange(x.shape[0], device=x.device)
        # out[n, :, i, j] = x[n, :, rows[n, i], cols[n, j]]
        return x.permute(0, 2, 3, 1)[n[:, None, None], rows[:, :, None],
                                     cols[:, None, :]].permute(
                                         0, 3, 1, 2).contiguous()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size}, ' \
            f'padding={self.padding})'


@BATCH_AUGMENTS.register_module()
class BatchFlip:
    """Horizontal flip of each image with probability ``prob``.

    Args:
        prob (float): Flip probability. Defaults to 0.5.
    """

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.prob <= 0:
            return x
        flip = torch.rand(x.shape[0], device=x.device) < self.prob
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob})'


@BATCH_AUGMENTS.register_module()
class BatchRandomErasing:
    """mmpretrain's ``RandomErasing`` in ``'rand'`` mode, one box per image.

    Args:
        **kwargs: ``RandomErasing`` arguments (``erase_prob``,
            ``min_area_ratio``, ``max_area_ratio``, ``aspect_range``,
            ``fill_color``, ``fill_std``); mmpretrain's transform checks
            them and gives the defaults. Fill colours are RGB.
    """

    def __init__(self, **kwargs):
        if kwargs.get('mode', 'rand') != 'rand':
            raise ValueError(
                "The device pipeline erases in RandomErasing's 'rand' mode "
                f"only, got mode={kwargs['mode']!r}.")
        self.settings = RandomErasing(**dict(kwargs, mode='rand'))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.settings
        n, c, H, W = x.shape
        dev = x.device
        on = torch.rand(n, device=dev) < cfg.erase_prob
        lo, hi = (math.log(a) for a in cfg.aspect_range)
        aspect = torch.exp(torch.empty(n, device=dev).uniform_(lo, hi))
        area = H * W * torch.empty(n, device=dev).uniform_(
            cfg.min_area_ratio, cfg.max_area_ratio)
        h = torch.sqrt(area * aspect).round().clamp(max=H)
        w = torch.sqrt(area / aspect).round().clamp(max=W)
        top = (torch.rand(n, device=dev) * (H - h)).floor()
        left = (torch.rand(n, device=dev) * (W - w)).floor()
        rows = torch.arange(H, device=dev)[None, :, None]
        cols = torch.arange(W, device=dev)[None, None, :]
        box = ((rows >= top[:, None, None]) &
               (rows < (top + h)[:, None, None]) &
               (cols >= left[:, None, None]) &
               (cols < (left + w)[:, None, None]) & on[:, None, None])
        if cfg.fill_std is None:
            fill = torch.empty_like(x).uniform_(0, 256).floor_()
        else:
            color, std = (torch.tensor(v[:c], device=dev,
                                       dtype=x.dtype).view(1, c, 1, 1)
                          for v in (cfg.fill_color, cfg.fill_std))
            fill = (color + std * torch.randn_like(x)).trunc_()
        return torch.where(box[:, None], fill.clamp_(0, 255), x)

    def __repr__(self) -> str:
        s = self.settings
        return (f'{type(self).__name__}(erase_prob={s.erase_prob}, '
                f'min_area_ratio={s.min_area_ratio}, '
                f'max_area_ratio={s.max_area_ratio}, '
                f'aspect_range={s.aspect_range}, fill_color={s.fill_color}, '
                f'fill_std={s.fill_std})')
