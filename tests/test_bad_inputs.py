"""Inputs and configs that users get wrong: each works or is refused clearly.

Complements tests/test_transforms.py (square crops, dtypes, the too-small
square image) and tests/test_hook.py (pipelines that cannot express the
curriculum).
"""
import os.path as osp

import numpy as np
import pytest
from conftest import build_runner, tiny_cfg, tiny_pipeline
from test_transforms import natural_like, reference_crop

from mmet.transforms import FourierCrop, StagedRandAug


def crop(img, size, mode='fft', **results):
    return FourierCrop(size=size, mode=mode)(dict(img=img, **results))


def expected_int(img, h, w, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.rint(reference_crop(img, h, w)), info.min, info.max)


# FourierCrop -----------------------------------------------------------------
def test_image_smaller_than_b_on_one_axis_names_both_sizes_and_the_fix():
    img = natural_like((40, 20, 3)).astype(np.uint8)
    with pytest.raises(ValueError) as err:
        crop(img, 24, img_path='data/wide/x.jpg')
    msg = str(err.value)
    assert 'FourierCrop to 24x24 got a 40x20 image (data/wide/x.jpg)' in msg
    assert 'RandomResizedCrop' in msg and 'lower the curriculum bandwidth' \
        in msg


def test_channel_first_and_non_image_arrays_are_refused():
    chw = natural_like((3, 64, 64)).astype(np.uint8)  # a C x H x W mistake
    with pytest.raises(ValueError, match='looks channel-first'):
        crop(chw, 32)
    batch = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r'H x W or H x W x C numpy image, '
                       r'got ndarray of shape \(2, 32, 32, 3\)'):
        crop(batch, 16)
    import torch
    with pytest.raises(ValueError, match='before PackInputs'):
        crop(torch.zeros(3, 32, 32), 16)


@pytest.mark.parametrize('shape', [(30, 30), (30, 30, 1)])
@pytest.mark.parametrize('mode', ['fft', 'lanczos'])
def test_grayscale_keeps_its_layout(shape, mode):
    img = natural_like(shape).astype(np.uint8)
    out = crop(img, 20, mode=mode)
    assert out['img'].shape == (20, 20) + shape[2:]
    assert out['img'].dtype == np.uint8 and out['img_shape'] == (20, 20)
    if mode == 'fft':
        ref = expected_int(img, 20, 20, np.uint8)
        assert np.abs(out['img'].astype(int) - ref).max() <= 1


def test_rgba_crops_every_channel_and_keeps_opaque_alpha():
    rgb = natural_like((36, 36, 3))
    img = np.concatenate([rgb, np.full((36, 36, 1), 255.)], 2).astype(
        np.uint8)
    out = crop(img, 24)['img']
    assert out.shape == (24, 24, 4) and out.dtype == np.uint8
    ref = expected_int(img, 24, 24, np.uint8)
    assert np.abs(out.astype(int) - ref).max() <= 1
    # a constant channel holds only the DC term: it stays exactly constant
    assert (out[..., 3] == 255).all()


@pytest.mark.parametrize('mode', ['fft', 'lanczos'])
def test_uint16_rounds_and_clips_to_its_own_range(mode):
    # a 16-bit image with a hard edge at white: the exact crop rings above
    # 65535 and below 0 there, so it must clip to 0..65535 (not 0..255)
    img = np.zeros((48, 48, 3), np.uint16)
    img[:, 24:] = 65535
    img[10:20, 5:15] = 30000
    out = crop(img, 32, mode=mode)['img']
    assert out.dtype == np.uint16 and out.shape == (32, 32, 3)
    assert out.max() == 65535 and out.min() == 0
    if mode == 'fft':
        ref = expected_int(img, 32, 32, np.uint16)
        assert np.abs(out.astype(np.int64) - ref).max() <= 1
        raw = reference_crop(img, 32, 32)
        assert raw.max() > 65535 and raw.min() < 0  # clipping did happen
    else:  # the low-pass keeps the mean brightness
        assert abs(out.mean() - img.mean()) < 0.01 * 65535


def test_non_square_image_to_square_b_keeps_the_anisotropic_band():
    """A 41x63 image cropped to B=25 keeps 25 of 41 vertical and 25 of 63
    horizontal frequencies: the spectrum property, per axis."""
    img = natural_like((41, 63))
    out = crop(img.astype(np.float64), 25)
    assert out['img'].shape == (25, 25) and out['img_shape'] == (25, 25)
    np.testing.assert_allclose(out['img'], reference_crop(img, 25, 25),
                               atol=1e-9)
    F_in = np.fft.fftshift(np.fft.fft2(img))
    F_out = np.fft.fftshift(np.fft.fft2(out['img']))
    block = F_in[20 - 12:20 + 13, 31 - 12:31 + 13] * 25 * 25 / (41 * 63)
    np.testing.assert_allclose(F_out, block, atol=1e-6)


