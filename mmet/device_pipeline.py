"""The device input pipeline: the loader reads bytes, the model's device does
the rest.

At a low bandwidth B the model step runs several times faster than at full
size, and the CPU pipeline (decode, random-resized crop, RandAugment with
PIL) cannot keep up. Here the data workers only read the encoded files
(:class:`LoadImageBytes` + ``PackInputs``), and the data preprocessor
(:class:`DeviceAugmentPreprocessor`) decodes, crops, flips, augments,
erases and Fourier-crops whole batches on the device of the model: the GPU
where there is one, the CPU otherwise. mmpretrain's batch augments (Mixup,
CutMix) and normalisation then run as in ``ClsDataPreprocessor``.

:class:`~mmet.hooks.EfficientTrainHook` drives it like the CPU pipeline: it
sets B on its :class:`BatchFourierCrop` and m on its
:class:`~mmet.batch_randaug.BatchRandAugment`.
"""
import math
from types import SimpleNamespace
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from mmengine.fileio import get
from mmpretrain.datasets.transforms import (RandomCrop, RandomErasing,
                                            RandomResizedCrop)
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS, TRANSFORMS
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from .batch_randaug import BatchRandAugment
from .transforms import _spectrum_rows, _to_hw


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
    h, w = _to_hw(size)
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


