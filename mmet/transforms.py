"""Data transforms that the EfficientTrain curriculum drives.

Each is a staged transform (:mod:`mmet.staged`): it declares its full size
or full magnitude (what it was configured with) and takes a stage with
``set_stage``. Their state is plain attributes (``size``, ``scale`` and
``magnitude_level``), so they pickle into data workers like any other
transform; :class:`~mmet.hooks.EfficientTrainHook` restarts the workers at
a stage switch so that they see it.
"""
from functools import lru_cache
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.fft
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import RandAugment, RandomResizedCrop
from mmpretrain.registry import TRANSFORMS

from .curriculum import Stage
from .sizes import at_bandwidth, hw, square
from .staged import check_magnitude


@lru_cache(maxsize=64)
def _spectrum_rows(n_in: int, n_out: int) -> Tuple[np.ndarray, ...]:
    """Row indices that gather a centred ``n_out`` crop from an ``n_in`` DFT.

    Bin ``k`` of the small grid holds frequency ``rep[k]`` of the large one:
    ``-(n_out // 2) .. n_out - n_out // 2 - 1``, i.e. the centred block of
    ``fftshift``. Taking the real part of the inverse transform replaces each
    bin by its Hermitian average. That is the identity for every bin except
    the Nyquist bin of an even ``n_out``, which becomes the mean of the
    frequencies ``-n_out/2`` and ``+n_out/2``; ``alt`` holds the second one.
    ``neg`` is ``-rep`` (used by the Nyquist column, see ``fourier_crop``).
    """
    k = np.arange(n_out)
    rep = np.where(k < n_out - n_out // 2, k, k - n_out)
    alt = rep.copy()
    if n_out % 2 == 0:
        alt[n_out // 2] = n_out // 2
    return rep % n_in, alt % n_in, (-rep) % n_in


def fourier_crop(img: np.ndarray, size: Union[int, Sequence[int]]
                 ) -> np.ndarray:
    """Keep the central ``size`` block of an image's centred spectrum.

    Exactly ``Re(ifft2(ifftshift(crop(fftshift(fft2(img))))) * hw / HW)``
    (EfficientTrain, Appendix C), computed with real-input FFTs: the columns
    come from one ``rfft`` over the width, and only the kept columns are
    transformed over the height.

    Args:
        img (np.ndarray): ``H x W`` or ``H x W x C``, any real dtype.
        size (int | Sequence[int]): Output ``h`` (= ``w``) or ``(h, w)``,
            each no larger than the input.

    Returns:
        np.ndarray: ``h x w (x C)`` in float32, or float64 for float64 input.
    """
    H, W = img.shape[:2]
    h, w = hw(size)
    dtype = np.float64 if img.dtype == np.float64 else np.float32
    x = img.astype(dtype, copy=False)
    # forward normalisation on both passes gives the (hw / HW) * (1 / hw)
    # factor of the definition; the inverse is then unnormalised.
    cols = scipy.fft.rfft(x, axis=1, norm='forward')[:, :w // 2 + 1]
    spec = scipy.fft.fft(cols, axis=0, norm='forward', overwrite_x=True)
    rep, alt, neg = _spectrum_rows(H, h)
    if h % 2:
        small = spec[rep]
    else:
        small = 0.5 * (spec[rep] + spec[alt])
    if w % 2 == 0:
        # The Nyquist column holds frequency -w/2, which rfft does not store:
        # F(k, -w/2) = conj(F(-k, w/2)). Hermitian-average it with +w/2.
        c = w // 2
        small[:, c] = 0.5 * (np.conj(spec[neg, c]) + spec[alt, c])
    return scipy.fft.irfft2(
        small, s=(h, w), axes=(0, 1), norm='forward').astype(dtype, copy=False)


def lanczos_resize(img: np.ndarray, size: Union[int, Sequence[int]]
                   ) -> np.ndarray:
    """Down-sample with Pillow's Lanczos filter (a = 3), as EfficientTrain++.

    The official ET++ code inserts ``Resize(B, LANCZOS)`` after the full-size
    augmentation; torchvision runs it through Pillow, whose filter support
    widens with the down-sampling factor, so it is an anti-aliased windowed
    sinc: a cheap approximation of the exact low-pass of
    :func:`fourier_crop`. (OpenCV's ``INTER_LANCZOS4`` does not widen its
    kernel when shrinking and aliases; see ``tools/benchmark_lowpass.py``.)

    Args:
        img (np.ndarray): ``H x W`` or ``H x W x C``. ``uint8`` images with
            1, 3 or 4 channels are resized as such (rounded by Pillow);
            anything else channel by channel in float32.
        size (int | Sequence[int]): Output ``h`` (= ``w``) or ``(h, w)``.

    Returns:
        np.ndarray: ``h x w (x C)``, ``uint8`` for such input, else float32.
    """
    from PIL import Image
    h, w = hw(size)
    if img.dtype == np.uint8 and (img.ndim == 2 or img.shape[2] in (1, 3, 4)):
        squeeze = img.ndim == 3 and img.shape[2] == 1
        src = img[..., 0] if squeeze else img
        out = np.asarray(Image.fromarray(src).resize((w, h), Image.LANCZOS))
        return out[..., None] if squeeze else out
    x = img.astype(np.float32, copy=False)
    planes = x[..., None] if x.ndim == 2 else x
    out = np.stack([
        np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]),
                                   mode='F').resize((w, h), Image.LANCZOS))
        for c in range(planes.shape[2])
    ], axis=-1)
    return out[..., 0] if x.ndim == 2 else out


