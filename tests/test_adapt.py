"""mmet.adapt on the built train pipelines of stock mmpretrain configs: what
it changes, that the adapted pipeline delivers each B and m, that the final
stage augments exactly as the stock pipeline, and what it refuses."""
import os.path as osp

import cv2
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import get_installed_path
from mmpretrain.registry import TRANSFORMS

from mmet.adapt import AdaptationError, adapt_pipeline, describe_pipeline
from mmet.transforms import FourierCrop, StagedRandAug, StagedRandomResizedCrop

MMPRETRAIN = osp.join(get_installed_path('mmpretrain'), '.mim', 'configs')
MMDET = osp.join(get_installed_path('mmdet'), '.mim', 'configs')
STOCK = {
    'resnet50': 'resnet/resnet50_8xb32_in1k.py',
    'convnext-t': 'convnext/convnext-tiny_32xb128_in1k.py',
    'deit-s': 'deit/deit-small_4xb256_in1k.py',
    'swin-t': 'swin_transformer/swin-tiny_16xb64_in1k.py',
}


def build(pipeline, scope='mmpretrain'):
    init_default_scope(scope)
    return Compose([TRANSFORMS.build(t) for t in pipeline])


def stock_pipeline(name):
    cfg = Config.fromfile(osp.join(MMPRETRAIN, STOCK[name]))
    return cfg.train_dataloader.dataset.pipeline


def names(pipeline):
    return [type(t).__name__ for t in pipeline.transforms]


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), np.uint8),
                           (7, 7), 2)
    path = str(tmp_path_factory.mktemp('img') / 'photo.jpg')
    cv2.imwrite(path, img)
    return path


def run(pipeline, photo, seed):
    np.random.seed(seed)
    return pipeline(dict(img_path=photo, gt_label=0))


@pytest.mark.parametrize('name', sorted(STOCK))
def test_fourier_adaptation_of_stock_pipelines(name, photo):
    stock = build(stock_pipeline(name))
    adapted = build(stock_pipeline(name))
    before = names(adapted)
    changes = adapt_pipeline(adapted.transforms, low_pass='fourier')
    after = names(adapted)
    # FourierCrop goes last before PackInputs; RandAugment (if any) staged
    assert after[-2:] == ['FourierCrop', 'PackInputs']
    assert after[:-2] == [n.replace('RandAugment', 'StagedRandAug')
                          for n in before[:-1]]
    assert len(changes) == 1 + before.count('RandAugment')
    assert any('FourierCrop(size=224)' in c for c in changes)
    crop = adapted.transforms[-2]
    # the final stage is the stock pipeline, bit for bit
    for seed in range(3):
        a, b = run(adapted, photo, seed), run(stock, photo, seed)
        assert (a['inputs'] == b['inputs']).all()
    # each stage's B and m reach the output
    randaugs = [t for t in adapted.transforms if isinstance(t, StagedRandAug)]
    for size, m in ((160, 1), (192, 7), (224, 9)):
        crop.size = size
        for r in randaugs:
            r.magnitude_level = m
        out = run(adapted, photo, 0)
        assert tuple(out['inputs'].shape) == (3, size, size)
        assert out['data_samples'].img_shape == (size, size)
    # a second call finds the staged transforms and changes nothing
    assert adapt_pipeline(adapted.transforms) == []
    assert names(adapted) == after


def test_randaugment_keeps_every_argument():
    stock = build(stock_pipeline('deit-s'))
    ra = next(t for t in stock.transforms
              if type(t).__name__ == 'RandAugment')
    adapt_pipeline(stock.transforms)
    staged = next(t for t in stock.transforms if isinstance(t, StagedRandAug))
    for key in ('policies', 'num_policies', 'magnitude_level',
                'magnitude_std', 'total_level', 'hparams'):
        assert getattr(staged, key) == getattr(ra, key), key
    assert staged.magnitude_level == 9 and staged.magnitude_std == 0.5


