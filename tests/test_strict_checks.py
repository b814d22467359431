"""Strict size and magnitude checks, and the message for an empty image.

Real Runners on the tiny data of ``conftest.py``; the folder tests read
real JPEGs with mmpretrain's ``CustomDataset``.
"""
import os.path as osp

import pytest
from conftest import build_runner, recorder, tiny_cfg, tiny_pipeline
from test_data_errors import folder_cfg, write_folder

from mmet.driver import PipelineStageError

ET_AT_32 = [22, 22, 22, 28, 32]  # the ET preset's B per epoch at 32 px


def pipeline_with(index, transform, **kwargs):
    pipeline = tiny_pipeline(**kwargs)
    pipeline.insert(index, transform)
    return pipeline


def test_padding_after_fourier_crop_is_refused_naming_it(tmp_path):
    """Pad(size_divisor=8) turns B=22 into 24: the model would train at 24
    while the log says 22. Refused at start, in every stage it happens."""
    pad = dict(type='Pad', size_divisor=8)
    runner = build_runner(tiny_cfg(tmp_path, num_workers=0,
                                   pipeline=pipeline_with(3, pad)))
    with pytest.raises(RuntimeError) as err:
        runner.train()
    msg = str(err.value)
    assert msg.startswith('EfficientTrainHook set stage 1/5 (B=22, m=1), but '
                          'the train pipeline delivers 24x24 images: Pad '
                          'after the low-pass changes their size')
    assert 'Move it before FourierCrop' in msg
    assert runner.epoch == 0  # nothing trained


def test_padding_before_fourier_crop_trains_at_b(tmp_path):
    pad = dict(type='Pad', size_divisor=8)
    runner = build_runner(tiny_cfg(
        tmp_path, num_workers=0, pipeline=pipeline_with(1, pad),
        custom_hooks=[dict(type='EfficientTrainHook'),
                      dict(type='BatchRecorder')]))
    runner.train()
    assert [recorder(runner)[e]['shapes'] for e in range(5)] == \
        [{(b, b)} for b in ET_AT_32]


def test_resize_after_fourier_crop_names_the_transform(tmp_path):
    resize = dict(type='Resize', scale=(32, 32))
    runner = build_runner(tiny_cfg(tmp_path, num_workers=0,
                                   pipeline=pipeline_with(3, resize)))
    with pytest.raises(RuntimeError) as err:
        runner.train()
    assert '(32, 32) images in every stage: Resize resizes or crops' in \
        str(err.value)


def test_magnitude_above_total_level_is_refused(tmp_path):
    """The ET preset raises m to 9; a StagedRandAug on a 0-5 scale would
    take it past its policies' ranges."""
    pipeline = tiny_pipeline()
    pipeline[1] = dict(type='StagedRandAug', magnitude_level=5,
                       total_level=5, hparams=dict(pad_val=128))
    runner = build_runner(tiny_cfg(tmp_path, num_workers=0,
                                   pipeline=pipeline))
    with pytest.raises(RuntimeError) as err:
        runner.train()
    msg = str(err.value)
    assert 'raises the RandAugment magnitude to m=9, but StagedRandAug has ' \
        'total_level=5' in msg
    assert 'Set total_level=10' in msg


def test_magnitude_within_total_level_trains(tmp_path):
    pipeline = tiny_pipeline()
    pipeline[1] = dict(type='StagedRandAug', magnitude_level=5,
                       total_level=5, hparams=dict(pad_val=128))
    curriculum = [dict(share=0.5, bandwidth=0.75, magnitude=2),
                  dict(share=0.5, bandwidth=1.0, magnitude=5)]
    runner = build_runner(tiny_cfg(
        tmp_path, num_workers=0, max_epochs=2, pipeline=pipeline,
        custom_hooks=[dict(type='EfficientTrainHook', curriculum=curriculum),
                      dict(type='BatchRecorder')]))
    runner.train()
    assert [recorder(runner)[e]['magnitudes'] for e in range(2)] == \
        [{2}, {5}]


def test_empty_image_file_is_named_with_the_fix(tmp_path):
    paths = write_folder(tmp_path / 'data', odd={'b/5.jpg': b''})
    runner = build_runner(folder_cfg(tmp_path / 'work', tmp_path / 'data',
                                     max_epochs=2, num_workers=0))
    with pytest.raises(PipelineStageError) as err:
        runner.train()
    msg = str(err.value)
    assert f'{paths[5]} is empty (0 bytes' in msg
    assert 'replace the file, or remove it and its entry' in msg


def test_empty_first_image_is_named_by_the_preflight(tmp_path):
    paths = write_folder(tmp_path / 'data', odd={'a/0.jpg': b''})
    runner = build_runner(folder_cfg(tmp_path / 'work', tmp_path / 'data',
                                     max_epochs=2, num_workers=0))
    with pytest.raises(RuntimeError) as err:
        runner.train()
    assert f'on {paths[0]}: {paths[0]} is empty (0 bytes' in str(err.value)


def test_a_configured_magnitude_other_than_the_final_m_is_warned(tmp_path):
    """The curriculum's m are absolute: StagedRandAug(magnitude_level=7)
    under the ET preset trains m=9 in the last stage, and the log says so."""
    pipeline = tiny_pipeline()
    pipeline[1] = dict(type='StagedRandAug', magnitude_level=7,
                       hparams=dict(pad_val=128))
    runner = build_runner(tiny_cfg(
        tmp_path, num_workers=0, max_epochs=5, pipeline=pipeline,
        custom_hooks=[dict(type='EfficientTrainHook'),
                      dict(type='BatchRecorder')]))
    runner.train()
    assert recorder(runner)[4]['magnitudes'] == {9}
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'configures RandAugment at magnitude_level=7, but the curriculum ' \
        'ends at m=9' in log


def test_a_bandwidth_below_the_floor_fails_before_training(tmp_path):
    """Issue 22, item 3, on a real Runner: nothing trains at 2x2 px."""
    from mmet.curriculum import CurriculumError
    runner = build_runner(tiny_cfg(tmp_path, num_workers=0, custom_hooks=[
        dict(type='EfficientTrainHook', curriculum=[
            dict(share=0.5, bandwidth=0.01, magnitude=1),
            dict(share=0.5, bandwidth=1.0, magnitude=9)])]))
    with pytest.raises(CurriculumError, match='below the floor of 8 px'):
        runner.train()
    assert runner.iter == 0
