"""The plan's clock and the stage driver, without a Runner: the stage text,
the clock in epochs and in iterations, and the one definition of full
size."""
import os.path as osp
from types import SimpleNamespace

import pytest
from conftest import ROOT
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope

from mmet.adapt import AdaptationError
from mmet.curriculum import Curriculum
from mmet.driver import StageDriver
from mmet.plan import StageClock, StageState

ET = Curriculum.build('efficienttrain')


def test_one_text_for_a_stage():
    state = StageState(index=3, num_stages=5, size=28, bandwidth=6 / 7,
                       magnitude=7, first_epoch=7, last_epoch=8,
                       max_epochs=10)
    assert state.describe() == str(state) == \
        'stage 4/5 (B=28, m=7, epochs 7-8 of 10)'
    assert state.describe(span=False) == 'stage 4/5 (B=28, m=7)'
    one = StageState(1, 5, 22, 5 / 7, 3, 2, 2, 5)
    assert one.describe() == 'stage 2/5 (B=22, m=3, epoch 2 of 5)'
    assert StageState(0, 5, None, 0.5, 1).describe() == \
        'stage 1/5 (B=0.5, m=1)'


def test_schedule_by_epoch_and_by_iteration():
    by_epoch = StageClock(ET, 10, 32)
    assert by_epoch.edges == [0, 2, 4, 6, 8, 10]
    assert [by_epoch.index_at(e) for e in range(10)] == \
        [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert by_epoch.state(3).describe() == \
        'stage 4/5 (B=28, m=7, epochs 7-8 of 10)'
    # 3 epochs of 5 iterations: stages switch inside epochs
    by_iter = StageClock(ET, 3, 32, epoch_length=5)
    assert by_iter.by_iter and by_iter.edges == [0, 3, 6, 9, 12, 15]
    assert by_iter.index_at(5) == 1 and by_iter.index_at(6) == 2
    assert by_iter.state(1).describe() == \
        'stage 2/5 (B=22, m=3, epochs 1-2 of 3)'
    # few epochs by epoch: a stage without one is left out of the states
    assert [s.index for s in StageClock(ET, 2, 32).states()] == [1, 4]


def full_size_of(path, **changes):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(changes)
    return StageDriver.from_config(cfg, ET)


def test_full_size_is_the_drivers_for_every_kind_of_config():
    demo = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')
    assert full_size_of(demo).full_size == 28
    batched = full_size_of(
        osp.join(ROOT, 'configs/demo/fmnist_resnet_et_batchaug.py'))
    assert batched.full_size == 28 and not batched.in_pipeline
    device = full_size_of(
        osp.join(ROOT, 'configs/device/resnet50_et-device_8xb256_in1k.py'))
    assert device.full_size == 224 and device.final_magnitude == 9
    # the cheap path has no FourierCrop: StagedRandomResizedCrop's scale
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/efficienttrain/resnet50_et_8xb256_in1k.py'))
    cfg.train_dataloader.dataset.pipeline = cfg.et_fast_train_pipeline
    fast = StageDriver.from_config(cfg, ET)
    assert fast.full_size == 224 and fast.sized_in_pipeline
    assert 'FourierCrop' not in fast.found


def test_stock_pipelines_are_adapted_and_refused_with_the_fix(
        mmpretrain_scope):
    pipeline = [dict(type='RandomResizedCrop', scale=48),
                dict(type='RandomFlip', prob=0.5),
                dict(type='RandAugment', policies='timm_increasing',
                     num_policies=2, magnitude_level=9),
                dict(type='PackInputs')]
    leaf = SimpleNamespace(pipeline=Compose(pipeline))
    driver = StageDriver(ET)
    logged = []
    driver.bind(leaf, log=logged.append)
    assert driver.full_size == 48 and driver.final_magnitude == 9
    assert len(logged) == 1 and 'Before:' in logged[0]
    assert driver.changes and driver.changes == \
        leaf.pipeline.adapted  # kept for a second bind
    # a stage applied, then bound again: the full size stays the configured
    driver.apply(StageClock(ET, 5, 48).state(0))
    again = StageDriver(ET)
    again.bind(leaf, log=logged.append)
    assert again.full_size == 48 and len(logged) == 1
    assert again.changes == driver.changes
    with pytest.raises(AdaptationError, match=r'found no FourierCrop.*'
                       r'\(found: PackInputs\).*cannot adapt it'):
        StageDriver(ET).bind(SimpleNamespace(
            pipeline=Compose([dict(type='PackInputs')])))
    init_default_scope('mmpretrain')
