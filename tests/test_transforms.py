"""FourierCrop math, dtypes and errors; StagedRandAug's magnitude control."""
import numpy as np
import pytest

from mmet.transforms import FourierCrop, StagedRandAug, fourier_crop


def reference_crop(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """docs/method.md §1 in float64: centred DFT, central block, scale."""
    H, W = x.shape[:2]
    axes = (0, 1)
    F = np.fft.fftshift(np.fft.fft2(x.astype(np.float64), axes=axes), axes)
    top, left = H // 2 - h // 2, W // 2 - w // 2
    block = F[top:top + h, left:left + w] * (h * w) / (H * W)
    return np.fft.ifft2(np.fft.ifftshift(block, axes), axes=axes).real


def natural_like(shape, seed=0):
    """Smooth image plus noise and sharp edges: energy at all frequencies."""
    rng = np.random.default_rng(seed)
    H, W = shape[:2]
    yy, xx = np.mgrid[:H, :W]
    base = 128 + 60 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    base[H // 3:H // 2, :] += 50  # an edge
    img = base[..., None] if len(shape) == 3 else base
    img = img + rng.normal(0, 20, shape)
    return np.clip(img, 0, 255)


@pytest.mark.parametrize('in_shape, out_hw', [
    ((224, 224, 3), (160, 160)),
    ((224, 224, 3), (96, 96)),
    ((31, 31, 3), (17, 17)),     # odd -> odd
    ((32, 32), (20, 20)),        # grayscale 2-D, even -> even
    ((33, 32, 1), (20, 21)),     # odd/even mixed, one channel
    ((40, 64, 3), (24, 30)),     # non-square
    ((28, 28), (28, 20)),        # one axis uncropped
])
def test_matches_float64_reference(in_shape, out_hw):
    x = natural_like(in_shape)
    ref = reference_crop(x, *out_hw)
    out64 = fourier_crop(x, out_hw)
    assert out64.shape == ref.shape
    np.testing.assert_allclose(out64, ref, atol=1e-9)
    out32 = fourier_crop(x.astype(np.float32), out_hw)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref, atol=2e-3)


@pytest.mark.parametrize('H, h', [(224, 160), (28, 20), (31, 16), (30, 15)])
def test_output_spectrum_is_scaled_central_block(H, h):
    """Prop. 1.1: the output holds exactly the input's low band."""
    x = natural_like((H, H))
    out = fourier_crop(x, h)
    F_in = np.fft.fftshift(np.fft.fft2(x))
    F_out = np.fft.fftshift(np.fft.fft2(out))
    c, r = H // 2, h // 2
    block = F_in[c - r:c - r + h, c - r:c - r + h] * (h * h) / (H * H)
    if h % 2 == 0:  # the real part averages the Nyquist bin's two aliases
        inner = (slice(1, None), slice(1, None))
        np.testing.assert_allclose(F_out[inner], block[inner], atol=1e-6)
    else:
        np.testing.assert_allclose(F_out, block, atol=1e-6)


def test_differs_from_pixel_downsampling():
    """Bilinear resize leaks high frequencies into the band; the crop not."""
    import cv2
    x = natural_like((64, 64))
    ref_band = np.fft.fftshift(np.fft.fft2(x))[16:48, 16:48] / 4
    crop_err = np.abs(np.fft.fftshift(np.fft.fft2(fourier_crop(x, 32)))
                      [1:, 1:] - ref_band[1:, 1:]).max()
    lin = cv2.resize(x.astype(np.float32), (32, 32),
                     interpolation=cv2.INTER_LINEAR)
    lin_err = np.abs(np.fft.fftshift(np.fft.fft2(lin))[1:, 1:] -
                     ref_band[1:, 1:]).max()
    assert crop_err < 1e-6 < 1.0 < lin_err


def test_transform_keeps_uint8_rounded_and_clipped():
    x = natural_like((64, 48, 3)).astype(np.uint8)
    results = FourierCrop(size=(32, 24))(dict(img=x, img_shape=x.shape[:2]))
    out = results['img']
    assert out.dtype == np.uint8 and out.shape == (32, 24, 3)
    assert results['img_shape'] == (32, 24)
    ref = np.clip(np.rint(reference_crop(x, 32, 24)), 0, 255)
    assert np.abs(out.astype(int) - ref).max() <= 1  # float32 rounding ties


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.uint16])
def test_transform_keeps_dtype(dtype):
    x = (natural_like((30, 30, 3)) * (200 if dtype == np.uint16 else 1))
    x = x.astype(dtype)
    out = FourierCrop(size=20)(dict(img=x))['img']
    assert out.dtype == dtype and out.shape == (20, 20, 3)


def test_equal_size_is_noop_and_larger_is_error():
    x = natural_like((24, 24, 3)).astype(np.uint8)
    out = FourierCrop(size=24)(dict(img=x.copy()))
    assert np.array_equal(out['img'], x)
    with pytest.raises(ValueError, match='can only shrink') as err:
        FourierCrop(size=32)(dict(img=x, img_path='a.png'))
    assert '24x24' in str(err.value) and 'a.png' in str(err.value)
    with pytest.raises(ValueError, match='positive'):
        FourierCrop(size=0)
    with pytest.raises(ValueError, match=r'int or \(h, w\)'):
        FourierCrop(size='big')


def test_registered_in_mmpretrain_and_repr():
    from mmpretrain.registry import TRANSFORMS
    t = TRANSFORMS.build(dict(type='FourierCrop', size=160))
    assert isinstance(t, FourierCrop) and repr(t) == 'FourierCrop(size=160)'
    r = TRANSFORMS.build(dict(type='StagedRandAug', magnitude_level=5))
    assert isinstance(r, StagedRandAug) and 'magnitude_level=5' in repr(r)


def _mean_change(aug: StagedRandAug, n=60) -> float:
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(n):
        x = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        y = aug(dict(img=x.copy(), img_shape=(32, 32)))['img']
        diffs.append(np.abs(y.astype(int) - x).mean())
    return float(np.mean(diffs))


def test_staged_randaug_magnitude_is_live():
    np.random.seed(0)
    aug = StagedRandAug(magnitude_level=9)
    assert aug.num_policies == 2 and aug.magnitude_std == 0.5
    strong = _mean_change(aug)
    aug.magnitude_level = 0
    assert _mean_change(aug) == 0.0  # m=0: images unchanged
    aug.magnitude_level = 1
    weak = _mean_change(aug)
    assert 0 < weak < strong
    # the chosen policies really received the new level
    assert {t.magnitude_level for t in aug.transforms
            if getattr(t, 'magnitude_range', None)} == {1}
    with pytest.raises(ValueError, match='outside'):
        StagedRandAug(magnitude_level=12)