@TRANSFORMS.register_module()
class FourierCrop(BaseTransform):
    """Low-frequency crop: keep the central ``size`` block of the spectrum.

    The output is a ``size`` image that holds exactly the low-frequency band
    of the input and nothing else, unlike pixel-space down-sampling, which
    folds high frequencies into the low band (EfficientTrain, Prop. 1). Place
    it after the full-size augmentations, as the official code does.
    The curriculum sets ``size`` per stage (``set_stage``).

    Required Keys:

    - img

    Modified Keys:

    - img
    - img_shape

    Added Keys:

    - fourier_crop_size

    Args:
        size (int | Sequence[int]): Output size ``h`` (= ``w``) or ``(h, w)``.
            In a curriculum this is the final (full) size; the hook lowers it
            in early stages.
        mode (str): ``'fft'`` (default): the exact crop of the spectrum.
            ``'lanczos'``: EfficientTrain++'s cheaper approximation, a
            Pillow Lanczos resize (:func:`lanczos_resize`); it attenuates
            the top of the band and lets a little energy from above the
            cut-off through. The hook drives ``size`` the same way in both.

    Notes:
        The output keeps the input's dtype. Integer images are rounded and
        clipped to their dtype's range (the exact crop can overshoot it
        slightly near edges); float images are returned unclipped, like the
        official code. A ``size`` equal to the image is a no-op; a ``size``
        larger than the image is an error, since there is no band to keep.
    """

    MODES = ('fft', 'lanczos')

    full_magnitude = None

    def __init__(self, size: Union[int, Sequence[int]], mode: str = 'fft'):
        self.size = self._check_size(size)
        self.full_size = square(self.size)
        if mode not in self.MODES:
            raise ValueError(
                f'FourierCrop mode must be one of {self.MODES}, got '
                f'{mode!r}.')
        self.mode = mode

    @staticmethod
    def _check_size(size):
        try:
            h, w = hw(size)
        except (TypeError, ValueError):
            raise ValueError(
                f'FourierCrop size must be an int or (h, w), got {size!r}.'
            ) from None
        if h < 1 or w < 1:
            raise ValueError(f'FourierCrop size must be positive, got {size}.')
        return size if isinstance(size, int) else (h, w)

    def set_stage(self, stage: Stage) -> None:
        """Keep the stage's bandwidth of the full size."""
        self.size = at_bandwidth(stage.bandwidth, self.full_size)

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        path = results.get('img_path', 'no img_path')
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise ValueError(
                f'FourierCrop expects an H x W or H x W x C numpy image, got '
                f'{type(img).__name__} of shape {getattr(img, "shape", None)} '
                f'({path}). Put it before PackInputs, which makes tensors.')
        H, W = img.shape[:2]
        h, w = hw(self.size)
        if h > H or w > W:
            # a C x H x W array passes as a 3-pixel-high image: say so
            hint = (' The image looks channel-first (C x H x W); the '
                    'pipeline expects H x W x C.' if img.ndim == 3 and
                    H in (1, 3, 4) and img.shape[2] > 4 else '')
            raise ValueError(
                f'FourierCrop to {h}x{w} got a {H}x{W} image ({path}).{hint} '
                'The crop keeps a band of the spectrum, so it can only '
                'shrink: put a resize or crop to the full size (e.g. '
                'RandomResizedCrop(scale=...)) before FourierCrop, or lower '
                'the curriculum bandwidth.')
        if (h, w) != (H, W) and self.mode == 'lanczos':
            out = lanczos_resize(img, (h, w))
            if np.issubdtype(img.dtype, np.integer) and out.dtype != img.dtype:
                info = np.iinfo(img.dtype)
                out = np.clip(np.rint(out), info.min, info.max)
            results['img'] = out.astype(img.dtype, copy=False)
        elif (h, w) != (H, W):
            out = fourier_crop(img, (h, w))
            if np.issubdtype(img.dtype, np.integer):
                info = np.iinfo(img.dtype)
                out = np.clip(np.rint(out), info.min, info.max)
            results['img'] = out.astype(img.dtype, copy=False)
        results['img_shape'] = (h, w)
        results['fourier_crop_size'] = (h, w)
        return results

    def __repr__(self) -> str:
        mode = self.mode
        extra = '' if mode == 'fft' else f", mode='{mode}'"
        return f'{self.__class__.__name__}(size={self.size}{extra})'