# StagedRandAug ---------------------------------------------------------------
# in mmpretrain's scope: its RandAugment builds the ops in the default scope,
# and mmdet's Rotate (the COCO tests leave mmdet's) takes no magnitude_range
def single_policy_augs(**kwargs):
    """One StagedRandAug per default policy, always applied, at m=9."""
    # a per-channel pad value: OpenCV pads a scalar into channel 0 only
    hparams = dict(pad_val=(128, 128, 128))
    for p in StagedRandAug(hparams=hparams).policies:
        yield p['type'], StagedRandAug(
            magnitude_level=9, policies=[dict(p, prob=1.0)],
            num_policies=1, magnitude_std=0, hparams=hparams, **kwargs)


@pytest.mark.usefixtures('mmpretrain_scope')
@pytest.mark.parametrize('shape', [(32, 32), (32, 32, 1)])
def test_staged_randaug_runs_every_policy_on_grayscale(shape):
    rng = np.random.default_rng(0)
    changed = 0
    for name, aug in single_policy_augs():
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        np.random.seed(1)
        out = aug(dict(img=img.copy(), img_shape=shape[:2]))['img']
        assert out.shape == shape and out.dtype == np.uint8, name
        # the same policy on the grey RGB image: its channels stay equal,
        # so the grey output loses nothing
        rgb = np.repeat(img.reshape(32, 32, 1), 3, 2)
        np.random.seed(1)
        ref = super(StagedRandAug, aug).transform(dict(img=rgb))['img']
        assert (ref[..., 0] == ref[..., 1]).all() and \
            (ref[..., 0] == ref[..., 2]).all(), name
        assert np.array_equal(out.reshape(32, 32), ref[..., 0]), name
        changed += not np.array_equal(out, img)
    assert changed >= 12  # the policies really ran


@pytest.mark.usefixtures('mmpretrain_scope')
@pytest.mark.parametrize('level', [0, 5])
def test_staged_randaug_refuses_rgba_in_every_stage(level):
    aug = StagedRandAug(magnitude_level=9)
    aug.magnitude_level = level
    img = np.zeros((32, 32, 4), np.uint8)
    with pytest.raises(ValueError) as err:
        aug(dict(img=img, img_path='logo.png'))
    msg = str(err.value)
    assert 'shape (32, 32, 4) (logo.png)' in msg
    assert "color_type='color'" in msg


# configs ---------------------------------------------------------------------
def eval_cfg(work_dir, **kwargs):
    loader = dict(batch_size=8, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  dataset=dict(type='TinyImages', num=8, pipeline=[
                      dict(type='FourierCrop', size=32),
                      dict(type='PackInputs')]))
    return tiny_cfg(work_dir, max_epochs=1, num_workers=0, log_level='INFO',
                    val_dataloader=loader, test_dataloader=loader,
                    val_evaluator=dict(type='Accuracy'),
                    test_evaluator=dict(type='Accuracy'), val_cfg=dict(),
                    test_cfg=dict(), **kwargs)


def log_text(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def test_fourier_crop_in_val_and_test_pipelines_is_warned(tmp_path):
    runner = build_runner(eval_cfg(tmp_path / 'work'))
    runner.train()  # validates once, after the epoch
    log = log_text(runner)
    assert log.count('The val pipeline contains FourierCrop(size=32). '
                     'Evaluation normally runs at full size') == 1
    assert 'Remove it from the val_dataloader pipeline' in log
    runner.test()
    assert 'The test pipeline contains FourierCrop(size=32)' in \
        log_text(runner)


def test_fourier_crop_before_a_resize_is_refused(tmp_path):
    """The curriculum would only change the spectrum, never the input size:
    every stage would cost as much as the last."""
    pipeline = tiny_pipeline()
    pipeline.insert(3, dict(type='Resize', scale=(32, 32)))
    runner = build_runner(tiny_cfg(tmp_path / 'work', pipeline=pipeline,
                                   num_workers=0))
    with pytest.raises(RuntimeError) as err:
        runner.train()
    msg = str(err.value)
    assert 'B=[22, 28, 32]' in msg and '(32, 32) images in every stage' \
        in msg
    assert 'Put FourierCrop after the last resize/crop' in msg
