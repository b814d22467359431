"""BatchRandAugment against mmpretrain's RandAugment, op by op and in law."""
import math

import cv2
import numpy as np
import pytest
import torch
from mmengine.utils import digit_version
from mmpretrain.datasets.transforms.auto_augment import RANDAUG_POLICIES
from mmpretrain.registry import TRANSFORMS

from mmet.batch_randaug import BatchRandAugment

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

TIMM = RANDAUG_POLICIES['timm_increasing']
NEGATABLE = ('Rotate', 'Shear', 'Translate', 'ColorTransform', 'Contrast',
             'Brightness', 'Sharpness')
GEOMETRIC = ('Rotate', 'Shear', 'Translate')
# mmpretrain's interpolation where neither the policy nor hparams name one
DEFAULT_WARP = dict(Rotate='nearest', Shear='bicubic', Translate='nearest')
# The expectations below are OpenCV 5.0's (the upstream stack's lock), which
# warps in floating point, as grid_sample does; 5.1's x86-64 wheels warp
# through Intel IPP, which resolves nearest-neighbour ties otherwise
# (BatchRandAugment's docstring; test_nearest_ties_as_the_locked_opencv).
# OpenCV 4 (on the fork's stack: its mmdet needs imaug, which needs
# opencv < 4.13) warps in fixed point: it samples at source
# coordinates on a 1/32 px grid, which moves an interpolated value by up to
# 1/32 of the image's range, and its nearest-neighbour warps resolve ties
# to the neighbouring source pixel (``_assert_on_grid``). Its float32
# ``addWeighted`` is no fused multiply-add, so a blend truncated to uint8
# lands a level off where it is near an integer (Contrast, Sharpness:
# measured on <= 2.8 % of pixels).
OPENCV_5 = digit_version(cv2.__version__) >= digit_version('5.0.0')
# an RGB fill; mmpretrain gets it reversed, as it pads BGR arrays
PAD_RGB = (128, 100, 70)


def _name(policy: dict) -> str:
    return policy['type'] + policy.get('direction', '')[:1].upper()