@TRANSFORMS.register_module()
class StagedRandAug(RandAugment):
    """RandAugment whose magnitude a curriculum sets per stage.

    mmpretrain's :class:`RandAugment` fixes the magnitude of each policy when
    it is built. This subclass keeps ``magnitude_level`` as the single source
    of truth and hands it to the chosen policies on each call, so the hook
    can change it between epochs.

    Required Keys:

    - img

    Modified Keys:

    - img
    - img_shape

    Added Keys:

    - randaug_magnitude

    Args:
        magnitude_level (float): Magnitude on the 0-``total_level`` scale. In
            a curriculum write the final stage's value; the hook sets each
            stage's m (and warns where the final one differs). ``0``
            disables the transform entirely, so early stages see
            unaugmented images (the magnitude-free policies such as
            Equalize would otherwise still fire).
        policies (str | list[dict]): As in :class:`RandAugment`. Defaults to
            ``'timm_increasing'``.
        num_policies (int): Policies applied per image. Defaults to 2.
        magnitude_std (float | str): Magnitude noise, as in
            :class:`RandAugment`. Defaults to 0.5.
        **kwargs: Other arguments of :class:`RandAugment` (``total_level``,
            ``hparams``).
    """

    def __init__(self,
                 magnitude_level: float = 9,
                 policies: Union[str, list] = 'timm_increasing',
                 num_policies: int = 2,
                 magnitude_std: Union[float, str] = 0.5,
                 **kwargs):
        super().__init__(
            policies=policies,
            num_policies=num_policies,
            magnitude_level=magnitude_level,
            magnitude_std=magnitude_std,
            **kwargs)
        check_magnitude(self, magnitude_level, self.total_level)
        self.full_magnitude = float(magnitude_level)

    full_size = None

    def set_stage(self, stage: Stage) -> None:
        """Augment at the stage's m."""
        check_magnitude(self, stage.magnitude, self.total_level)
        self.magnitude_level = stage.magnitude

    def transform(self, results: Dict) -> Optional[Dict]:
        img = results['img']
        gray = self._is_gray(img, results)
        level = self.magnitude_level
        results['randaug_magnitude'] = level
        if level == 0:
            return results
        for t in self.transforms:
            if getattr(t, 'magnitude_range', None) is not None:
                t.magnitude_level = level
        if not gray:
            return super().transform(results)
        # mmpretrain's colour policies (AutoContrast, Equalize, Contrast,
        # ColorTransform) index three channels; run them on a grey RGB
        # image, whose channels stay equal, and keep the input's layout.
        results['img'] = np.repeat(img.reshape(img.shape[:2] + (1, )), 3, 2)
        results = super().transform(results)
        if results is not None:
            out = results['img'][..., 0]
            results['img'] = np.ascontiguousarray(
                out if img.ndim == 2 else out[..., None])
        return results

    @staticmethod
    def _is_gray(img: np.ndarray, results: Dict) -> bool:
        """True for ``H x W`` or ``H x W x 1``; refuse other non-RGB shapes.

        Raises:
            ValueError: For any channel count but 1 or 3 (e.g. RGBA), which
                some policies would crash on and others silently drop.
        """
        if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
            return True
        if img.ndim == 3 and img.shape[2] == 3:
            return False
        raise ValueError(
            f'StagedRandAug needs an H x W (x 1) or H x W x 3 image, got '
            f"shape {img.shape} ({results.get('img_path', 'no img_path')}). "
            'For RGBA images load them with LoadImageFromFile('
            "color_type='color') (the default), which drops the alpha "
            'channel.')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'magnitude_level={self.magnitude_level}, '
                f'num_policies={self.num_policies}, '
                f'magnitude_std={self.magnitude_std}, '
                f'policies={len(self.policies)})')