@pytest.mark.parametrize('name', ['swin-t', 'resnet50'])
def test_resize_adaptation_is_the_cheap_path(name, photo):
    stock = build(stock_pipeline(name))
    adapted = build(stock_pipeline(name))
    rrc = next(t for t in adapted.transforms
               if type(t).__name__ == 'RandomResizedCrop')
    changes = adapt_pipeline(adapted.transforms, low_pass='resize')
    crop = next(t for t in adapted.transforms
                if isinstance(t, StagedRandomResizedCrop))
    assert not any(isinstance(t, FourierCrop) for t in adapted.transforms)
    assert (crop.crop_ratio_range, crop.aspect_ratio_range,
            crop.interpolation) == (rrc.crop_ratio_range,
                                    rrc.aspect_ratio_range, rrc.interpolation)
    assert crop.backend == 'pillow'
    text = next(c for c in changes if 'StagedRandomResizedCrop' in c)
    if rrc.backend == 'cv2':  # ResNet-50's bilinear cv2 crop would alias
        assert "backend 'cv2' -> 'pillow'" in text
    else:  # Swin-T's Pillow bicubic crop: the final stage is the stock one
        assert 'backend' not in text.split(')')[-1]
        a, b = run(adapted, photo, 1), run(stock, photo, 1)
        assert (a['inputs'] == b['inputs']).all()
    crop.scale = (96, 96)
    assert tuple(run(adapted, photo, 0)['inputs'].shape) == (3, 96, 96)


def test_only_the_requested_parts_change():
    pipe = build(stock_pipeline('deit-s'))
    assert adapt_pipeline(pipe.transforms, bandwidth=False) == [
        next(c for c in adapt_pipeline(build(stock_pipeline(
            'deit-s')).transforms) if c.startswith('RandAugment'))]
    assert 'FourierCrop' not in names(pipe)
    pipe = build(stock_pipeline('deit-s'))
    assert len(adapt_pipeline(pipe.transforms, magnitude=False)) == 1
    assert 'RandAugment' in names(pipe)
    assert adapt_pipeline(pipe.transforms, bandwidth=False,
                          magnitude=False) == []


def test_describe_pipeline_gives_one_line_per_transform():
    pipe = build(stock_pipeline('deit-s'))
    text = describe_pipeline(pipe.transforms)
    lines = text.splitlines()
    assert len(lines) == len(pipe.transforms)
    assert lines[0].startswith('  0. LoadImageFromFile')
    assert 'RandAugment' in lines[3]


def test_mmet_pipelines_are_left_as_they_are():
    cfg = Config.fromfile(osp.join(osp.dirname(osp.dirname(__file__)),
                                   'configs/_base_/efficienttrain.py'))
    for key in ('et_train_pipeline', 'et_fast_train_pipeline',
                'et_device_pipeline'):
        pipe = build(cfg[key])
        before = names(pipe)
        assert adapt_pipeline(pipe.transforms) == [], key
        assert names(pipe) == before


# refusals -------------------------------------------------------------------
RRC = dict(type='RandomResizedCrop', scale=224)
PACK = dict(type='PackInputs')


@pytest.mark.parametrize('pipeline, low_pass, message', [
    ([RRC, dict(type='AutoAugment', policies='imagenet'), PACK], 'fourier',
     'AutoAugment which has no magnitude'),
    ([RRC, dict(type='RandomChoice', transforms=[
        [dict(type='RandAugment', policies='timm_increasing',
              num_policies=2, magnitude_level=9)],
        [dict(type='RandomFlip', prob=0.5)]]), PACK], 'fourier',
     'RandAugment inside RandomChoice'),
    ([dict(type='RandomFlip', prob=0.5), PACK], 'fourier',
     'has no resize or crop'),
    ([dict(type='ResizeEdge', scale=256), PACK], 'fourier',
     'ResizeEdge, gives each image its own size'),
    ([RRC, PACK, dict(type='RandomFlip', prob=0.5)], 'fourier',
     'RandomFlip come(s) after PackInputs'),
    ([dict(type='CenterCrop', crop_size=224), PACK], 'resize',
     "Use low_pass='fourier'"),
    ([RRC, dict(type='RandAugment', policies='timm_increasing',
                num_policies=2, magnitude_level=12), PACK], 'fourier',
     'RandAugment(magnitude_level=12, total_level=10), beyond its own '
     'scale'),  # ResNeSt's recipe
    ([RRC, dict(type='BEiTMaskGenerator', input_size=14,
                num_masking_patches=75), PACK], 'fourier',
     'BEiTMaskGenerator draws its mask'),
])
def test_refusals_name_the_transform_and_the_fix(pipeline, low_pass,
                                                 message):
    pipe = build(pipeline)
    before = names(pipe)
    with pytest.raises(AdaptationError) as e:
        adapt_pipeline(pipe.transforms, low_pass=low_pass)
    assert message in str(e.value)
    assert names(pipe) == before  # nothing changed


