"""A sample that fails in a data worker names its file and the stage.

Real JPEG folders read by mmpretrain's ``CustomDataset``, real Runners with
persistent worker processes, and ``tools/train.py`` in a subprocess for a
worker that is killed outright.
"""
import os
import os.path as osp
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, build_runner, tiny_cfg
from mmengine.config import Config
from mmpretrain.registry import DATASETS

from mmet.curriculum import Curriculum
from mmet.driver import PipelineStageError, StageDriver
from mmet.hooks import EfficientTrainHook
from mmet.plan import StageClock


def write_folder(root, num=8, size=32, odd=None):
    """An ImageNet-style folder ``root/{a,b}/<i>.jpg`` of real JPEGs.

    ``odd`` maps an image name (e.g. ``'b/5.jpg'``) to a replacement: raw
    bytes, or an int for a JPEG of that many pixels instead of ``size``.
    Returns the paths in ``CustomDataset``'s order.
    """
    rng = np.random.default_rng(0)
    odd = odd or {}
    paths = []
    for i in range(num):
        name = f"{'ab'[i * 2 // num]}/{i}.jpg"
        path = osp.join(root, name)
        os.makedirs(osp.dirname(path), exist_ok=True)
        fix = odd.get(name)
        if isinstance(fix, bytes):
            with open(path, 'wb') as f:
                f.write(fix)
        else:
            side = fix or size
            img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            assert cv2.imwrite(path, img)
        paths.append(path)
    return paths


def folder_pipeline(backend='cv2'):
    return [
        dict(type='LoadImageFromFile', imdecode_backend=backend),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='StagedRandAug', magnitude_level=9,
             hparams=dict(pad_val=128)),
        dict(type='FourierCrop', size=32),
        dict(type='PackInputs'),
    ]


def folder_cfg(work_dir, data_root, max_epochs, backend='cv2', **kwargs):
    cfg = tiny_cfg(work_dir, max_epochs=max_epochs, custom_hooks=[
        dict(type='EfficientTrainHook', curriculum='efficienttrain')],
        **kwargs)
    loader = cfg['train_dataloader']
    loader['batch_size'] = 4
    loader['dataset'] = dict(type='CustomDataset', data_root=str(data_root),
                             pipeline=folder_pipeline(backend))
    return cfg


def test_corrupt_jpeg_in_a_worker_names_file_and_stage(tmp_path):
    good = tmp_path / 'good.jpg'
    cv2.imwrite(str(good), np.full((32, 32, 3), 90, np.uint8))
    # a JPEG cut off after its first 120 bytes: Pillow's error for it
    # ("OSError: Truncated File Read") names no file
    paths = write_folder(tmp_path / 'data',
                         odd={'b/5.jpg': good.read_bytes()[:120]})
    runner = build_runner(folder_cfg(tmp_path / 'work', tmp_path / 'data',
                                     max_epochs=2, backend='pillow'))
    assert runner.train_dataloader.persistent_workers
    with pytest.raises(PipelineStageError) as err:
        runner.train()
    msg = str(err.value)
    assert 'DataLoader worker' in msg  # it failed in a worker process
    assert f'failed on {paths[5]} in EfficientTrain stage 2/5 ' \
        '(B=22, m=3, epoch 1 of 2)' in msg
    assert 'OSError: Truncated File Read' in msg  # the cause is kept


def test_stage_text_follows_the_curriculum_into_workers(tmp_path):
    """A 24 px image passes B=22 but fails at stage 4 (B=28): the worker,
    re-forked at each switch, must report stage 4, not stage 1."""
    paths = write_folder(tmp_path / 'data', odd={'b/6.jpg': 24})
    runner = build_runner(folder_cfg(tmp_path / 'work', tmp_path / 'data',
                                     max_epochs=5))
    with pytest.raises(PipelineStageError) as err:
        runner.train()
    msg = str(err.value)
    assert runner.epoch == 3  # three epochs trained with the small image
    assert f'failed on {paths[6]} in EfficientTrain stage 4/5 ' \
        '(B=28, m=7, epoch 4 of 5): ValueError: FourierCrop to 28x28 got ' \
        'a 24x24 image' in msg
    hook = next(h for h in runner.hooks if isinstance(h, EfficientTrainHook))
    assert hook.current_stage == 'stage 4/5 (B=28, m=7), epoch 4/5'


