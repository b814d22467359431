"""Shared fixtures: a tiny real dataset and a real mmengine Runner."""
import itertools
import os
import os.path as osp
import sys

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FMNIST = osp.join(ROOT, 'data/fashion-mnist')

sys.path.insert(0, ROOT)

import mmet  # noqa: E402,F401  (registers transforms, hooks, compat)
from mmcv.transforms import BaseTransform  # noqa: E402
from mmengine.dataset import BaseDataset  # noqa: E402
from mmpretrain.registry import DATASETS, HOOKS, TRANSFORMS  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402


@pytest.fixture
def mmpretrain_scope():
    """mmpretrain as the default registry scope, whatever ran before (the
    mmdet tests leave mmdet's)."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')


@pytest.fixture
def fmnist() -> str:
    """The demo data; tools/setup_env.sh fetches it, so absence fails."""
    assert osp.exists(osp.join(FMNIST, 'train-images-idx3-ubyte')), \
        f'Fashion-MNIST missing in {FMNIST}: run tools/setup_env.sh'
    return FMNIST


@DATASETS.register_module(force=True)
class TinyImages(BaseDataset):
    """``num`` random 3-channel uint8 images of ``size`` px, 4 classes."""

    def __init__(self, num=32, size=32, **kwargs):
        self.num, self.size = num, size
        super().__init__(ann_file='', serialize_data=False, **kwargs)

    def load_data_list(self):
        rng = np.random.default_rng(0)
        return [
            dict(img=rng.integers(0, 256, (self.size, self.size, 3),
                                  dtype=np.uint8),
                 gt_label=int(i % 4)) for i in range(self.num)
        ]


@TRANSFORMS.register_module(force=True)
class RecordWorker(BaseTransform):
    """Stamp the pid of the process that ran the pipeline."""

    def transform(self, results):
        results['worker_pid'] = os.getpid()
        return results


@HOOKS.register_module(force=True)
class BatchRecorder(Hook):
    """Record, per epoch, what the loader really delivered."""

    priority = 'LOWEST'

    def __init__(self):
        self.seen = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        rec = self.seen.setdefault(runner.epoch, dict(
            shapes=set(), magnitudes=set(), pids=set(), lr=None))
        rec['shapes'] |= {tuple(x.shape[-2:]) for x in data_batch['inputs']}
        for s in data_batch['data_samples']:
            rec['magnitudes'].add(s.randaug_magnitude)
            rec['pids'].add(s.worker_pid)
        if rec['lr'] is None:
            rec['lr'] = runner.optim_wrapper.get_lr()['lr'][0]


@HOOKS.register_module(force=True)
class StopAfterEpoch(Hook):
    """Stop training after ``epoch`` epochs, as an interrupted run would."""

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 >= self.epoch:
            runner.train_loop.stop_training = True


_RUN_IDS = itertools.count()


def tiny_pipeline(full=32, meta=True):
    pipeline = [
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='StagedRandAug', magnitude_level=9,
             hparams=dict(pad_val=128)),
        dict(type='FourierCrop', size=full),
        dict(type='RecordWorker'),
    ]
    keys = ('randaug_magnitude', 'worker_pid', 'img_shape')
    pipeline.append(dict(type='PackInputs', meta_keys=keys) if meta else
                    dict(type='PackInputs'))
    return pipeline


def tiny_cfg(work_dir, pipeline=None, custom_hooks=None, max_epochs=5,
             num_workers=2, persistent_workers=True, train_cfg=None,
             **kwargs):
    """A complete Runner config: tiny ResNet, tiny data, real workers."""
    cfg = dict(
        default_scope='mmpretrain',
        work_dir=str(work_dir),
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(num_classes=4, mean=[128] * 3,
                                   std=[64] * 3),
            backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8,
                          base_channels=8, out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=64,
                      loss=dict(type='CrossEntropyLoss'))),
        train_dataloader=dict(
            batch_size=8,
            num_workers=num_workers,
            persistent_workers=persistent_workers and num_workers > 0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(type='TinyImages', num=32,
                         pipeline=pipeline or tiny_pipeline())),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True,
                              T_max=max_epochs)],
        train_cfg=train_cfg or dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=custom_hooks if custom_hooks is not None else [
            dict(type='EfficientTrainHook', curriculum='efficienttrain'),
            dict(type='BatchRecorder'),
        ],
        env_cfg=dict(mp_cfg=dict(mp_start_method='fork')),
        randomness=dict(seed=0),
        log_level='WARNING',
        # one mmengine logger/visualizer per runner, even within one second
        experiment_name=f'{osp.basename(str(work_dir))}_{next(_RUN_IDS)}',
    )
    cfg.update(kwargs)
    return cfg


def eval_loader(num=8):
    """A val/test loader of ``num`` tiny images at full size, in order."""
    return dict(
        batch_size=8, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='TinyImages', num=num,
                     pipeline=[dict(type='PackInputs')]))


def on_the_batched_path(cfg):
    """Move a tiny config's augmentation into the trainer: the 32 px images
    go to a DeviceAugmentPreprocessor (padded crop, flip, RandAugment,
    Fourier crop), the pipeline only packs them."""
    cfg['model']['data_preprocessor'] = dict(
        type='DeviceAugmentPreprocessor', crop_size=32, crop_padding=4,
        num_classes=4, mean=[128] * 3, std=[64] * 3,
        randaug=dict(policies='timm_increasing', num_policies=2,
                     magnitude_level=9, magnitude_std=0.5))
    cfg['train_dataloader']['dataset']['pipeline'] = [
        dict(type='PackInputs')]
    return cfg


def build_runner(cfg):
    """A Runner of ``cfg``, which loads checkpoints weights-only with mmet's
    allow-list, as mmet's entry points (tools/train.py) do."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmet.checkpoint import safe_loading
    safe_loading()
    return Runner.from_cfg(Config(cfg))


def recorder(runner):
    return next(h for h in runner.hooks if isinstance(h, BatchRecorder)).seen


@pytest.fixture
def tiny_runner(tmp_path):
    def make(**kwargs):
        return build_runner(tiny_cfg(tmp_path / 'work', **kwargs))
    return make
