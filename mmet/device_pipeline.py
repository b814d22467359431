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

It is a staged transform (:mod:`mmet.staged`): the curriculum sets B on its
:class:`~mmet.batch_transforms.BatchFourierCrop` and m on its
:class:`~mmet.batch_randaug.BatchRandAugment` through its ``set_stage``.
Its steps are the small batch transforms of :mod:`mmet.batch_transforms`.
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.fileio import get
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import BATCH_AUGMENTS, MODELS, TRANSFORMS

from .batch_randaug import BatchRandAugment
from .batch_transforms import BatchDecode, BatchFourierCrop, is_encoded
from .curriculum import Stage


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


@MODELS.register_module()
class DeviceAugmentPreprocessor(ClsDataPreprocessor):
    """Augment whole train batches on the model's device.

    The train loader delivers either encoded images (1-D ``uint8`` tensors
    from :class:`LoadImageBytes`, collated with ``pseudo_collate``) or
    decoded ones (``uint8`` images straight from the dataset, e.g. the
    in-memory MNIST family with only ``PackInputs`` in the pipeline). Each
    train batch goes through, in this order, as mmpretrain's train pipelines
    with the low-frequency crop last. Each step is a registered batch
    transform of :mod:`mmet.batch_transforms` (in ``steps``, after the
    decode):

    1. :class:`~mmet.batch_transforms.BatchDecode`: encoded images decoded
       (``torchvision.io.decode_jpeg`` on the GPU for JPEGs), decoded ones
       moved to the device; RGB from here on;
    2. the crop to ``crop_size``: by default
       :class:`~mmet.batch_transforms.BatchRandomResizedCrop` (mmpretrain's
       ``RandomResizedCrop`` boxes, from the same ``numpy`` random state as
       the CPU path, and an antialiased bicubic resize); with
       ``crop_padding``, :class:`~mmet.batch_transforms.BatchRandomCrop`
       (mmpretrain's padded ``RandomCrop``);
    3. :class:`~mmet.batch_transforms.BatchFlip` with ``flip_prob``;
    4. :class:`~mmet.batch_randaug.BatchRandAugment` (``randaug``);
    5. :class:`~mmet.batch_transforms.BatchRandomErasing` (``erasing``);
    6. :class:`~mmet.batch_transforms.BatchFourierCrop` to the stage's B;
    7. ``ClsDataPreprocessor``: normalisation and batch augments.

    Outside training (the val and test loaders) batches go straight to
    step 7, so the standard eval pipelines keep working; so do floating
    point batches, taken as augmented already.

    Per sample, the work of steps 2-6 is the same as the CPU pipeline's;
    batched, it costs a fraction of the per-sample Python transforms and
    their transfer from the workers, which is what lets a low-B stage run at
    the model's pace (see ``tools/benchmark_curriculum.py``).

    Colours (``randaug`` pad values, the erasing fill) are in RGB order:
    step 1 takes decoded inputs in the loader's order (BGR where ``to_rgb``,
    as ``ClsDataPreprocessor``) and turns them to RGB once; step 7 then
    skips its own swap. ``mean`` and ``std`` keep ``ClsDataPreprocessor``'s
    meaning (the order after ``to_rgb``).

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
            crop (default), or ``'bilinear'`` (see
            :class:`~mmet.batch_transforms.BatchFourierCrop`).
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
        self.decode = BatchDecode(to_rgb=self.to_rgb, grayscale=grayscale)
        if crop_padding is None:
            crop = dict(type='BatchRandomResizedCrop', size=crop_size,
                        crop_ratio_range=crop_ratio_range,
                        aspect_ratio_range=aspect_ratio_range,
                        max_attempts=max_attempts)
        else:
            crop = dict(type='BatchRandomCrop', size=crop_size,
                        padding=crop_padding)
        steps = [crop, dict(type='BatchFlip', prob=flip_prob)]
        if randaug:
            steps.append(dict(type='BatchRandAugment', **randaug))
        if erasing:
            steps.append(dict(type='BatchRandomErasing', **erasing))
        steps.append(dict(type='BatchFourierCrop', size=crop_size,
                          mode=low_pass))
        # steps 2-6, built as RandomBatchAugment builds Mixup and CutMix
        self.steps = [BATCH_AUGMENTS.build(s) for s in steps]
        # the two the curriculum drives
        self.randaug = next((s for s in self.steps
                             if isinstance(s, BatchRandAugment)), None)
        self.fourier_crop = next(s for s in self.steps
                                 if isinstance(s, BatchFourierCrop))

    # the staged-transform protocol (mmet.staged)
    @property
    def full_size(self) -> int:
        """The final input size, of which the curriculum takes its B."""
        return self.fourier_crop.full_size

    @property
    def full_magnitude(self) -> Optional[float]:
        """The configured RandAugment magnitude (None without one)."""
        return self.randaug.full_magnitude if self.randaug else None

    def set_stage(self, stage: Stage) -> None:
        """The stage's B on the Fourier crop and its m on RandAugment."""
        self.fourier_crop.set_stage(stage)
        if self.randaug is not None:
            self.randaug.set_stage(stage)

    @staticmethod
    def augments(inputs) -> bool:
        """Whether a train batch gets steps 1-6: encoded or ``uint8`` images.
        """
        return is_encoded(inputs) or (
            inputs if isinstance(inputs, torch.Tensor) else inputs[0]
        ).dtype == torch.uint8

    def augment_batch(self, data: dict) -> dict:
        """Steps 1-6 of a train batch ahead of the model step (see
        :mod:`mmet.prefetch`): the batch with augmented inputs, marked so
        that :meth:`forward` only normalises it.

        Raises:
            RuntimeError: inputs neither encoded nor ``uint8``, which the
                curriculum could not reach.
        """
        if not self.augments(data['inputs']):
            raise RuntimeError(
                'DeviceAugmentPreprocessor got train images that are '
                'neither encoded nor uint8, which it takes as augmented '
                'already: the curriculum would not reach them. Deliver uint8 '
                'images (no Normalize or float conversion in the train '
                'pipeline) or encoded ones (LoadImageBytes + '
                "PackInputs(input_key='img_bytes')).")
        return dict(data, inputs=self.augment(data['inputs']), augmented=True)

    def forward(self, data: dict, training: bool = False) -> dict:
        if data.get('augmented'):  # by augment_batch, RGB already
            data = {k: v for k, v in data.items() if k != 'augmented'}
            return self._normalize_rgb(data, training)
        if training and self.augments(data['inputs']):
            data = dict(data, inputs=self.augment(data['inputs']))
            return self._normalize_rgb(data, training)
        if is_encoded(data['inputs']):
            raise RuntimeError(
                'DeviceAugmentPreprocessor got encoded images outside '
                'training. Val and test pipelines must decode '
                '(LoadImageFromFile, ResizeEdge, CenterCrop, PackInputs), as '
                'in mmpretrain.')
        return super().forward(data, training)

    def augment(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> torch.Tensor:
        """Steps 1-6: a train batch to a float RGB ``N x C x B x B`` batch.

        ``inputs``: encoded images (a list of 1-D ``uint8`` tensors), or
        decoded ones in the loader's channel order (a list of ``C x H x W``
        or a stacked ``N x C x H x W`` tensor).
        """
        x = self.decode(inputs, self.device)
        for step in self.steps:
            x = step(x)
        return x

    def _normalize_rgb(self, data: dict, training: bool) -> dict:
        """Step 7 on a batch that is RGB already: ``ClsDataPreprocessor``
        without its channel swap (``to_rgb`` speaks of the loader's order,
        which :class:`BatchDecode` turned to RGB)."""
        to_rgb, self.to_rgb = self.to_rgb, False
        try:
            return super().forward(data, training)
        finally:
            self.to_rgb = to_rgb