def test_constant_magnitude_keeps_autoaugment():
    pipe = build([RRC, dict(type='AutoAugment', policies='imagenet'), PACK])
    assert adapt_pipeline(pipe.transforms, magnitude=False) == [
        'inserted FourierCrop(size=224) before PackInputs, after '
        'AutoAugment']


def test_detection_pipelines_are_refused():
    cfg = Config.fromfile(osp.join(MMDET,
                                   'retinanet/retinanet_r50_fpn_1x_coco.py'))
    import mmdet.datasets  # noqa: F401  (registers mmdet's transforms)
    from mmdet.registry import TRANSFORMS as DET_TRANSFORMS
    init_default_scope('mmdet')
    pipe = Compose([DET_TRANSFORMS.build(t) for t in cfg.train_pipeline])
    with pytest.raises(AdaptationError, match='not gt_bboxes'):
        adapt_pipeline(pipe.transforms)
    # m alone: the stock pipeline has no RandAugment to stage
    assert adapt_pipeline(pipe.transforms, bandwidth=False) == []


# RandAugment inside RandomApply (issue 22, item 4) --------------------------
RANDAUG = dict(type='RandAugment', policies='timm_increasing',
               num_policies=2, magnitude_level=9, magnitude_std=0.5)


def test_randaugment_inside_random_apply_is_staged_where_it_is():
    pipe = build([RRC, dict(type='RandomApply', prob=0.7,
                            transforms=[RANDAUG]), PACK])
    changes = adapt_pipeline(pipe.transforms)
    wrapper = pipe.transforms[1]
    assert type(wrapper).__name__ == 'RandomApply' and wrapper.prob == 0.7
    inner = wrapper.transforms.transforms[0]
    assert isinstance(inner, StagedRandAug) and inner.magnitude_level == 9
    assert changes[0].startswith(
        'RandAugment inside RandomApply -> StagedRandAug')
    assert names(pipe)[-2:] == ['FourierCrop', 'PackInputs']


def random_apply_cfg(work_dir, pipeline):
    from conftest import tiny_cfg
    return tiny_cfg(work_dir, num_workers=0, pipeline=pipeline,
                    custom_hooks=[dict(type='EfficientTrainHook'),
                                  dict(type='BatchRecorder')])


def test_every_epoch_stages_the_randaugment_in_random_apply(tmp_path):
    """The run the issue shows: RandomApply([RandAugment m=9]) under the ET
    curriculum trains m = 1, 3, 5, 7, 9 in the epochs."""
    from conftest import build_runner, recorder
    runner = build_runner(random_apply_cfg(tmp_path, [
        dict(type='RandomCrop', crop_size=32, padding=4),
        dict(type='RandomApply', prob=1.0, transforms=[RANDAUG]),
        dict(type='RecordWorker'),
        dict(type='PackInputs', meta_keys=('randaug_magnitude', 'img_shape',
                                           'worker_pid'))]))
    runner.train()
    seen = recorder(runner)
    assert [seen[e]['magnitudes'] for e in range(5)] == \
        [{1}, {3}, {5}, {7}, {9}]
    assert [seen[e]['shapes'] for e in range(5)] == \
        [{(22, 22)}] * 3 + [{(28, 28)}, {(32, 32)}]


def test_a_randaugment_the_curriculum_does_not_drive_is_refused(tmp_path):
    """A pipeline of the user's own (it has staged transforms, so it is not
    adapted) with another, stock RandAugment in a wrapper: refused at start,
    not trained at one magnitude while the log shows the curriculum's."""
    from conftest import build_runner
    runner = build_runner(random_apply_cfg(tmp_path, [
        dict(RANDAUG, type='StagedRandAug'),
        dict(type='RandomApply', prob=0.5, transforms=[RANDAUG]),
        dict(type='FourierCrop', size=32),
        dict(type='PackInputs')]))
    with pytest.raises(RuntimeError, match=(
            r'a RandAugment inside RandomApply that it does not drive: its '
            r'samples would keep magnitude_level=9 in every stage')):
        runner.train()