def test_failure_in_the_first_sample_is_caught_before_training(tmp_path):
    paths = write_folder(tmp_path / 'data', odd={'a/0.jpg': b'not a jpeg'})
    runner = build_runner(folder_cfg(tmp_path / 'work', tmp_path / 'data',
                                     max_epochs=5))
    with pytest.raises(RuntimeError) as err:
        runner.train()
    msg = str(err.value)
    # the pre-flight check names the stage and the file once each
    assert msg.startswith('EfficientTrainHook: the train pipeline fails in '
                          'stage 1/5 (B=22, m=1, epoch 1 of 5) on '
                          f'{paths[0]}: AssertionError: failed to load image')
    assert msg.count('stage') == 1


def test_wrapped_pipeline_pickles_for_spawned_workers(tmp_path):
    paths = write_folder(tmp_path / 'data', num=4,
                         odd={'b/3.jpg': b'\xff\xd8garbage'})
    dataset = DATASETS.build(dict(type='CustomDataset',
                                  data_root=str(tmp_path / 'data'),
                                  pipeline=folder_pipeline()))
    driver = StageDriver(Curriculum.build('efficienttrain')).bind(dataset)
    driver.apply(StageClock(driver.curriculum, 10, driver.full_size).state(3))
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.pipeline.stage == 'stage 4/5 (B=28, m=7, epochs 7-8 of 10)'
    assert copy[0]['inputs'].shape[-2:] == (28, 28)
    # the driver still finds its transforms through the wrapper
    assert [type(t).__name__ for t in copy.pipeline.transforms][-2:] == \
        ['FourierCrop', 'PackInputs']
    with pytest.raises(PipelineStageError, match=f'failed on {paths[3]} in '
                       r'EfficientTrain stage 4/5 \(B=28') as err:
        copy[3]
    assert isinstance(err.value.__cause__, AssertionError)
    # binding again (a second runner.train()) does not wrap twice
    StageDriver(Curriculum.build('efficienttrain')).bind(dataset)
    assert not isinstance(dataset.pipeline.pipeline, type(dataset.pipeline))


KILLER = '''
import os, signal
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from torch.utils.data import get_worker_info


@TRANSFORMS.register_module()
class KillWorkerAt(BaseTransform):
    """SIGKILL the data worker (as the OOM killer would) at size ``size``."""

    def __init__(self, size):
        self.size = size

    def transform(self, results):
        if get_worker_info() is not None and \\
                results['img'].shape[0] == self.size:
            os.kill(os.getpid(), signal.SIGKILL)
        return results
'''


def test_train_py_logs_the_stage_when_a_worker_is_killed(tmp_path):
    (tmp_path / 'killer.py').write_text(KILLER)
    write_folder(tmp_path / 'data')
    cfg = folder_cfg(tmp_path / 'work', tmp_path / 'data', max_epochs=5,
                     log_level='INFO',
                     custom_imports=dict(imports=['mmet', 'killer']))
    cfg['train_dataloader']['dataset']['pipeline'].insert(
        -1, dict(type='KillWorkerAt', size=28))
    Config(cfg).dump(str(tmp_path / 'killed.py'))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS='1')
    out = subprocess.run(
        [sys.executable, 'tools/train.py', str(tmp_path / 'killed.py'),
         '--work-dir', str(tmp_path / 'work')],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert 'Training stopped in EfficientTrain stage 4/5 (B=28, m=7), ' \
        'epoch 4/5: RuntimeError: DataLoader worker (pid' in text, \
        text[-3000:]
    # and it is in the log file, too
    logs = [osp.join(d, f) for d, _, fs in os.walk(tmp_path / 'work')
            for f in fs if f.endswith('.log')]
    assert any('Training stopped in EfficientTrain stage 4/5'
               in open(p).read() for p in logs)