@TRANSFORMS.register_module()
class StagedRandomResizedCrop(RandomResizedCrop):
    """RandomResizedCrop whose output size a curriculum sets per stage.

    The cheap data path of a stage at B: the random crop is resized straight
    to B x B, so every later augmentation (flip, RandAugment, erasing) runs
    on B x B pixels instead of on the full size. The crop box is drawn
    exactly as in :class:`RandomResizedCrop` (it depends on the input image
    only, not on the output size), so the distribution of crops is
    unchanged; only the final resize targets B instead of the full size.

    The down-sampling is the low-pass: use ``backend='pillow'``, whose
    resize widens its filter by the scale factor (antialiased, like the
    Lanczos of EfficientTrain++), or ``interpolation='area'`` with cv2.
    cv2's bilinear/bicubic kernels do not widen on down-scaling and alias,
    so they are refused.

    The curriculum sets ``scale`` per stage (``set_stage``), relative to
    the configured (final) ``scale``. A :class:`FourierCrop`
    later in the pipeline then receives B x B and is a no-op; it may stay.

    Required Keys:

    - img

    Modified Keys:

    - img
    - img_shape

    Args:
        scale (int | Sequence[int]): The final (full-size) output size.
        backend (str): ``'pillow'`` (default here) or ``'cv2'`` with
            ``interpolation='area'``.
        interpolation (str): Defaults to ``'bicubic'``.
        **kwargs: Other arguments of :class:`RandomResizedCrop`.
    """

    def __init__(self,
                 scale: Union[int, Sequence[int]],
                 backend: str = 'pillow',
                 interpolation: str = 'bicubic',
                 **kwargs):
        if backend != 'pillow' and interpolation != 'area':
            raise ValueError(
                f'StagedRandomResizedCrop(backend={backend!r}, '
                f'interpolation={interpolation!r}) would alias when it '
                "shrinks to low B: use backend='pillow' (antialiased) or "
                "interpolation='area'.")
        super().__init__(
            scale, backend=backend, interpolation=interpolation, **kwargs)
        self.full_size = square(self.scale)

    full_magnitude = None

    def set_stage(self, stage: Stage) -> None:
        """Resize the crop to the stage's bandwidth of the full size."""
        self.scale = hw(at_bandwidth(stage.bandwidth, self.full_size))