class BatchFourierCrop:
    """The batched low-pass to B whose ``size`` the hook sets.

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

    def __init__(self, size: Union[int, Sequence[int]], mode: str = 'fft'):
        if mode not in self.MODES:
            raise ValueError(f'BatchFourierCrop mode must be one of '
                             f'{self.MODES}, got {mode!r}.')
        self.size, self.mode = size, mode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == 'fft':
            return fourier_crop_batch(x, self.size)
        h, w = _to_hw(self.size)
        if (h, w) == tuple(x.shape[-2:]):
            return x
        return F.interpolate(x, size=(h, w), mode='bilinear',
                             align_corners=False)

    def __repr__(self) -> str:
        extra = '' if self.mode == 'fft' else f", mode='{self.mode}'"
        return f'{self.__class__.__name__}(size={self.size}{extra})'


@TRANSFORMS.register_module()
class LoadImageBytes(BaseTransform):
    """Read an image file without decoding it, for the device pipeline.

    Pack the bytes with ``dict(type='PackInputs', input_key='img_bytes')``
    and collate with ``pseudo_collate``; :class:`DeviceAugmentPreprocessor`
    decodes them.

    Required Keys:

    - img_path

    Added Keys:

    - img_bytes (np.ndarray): the file's bytes, ``uint8``, one dimension.

    Args:
        backend_args (dict, optional): mmengine file backend arguments.
            Defaults to None (local files).
    """

    def __init__(self, backend_args: Optional[dict] = None):
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        data = get(results['img_path'], backend_args=self.backend_args)
        # a writable copy: torch refuses to wrap read-only buffers cleanly
        results['img_bytes'] = np.frombuffer(data, dtype=np.uint8).copy()
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(backend_args={self.backend_args})'


def _is_encoded(inputs) -> bool:
    """Whether a batch holds encoded images (1-D byte tensors)."""
    return isinstance(inputs, (list, tuple)) and len(inputs) > 0 and \
        inputs[0].dim() == 1


def _is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 2 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


@MODELS.register_module()
class DeviceAugmentPreprocessor(ClsDataPreprocessor):
    """Augment whole train batches on the model's device.

    The train loader delivers either encoded images (1-D ``uint8`` tensors
    from :class:`LoadImageBytes`, collated with ``pseudo_collate``) or
    decoded ones (``uint8`` images straight from the dataset, e.g. the
    in-memory MNIST family with only ``PackInputs`` in the pipeline). Each
    train batch goes through, in this order, as mmpretrain's train pipelines
    with the low-frequency crop last:

    1. decode, for encoded images (``torchvision.io.decode_jpeg`` on the GPU
       for JPEGs, the CPU decoder for other formats and CPU runs);
    2. the crop to ``crop_size``: by default a random-resized crop, with the
       boxes drawn by mmpretrain's ``RandomResizedCrop.rand_crop_params``
       (the CPU path's distribution, from the same ``numpy`` random state)
       and an antialiased bicubic resize; with ``crop_padding``, mmpretrain's
       ``RandomCrop`` (zero padding, offsets from its ``rand_crop_params``);
    3. horizontal flip with ``flip_prob``;
    4. :class:`~mmet.batch_randaug.BatchRandAugment` (``randaug``);
    5. random erasing in mmpretrain's ``'rand'`` mode (``erasing``);
    6. :class:`BatchFourierCrop` to the stage's B;
    7. ``ClsDataPreprocessor``: normalisation and batch augments.

    Outside training (the val and test loaders) batches go straight to
    step 7, so the standard eval pipelines keep working; so do floating
    point batches, taken as augmented already.

    Per sample, the work of steps 2-6 is the same as the CPU pipeline's;
    batched, it costs a fraction of the per-sample Python transforms and
    their transfer from the workers, which is what lets a low-B stage run at
    the model's pace (see ``tools/benchmark_curriculum.py``).

    Colours (``randaug`` pad values, the erasing fill) are in RGB order:
    decoded inputs are taken in the loader's order (BGR where ``to_rgb``,
    as ``ClsDataPreprocessor``) and turned to RGB first. ``mean`` and
    ``std`` keep ``ClsDataPreprocessor``'s meaning (the order after
    ``to_rgb``).

    Args:
        crop_size (int): The final input size; the curriculum's B is a
            fraction of it.
        crop_padding (int, optional): Crop as mmpretrain's
            ``RandomCrop(crop_size, padding=crop_padding)`` (CIFAR-style, for
            images of ``crop_size``) instead of the random-resized crop.
            Defaults to None.
        crop_ratio_range (Sequence[float]): Area range of the random-resized
            crop. Defaults to (0.08, 1.0).
        aspect_ratio_range (Sequence[float]): Aspect ratio range of the
            random-resized crop. Defaults to (3/4, 4/3).
        max_attempts (int): Attempts before the central crop, as
            ``RandomResizedCrop``. Defaults to 10.
        flip_prob (float): Horizontal flip probability. Defaults to 0.5.
        randaug (dict, optional): :class:`BatchRandAugment` arguments; None
            disables it. Defaults to None.
        erasing (dict, optional): ``dict(erase_prob=, min_area_ratio=,
            max_area_ratio=, aspect_range=, fill_color=, fill_std=)`` as
            mmpretrain's ``RandomErasing`` in ``'rand'`` mode; None disables
            it. Defaults to None.
        grayscale (bool): Decode to one channel. Defaults to False.
        low_pass (str): The batched low-pass to B: ``'fft'``, the Fourier
            crop (default), or ``'bilinear'`` (see :class:`BatchFourierCrop`).
        **kwargs: ``ClsDataPreprocessor`` arguments (mean, std, to_rgb,
            num_classes, batch_augments, ...).
    """

    def __init__(self,
                 crop_size: int,
                 crop_padding: Optional[int] = None,
                 crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10,
                 flip_prob: float = 0.5,
                 randaug: Optional[dict] = None,
                 erasing: Optional[dict] = None,
                 grayscale: bool = False,
                 low_pass: str = 'fft',
                 **kwargs):
        super().__init__(**kwargs)
        self.crop_size = crop_size
        self.crop_padding = crop_padding
        # the CPU transform itself draws the boxes: the same distribution
        if crop_padding is None:
            self.box_sampler = RandomResizedCrop(
                scale=crop_size,
                crop_ratio_range=tuple(crop_ratio_range),
                aspect_ratio_range=tuple(aspect_ratio_range),
                max_attempts=max_attempts)
        else:
            self.box_sampler = RandomCrop(crop_size, padding=crop_padding)
        self.flip_prob = flip_prob
        self.randaug = BatchRandAugment(**randaug) if randaug else None
        self.erasing = None
        if erasing:
            if erasing.get('mode', 'rand') != 'rand':
                raise ValueError(
                    "The device pipeline erases in RandomErasing's 'rand' "
                    f"mode only, got mode={erasing['mode']!r}.")
            # mmpretrain's transform checks the settings and gives the
            # defaults; erase() applies it batched
            self.erasing = RandomErasing(**dict(erasing, mode='rand'))
        self.mode = ImageReadMode.GRAY if grayscale else ImageReadMode.RGB
        self.fourier_crop = BatchFourierCrop(crop_size, mode=low_pass)

    def staged_transforms(self) -> List[object]:
        """The parts the curriculum drives: the Fourier crop and RandAugment.
        """
        return [t for t in (self.fourier_crop, self.randaug) if t is not None]

    @staticmethod
    def augments(inputs) -> bool:
        """Whether a train batch gets steps 1-6: encoded or ``uint8`` images.
        """
        return _is_encoded(inputs) or (
            inputs if isinstance(inputs, torch.Tensor) else inputs[0]
        ).dtype == torch.uint8

    def forward(self, data: dict, training: bool = False) -> dict:
        if training and self.augments(data['inputs']):
            images = self.augment(data['inputs'])
            if self.to_rgb and images.size(1) == 3:
                images = images.flip(1)  # the parent converts it back
            data = dict(data, inputs=images)
        elif _is_encoded(data['inputs']):
            raise RuntimeError(
                'DeviceAugmentPreprocessor got encoded images outside '
                'training. Val and test pipelines must decode '
                '(LoadImageFromFile, ResizeEdge, CenterCrop, PackInputs), as '
                'in mmpretrain.')
        return super().forward(data, training)

    # the steps ---------------------------------------------------------------
    def augment(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> torch.Tensor:
        """Steps 1-6: a train batch to a float RGB ``N x C x B x B`` batch.

        ``inputs``: encoded images (a list of 1-D ``uint8`` tensors), or
        decoded ones in the loader's channel order (a list of ``C x H x W``
        or a stacked ``N x C x H x W`` tensor).
        """
        if _is_encoded(inputs):
            images = self.decode(list(inputs))
        elif isinstance(inputs, torch.Tensor):  # default_collate
            images = inputs.to(self.device)
            if self.to_rgb and images.size(1) == 3:
                images = images.flip(1)  # BGR to RGB
        else:
            images = [x.to(self.device) for x in inputs]
            if self.to_rgb and images[0].size(0) == 3:
                images = [x.flip(0) for x in images]  # BGR to RGB
        if self.crop_padding is None:
            x = self.random_resized_crop(images)
        else:
            x = self.random_crop(images)
        x = self.flip(x)
        if self.randaug is not None:
            x = self.randaug(x)
        if self.erasing is not None:
            x = self.erase(x)
        return self.fourier_crop(x)

    def decode(self, encoded: List[torch.Tensor]) -> List[torch.Tensor]:
        """Decode to ``C x H x W`` uint8 images on the device."""
        encoded = [e.cpu() for e in encoded]
        device = self.device
        if device.type == 'cuda':
            jpeg = [i for i, e in enumerate(encoded) if _is_jpeg(e)]
            images = [None] * len(encoded)
            if jpeg:
                decoded = decode_jpeg([encoded[i] for i in jpeg],
                                      mode=self.mode, device=device)
                for i, img in zip(jpeg, decoded):
                    images[i] = img
            for i, img in enumerate(images):
                if img is None:
                    images[i] = decode_image(encoded[i],
                                             mode=self.mode).to(device)
            return images
        return [decode_image(e, mode=self.mode) for e in encoded]

    def crop_boxes(self, shapes: Sequence[Tuple[int, int]]
                   ) -> List[Tuple[int, int, int, int]]:
        """``(top, left, h, w)`` per image, as mmpretrain's RandomResizedCrop.
        """
        return [
            self.box_sampler.rand_crop_params(SimpleNamespace(shape=shape))
            for shape in shapes
        ]

    def random_resized_crop(self, images: List[torch.Tensor]) -> torch.Tensor:
        """Crop each image and resize it to ``crop_size`` (bicubic, AA)."""
        size = _to_hw(self.crop_size)
        boxes = self.crop_boxes([tuple(img.shape[-2:]) for img in images])
        # decoded images differ in size, so the resize runs per image
        out = torch.stack([
            F.interpolate(
                img[None, :, top:top + h, left:left + w].float(),
                size=size, mode='bicubic', align_corners=False,
                antialias=True)[0]
            for img, (top, left, h, w) in zip(images, boxes)
        ])
        return out.clamp_(0, 255)

    def random_crop(self, images: Union[torch.Tensor, Sequence[torch.Tensor]]
                    ) -> torch.Tensor:
        """Zero-pad by ``crop_padding`` and crop ``crop_size`` at random
        offsets, as mmpretrain's RandomCrop."""
        th, tw = _to_hw(self.crop_size)
        shapes = sorted({tuple(img.shape[-2:]) for img in images})
        if len(shapes) != 1 or shapes[0][0] < th or shapes[0][1] < tw:
            raise ValueError(
                'DeviceAugmentPreprocessor(crop_padding=...) needs images of '
                f'one size, at least crop_size={self.crop_size}; got '
                f'{shapes}. Use the random-resized crop (crop_padding=None) '
                'for images of varied sizes.')
        if not isinstance(images, torch.Tensor):
            images = torch.stack(list(images))
        p = self.crop_padding
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

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_prob <= 0:
            return x
        flip = torch.rand(x.shape[0], device=x.device) < self.flip_prob
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def erase(self, x: torch.Tensor) -> torch.Tensor:
        """mmpretrain's ``RandomErasing`` ('rand' mode), one box per image.
        """
        cfg = self.erasing
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