def _gradient(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour gradient plus sensor-like noise, RGB uint8 HWC."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / (w - 1), yy / (h - 1), (xx + yy) / (h + w - 2)], -1)
    img = 40 + 150 * img + np.random.default_rng(seed).normal(0, 12, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _images() -> list:
    """Same-size batches (one call each) of real-looking and random images.
    """
    rng = np.random.default_rng(0)
    return [
        np.stack([
            _gradient(32, 32, 0),
            rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            rng.integers(60, 180, (32, 32, 3), dtype=np.uint8),  # low range
        ]),
        _gradient(24, 40, 1)[None],  # not square: H and W kept apart
    ]


IMAGES = _images()


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``N x H x W x C`` uint8 to ``N x C x H x W`` float32."""
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float()


def _reference(policy: dict, level: float, rgb: np.ndarray,
               hparams: dict) -> np.ndarray:
    """mmpretrain's RandAugment on each image, fed BGR, returned RGB."""
    hparams = dict(hparams)
    if isinstance(hparams.get('pad_val'), tuple):
        hparams['pad_val'] = hparams['pad_val'][::-1]
    aug = TRANSFORMS.build(
        dict(
            type='RandAugment',
            policies=[policy],
            num_policies=1,
            magnitude_level=level,
            magnitude_std=0,
            hparams=hparams))
    out = [
        aug(dict(img=np.ascontiguousarray(im[..., ::-1])))['img'][..., ::-1]
        for im in rgb
    ]
    return np.stack(out)


def _beside(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Per pixel of ``N x H x W x C`` images: whether ``got`` is ``want``
    there or at one of its 8 neighbours (a tie resolved the other way)."""
    h, w = want.shape[1:3]
    padded = np.pad(want, ((0, 0), (1, 1), (1, 1), (0, 0)),
                    constant_values=-1)
    found = np.zeros(want.shape[:3], bool)
    for dy in range(3):
        for dx in range(3):
            found |= (padded[:, dy:dy + h, dx:dx + w] == got).all(-1)
    return found


def _fixed_point_warp(policy: dict) -> bool:
    """Whether mmpretrain runs ``policy`` as an OpenCV 4 warp."""
    return policy['type'] in GEOMETRIC and not OPENCV_5


def _assert_on_grid(got: np.ndarray, want: np.ndarray, src: np.ndarray,
                    policy: dict, hparams: dict, what: str) -> None:
    """Ours against an OpenCV 4 warp of ``src`` (``N x H x W x C``): within
    what its 1/32 px sampling grid moves, or beside a nearest tie."""
    interp = hparams.get('interpolation', policy.get(
        'interpolation', DEFAULT_WARP[policy['type']]))
    if interp == 'nearest':
        # measured: at most 2.5 % (the fill beside the image's edge)
        assert (~_beside(got, want)).mean() <= 0.03, what
    else:
        assert np.abs(got - want).max() <= 1 + np.ptp(src) / 32, what


def _compare(policy: dict, level: float, hparams: dict,
             what: str) -> np.ndarray:
    """|ours - mmpretrain| over all test images, flattened; an OpenCV 4
    warp is checked here against its grid (``_assert_on_grid``)."""
    ours = BatchRandAugment([policy], 1, level, 0, hparams=hparams)
    diffs = []
    for rgb in IMAGES:
        got = ours(_to_tensor(rgb)).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(got, np.round(got)), 'outputs are integers'
        want = _reference(policy, level, rgb, hparams).astype(np.float32)
        if _fixed_point_warp(policy):
            _assert_on_grid(got, want, rgb, policy, hparams, what)
        else:
            diffs.append(np.abs(got - want).ravel())
    return np.concatenate(diffs) if diffs else np.zeros(1)


@pytest.mark.parametrize('policy', TIMM, ids=[_name(p) for p in TIMM])
def test_each_op_matches_mmpretrain(policy):
    """Fixed magnitudes, prob 1, positive and negated, as in the CPU path.

    The point ops reproduce mmcv's uint8 arithmetic (truncations, cv2's
    fixed-point grey, the fused multiply-add of cv2.addWeighted), so they
    agree exactly; the nearest-neighbour warps too. Bicubic and bilinear
    warps use grid_sample's weights, not cv2's: a few pixels in a thousand
    land one grey level off (measured: at most 1, on <= 1.3 % of pixels).
    That is with OpenCV 5.0; OpenCV 4's differ (``OPENCV_5``).
    """
    warps = [None]
    if policy['type'] in GEOMETRIC:
        warps = ['nearest', 'bilinear', 'bicubic']
    for level in (2.5, 9, 10):
        for negative in ((0., 1.) if policy['type'] in NEGATABLE else (0., )):
            cfg = dict(policy, prob=1.)
            if policy['type'] in NEGATABLE:
                cfg['random_negative_prob'] = negative
            for interp in warps:
                hparams = dict(pad_val=PAD_RGB)
                if interp:
                    hparams['interpolation'] = interp
                what = f'{_name(policy)} level={level} neg={negative} {interp}'
                diff = _compare(cfg, level, hparams, what)
                assert diff.max() <= 1, what
                if not OPENCV_5:
                    assert (diff > 0).mean() <= 0.03, what
                elif policy['type'] not in GEOMETRIC or interp == 'nearest':
                    assert diff.max() == 0, what
                else:
                    assert (diff > 0).mean() <= 0.02, what


def test_nearest_ties_as_the_locked_opencv():
    """A half-pixel Translate puts every source column on a tie. Ours
    rounds it half to even, as OpenCV 5.0's kernel does (0, 2, 2, 4, ...);
    OpenCV 4 rounds half up (the other neighbour: ``_assert_on_grid``).
    OpenCV 5.1's x86-64 wheels round half up through Intel IPP and fail
    here: the lock keeps 5.0 (BatchRandAugment's docstring)."""
    row = np.arange(8, dtype=np.uint8)
    img = np.ascontiguousarray(np.broadcast_to(row[None, :, None], (4, 8, 3)))
    policy = dict(type='Translate', magnitude=-1 / 16, prob=1.,
                  random_negative_prob=0., interpolation='nearest')
    # mmpretrain's Translate: offset = magnitude * width = -0.5 px
    want = _reference(policy, 5, img[None], dict(pad_val=99))[0, 1, :, 0]
    cv2_ties = [0, 2, 2, 4, 4, 6, 6, 99] if OPENCV_5 else \
        [1, 2, 3, 4, 5, 6, 7, 99]
    assert want.tolist() == cv2_ties, (
        f'OpenCV {cv2.__version__} resolves nearest-warp ties otherwise '
        'than the locked version does: BatchRandAugment no longer matches '
        'it (tests/test_lock.py names the package off its pin)')
    ours = BatchRandAugment([policy], 1, 5, 0, hparams=dict(pad_val=99))
    got = ours(_to_tensor(img[None]))[0, 0, 1]
    assert got.tolist() == [0, 2, 2, 4, 4, 6, 6, 99]


def test_fixed_magnitude_policies_match_mmpretrain():
    """Policies given a fixed magnitude instead of a range."""
    for policy in [
            dict(type='Rotate', angle=17., interpolation='bicubic'),
            dict(type='Posterize', bits=3),
            dict(type='Solarize', thr=100),
            dict(type='SolarizeAdd', magnitude=50, thr=100),
            dict(type='Contrast', magnitude=-0.7),
            dict(type='Shear', magnitude=0.2, direction='vertical'),
            dict(type='Translate', magnitude=-0.3),
    ]:
        cfg = dict(policy, prob=1.)
        if policy['type'] in NEGATABLE:
            cfg['random_negative_prob'] = 0.
        diff = _compare(cfg, 5, dict(pad_val=PAD_RGB), str(policy))
        assert diff.max() <= 1 and (diff > 0).mean() <= 0.02, policy


def test_rotate_int_pad_fills_every_channel():
    """An int pad_val fills all channels (mmcv's imrotate fills only the
    first, a cv2 quirk; Shear and Translate fill all there too)."""
    aug = BatchRandAugment([dict(type='Rotate', angle=45., prob=1.,
                                 random_negative_prob=0.)], 1, 5, 0,
                           hparams=dict(pad_val=77))
    out = aug(torch.full((1, 3, 16, 16), 200.))
    assert out[0, :, 0, 0].tolist() == [77., 77., 77.]
    assert out[0, :, 8, 8].tolist() == [200., 200., 200.]


def _brightness(**kwargs) -> dict:
    return dict(type='Brightness', prob=1., random_negative_prob=0.,
                magnitude_range=(0, 0.9), **kwargs)


def _mm_brightness(value: int, magnitude: float) -> int:
    """mmpretrain's Brightness of a constant grey level."""
    op = TRANSFORMS.build(
        dict(type='Brightness', magnitude=magnitude, prob=1.,
             random_negative_prob=0.))
    img = np.full((1, 1, 3), value, np.uint8)
    return int(op(dict(img=img))['img'][0, 0, 0])


def test_policy_choice_order_and_prob():
    """Two slots drawing from [Invert, Brightness] with replacement, each
    applied with prob 0.5, in order: six outcomes of known probability
    on a constant image (Invert twice gives the image back)."""
    def b(v):
        return _mm_brightness(v, 0.45)

    expected = {
        100: 1 / 4 + 1 / 16,  # nothing applied, or Invert twice
        155: 1 / 4,  # Invert only
        b(100): 1 / 4,  # Brightness only
        b(b(100)): 1 / 16,
        b(155): 1 / 16,  # Invert, then Brightness
        255 - b(100): 1 / 16,  # Brightness, then Invert
    }
    assert len(expected) == 6
    aug = BatchRandAugment(
        [dict(type='Invert'),
         dict(type='Brightness', magnitude=0.45, random_negative_prob=0.)],
        num_policies=2, magnitude_level=5, magnitude_std=0)
    n = 4096
    imgs = torch.full((n, 3, 2, 2), 100.)
    out = aug(imgs, generator=torch.Generator().manual_seed(0))
    assert (out == out[:, :1, :1, :1]).all(), 'one op per whole sample'
    values = out[:, 0, 0, 0].long()
    for value, p in expected.items():
        freq = (values == value).float().mean().item()
        assert abs(freq - p) < 4.5 * math.sqrt(p * (1 - p) / n), (value, freq)
    assert set(values.tolist()) <= set(expected)


def _recovered_levels(aug: BatchRandAugment, n: int, seed: int):
    """Levels drawn by a single Brightness (0, 0.9) policy, read back from
    a constant image: out = floor(130 * (1 + 0.09 * level))."""
    out = aug(torch.full((n, 3, 1, 1), 130.),
              generator=torch.Generator().manual_seed(seed))
    out = out[:, 0, 0, 0].double()
    return ((out + 0.5) / 130 - 1) / 0.09, out  # +0.5: undo the truncation


def test_magnitude_distribution_normal():
    aug = BatchRandAugment([_brightness()], 1, 5, 0.5)
    levels, _ = _recovered_levels(aug, 8192, 1)
    # quantisation (steps of 0.085 level) adds ~6e-4 to the variance
    assert abs(levels.mean().item() - 5) < 0.03
    assert abs(levels.std().item() - 0.5) < 0.02


def test_magnitude_distribution_clipped_and_uniform():
    n = 8192
    aug = BatchRandAugment([_brightness()], 1, 9.5, 1.)
    _, out = _recovered_levels(aug, n, 2)
    top = _mm_brightness(130, 0.9)  # the level clipped to total_level=10
    assert out.max().item() == top
    p = 0.5 * math.erfc(0.5 / math.sqrt(2))  # P(N(9.5, 1) > 10)
    assert abs((out == top).double().mean().item() - p) < 0.025

    aug = BatchRandAugment([_brightness()], 1, 8, 'inf')
    levels, _ = _recovered_levels(aug, n, 3)
    assert abs(levels.mean().item() - 4) < 0.12
    assert abs(levels.std().item() - 8 / math.sqrt(12)) < 0.06
    assert levels.min().item() > -0.1 and levels.max().item() < 8.1


def test_random_negative_prob():
    n = 4096
    aug = BatchRandAugment(
        [dict(_brightness(), random_negative_prob=0.3)], 1, 5, 0)
    out = aug(torch.full((n, 3, 1, 1), 100.),
              generator=torch.Generator().manual_seed(4))[:, 0, 0, 0]
    assert set(out.tolist()) == {55., 145.}
    assert abs((out == 55).float().mean().item() - 0.3) < 0.03


def test_timm_increasing_changed_fraction():
    """With prob 0.5 per slot, 1/4 of the samples apply nothing; of the
    rest, only Invert/Solarize pairs give the image back (Solarize at
    level ~9 thresholds at ~26, below every pixel, so it inverts too):
    P(changed) = 1 - 1/4 - (1/2 * 2/15)^2."""
    n = 4096
    # 24 x 24: Equalize leaves images of under ~256 pixels unchanged
    base = torch.from_numpy(_gradient(24, 24, 5)).permute(2, 0, 1).float()
    base = (base - base.min()) / (base.max() - base.min()) * 120 + 60
    imgs = base.round().expand(n, 3, 24, 24)
    aug = BatchRandAugment()  # timm_increasing, 2 policies, m9, std 0.5
    out = aug(imgs, generator=torch.Generator().manual_seed(5))
    changed = (out != imgs).flatten(1).any(1).float().mean().item()
    expected = 1 - 1 / 4 - (1 / 15)**2
    assert abs(changed - expected) < 0.03, changed


def test_level_zero_and_level_changes():
    imgs = torch.rand(4, 3, 8, 8) * 255
    aug = BatchRandAugment(magnitude_level=0)
    assert aug(imgs) is imgs

    aug = BatchRandAugment([_brightness()], 1, 5, 0)
    flat = torch.full((2, 3, 4, 4), 100.)
    assert (aug(flat) == 145).all()
    aug.magnitude_level = 10
    assert (aug(flat) == 190).all()
    aug.magnitude_level = 2.5
    assert (aug(flat) == math.floor(100 * 1.225)).all()
    aug.magnitude_level = 0
    assert aug(flat) is flat
    aug.magnitude_level = 11
    with pytest.raises(ValueError, match='outside'):
        aug(flat)


def test_shapes_dtypes_devices_and_input_untouched():
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    aug = BatchRandAugment(magnitude_level=9)
    for device in devices:
        for dtype in (torch.float32, torch.float64, torch.float16):
            imgs = (torch.rand(6, 3, 12, 10) * 255).to(device, dtype)
            before = imgs.clone()
            out = aug(imgs, torch.Generator(device).manual_seed(0))
            assert out.shape == imgs.shape
            assert out.dtype == dtype and out.device == imgs.device
            assert torch.equal(imgs, before)
            assert out.min() >= 0 and out.max() <= 255
        cl = (torch.rand(4, 3, 9, 9) * 255).to(device).contiguous(
            memory_format=torch.channels_last)
        assert aug(cl).shape == cl.shape
    # a CPU generator drives the draws for a batch on any device
    imgs = torch.rand(6, 3, 8, 8) * 255
    one = aug(imgs, torch.Generator().manual_seed(7))
    assert torch.equal(one, aug(imgs, torch.Generator().manual_seed(7)))
    assert not torch.equal(one, aug(imgs, torch.Generator().manual_seed(8)))


def test_grey_images():
    """C=1 runs every policy on the one channel, as mmet's StagedRandAug
    does with a grey image replicated to three channels."""
    rgb = IMAGES[0][:1]
    grey = np.repeat(rgb[..., :1], 3, axis=-1)  # what StagedRandAug builds
    for policy in TIMM:
        cfg = dict(policy, prob=1.)
        if policy['type'] in NEGATABLE:
            cfg['random_negative_prob'] = 0.
        # StagedRandAug keeps the first channel of mmpretrain's BGR array
        hparams = dict(pad_val=90)
        want = _reference(cfg, 7, grey, hparams)[..., 2]
        aug = BatchRandAugment([cfg], 1, 7, 0, hparams=hparams)
        got = aug(_to_tensor(grey[..., :1]))[:, 0].numpy()
        if _fixed_point_warp(cfg):
            _assert_on_grid(got[..., None], want[..., None], grey, cfg,
                            hparams, str(policy))
            continue
        diff = np.abs(got - want)
        assert diff.max() <= 1 and (diff > 0).mean() <= 0.02, policy
    out = BatchRandAugment()(torch.rand(5, 1, 8, 8) * 255)
    assert out.shape == (5, 1, 8, 8)


def test_bad_inputs():
    aug = BatchRandAugment()
    with pytest.raises(ValueError, match='C=4'):
        aug(torch.rand(2, 4, 8, 8))
    with pytest.raises(TypeError, match='floating'):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match='N x C x H x W'):
        aug(torch.rand(3, 8, 8))
    with pytest.raises(NotImplementedError, match='Cutout'):
        BatchRandAugment([dict(type='Cutout', shape=4)])
    with pytest.raises(ValueError, match='outside'):
        BatchRandAugment(magnitude_level=-1)
    with pytest.raises(ValueError, match='inf'):
        BatchRandAugment(magnitude_std='big')
    with pytest.raises(ValueError, match='4 values'):
        BatchRandAugment([dict(type='Rotate', angle=10., prob=1.)],
                         hparams=dict(pad_val=(1, 2, 3, 4)))(
                             torch.rand(1, 3, 4, 4))


def test_repr():
    text = repr(BatchRandAugment())
    assert text.startswith('BatchRandAugment(num_policies=2, '
                           'magnitude_level=9, magnitude_std=0.5, ')
    assert '\n    Rotate (0, 30)' in text and '\n    AutoContrast' in text
    assert text.count('\n    ') == len(TIMM)
