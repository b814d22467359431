"""One line on a stock mmpretrain config: the hook adapts its pipeline and
model itself.

The train pipelines are the ones mmpretrain ships for ResNet-50, ConvNeXt-T,
DeiT-S and Swin-T (read from its configs), on tiny in-memory images with the
crop shrunk; the backbones are the same types at tiny widths. Each run has
2 persistent workers, and only ``dict(type='EfficientTrainHook')``.
"""
import os.path as osp

import mmpretrain
import pytest
import torch
from conftest import build_runner, tiny_cfg
from mmengine.config import Config
from mmengine.hooks import Hook
from mmpretrain.models.utils import ShiftWindowMSA
from mmpretrain.registry import HOOKS

from mmet.checks import preflight_model
from mmet.hooks import EfficientTrainHook

CONFIGS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs')


@HOOKS.register_module(force=True)
class ModelInputRecorder(Hook):
    """Per epoch: what the backbone got in training, the m the workers
    stamped, the Swin windows."""

    priority = 'LOWEST'

    def __init__(self):
        self.seen = {}

    def _rec(self, runner):
        return self.seen.setdefault(runner.epoch, dict(
            shapes=set(), magnitudes=set(), windows=set()))

    def before_train(self, runner):
        def record(module, args):
            if module.training:
                self._rec(runner)['shapes'].add(tuple(args[0].shape[-2:]))
        runner.model.backbone.register_forward_pre_hook(record)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        rec = self._rec(runner)
        for s in data_batch['data_samples']:
            rec['magnitudes'].add(s.get('randaug_magnitude'))
        rec['windows'] |= {m.window_size for m in runner.model.modules()
                           if isinstance(m, ShiftWindowMSA)}


def stock_pipeline(config: str, full: int) -> list:
    """The shipped train pipeline, on in-memory images, cropping to
    ``full`` px (a small share of the image, as at 224 of ImageNet)."""
    pipeline = Config.fromfile(osp.join(CONFIGS, config)).to_dict()[
        'train_dataloader']['dataset']['pipeline']
    assert pipeline[0]['type'] == 'LoadImageFromFile'
    pipeline = pipeline[1:]  # TinyImages hold decoded images
    assert pipeline[0]['type'] == 'RandomResizedCrop'
    pipeline[0]['scale'] = full
    assert pipeline[-1]['type'] == 'PackInputs'
    pipeline[-1]['meta_keys'] = ('randaug_magnitude', 'img_shape')
    return pipeline


MODELS = {
    'resnet50': ('resnet/resnet50_8xb32_in1k.py', 32, dict(
        backbone=dict(type='ResNet', depth=18, stem_channels=8,
                      base_channels=8, out_indices=(3, )),
        in_channels=64)),
    # ConvNeXt's stride-2 downsampling convolutions need B >= 32
    'convnext-tiny': ('convnext/convnext-tiny_32xb128_in1k.py', 64, dict(
        backbone=dict(type='ConvNeXt', arch=dict(
            depths=[1, 1, 1, 1], channels=[8, 16, 32, 64])),
        neck=None, in_channels=64)),
    # 112 px keeps ET's B (80, 96, 112) multiples of the 16 px patch, as
    # 160 and 192 are at 224
    'deit-small': ('deit/deit-small_4xb256_in1k.py', 112, dict(
        backbone=dict(type='VisionTransformer', arch=dict(
            embed_dims=32, num_layers=2, num_heads=2,
            feedforward_channels=64), img_size=112, patch_size=16),
        neck=None, in_channels=32)),
    'swin-tiny': ('swin_transformer/swin-tiny_16xb64_in1k.py', 112, dict(
        backbone=dict(type='SwinTransformer', arch=dict(
            embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2]),
            img_size=112, window_size=3),
        in_channels=128)),
}
# ET at the full size: stages 1-3, 4 and 5
ET_B = {32: [22, 22, 22, 28, 32], 64: [46, 46, 46, 54, 64],
        112: [80, 80, 80, 96, 112]}
ET_M = [1, 3, 5, 7, 9]


def adapted_cfg(work_dir, name, **kwargs):
    config, full, spec = MODELS[name]
    spec = dict(spec)
    in_channels = spec.pop('in_channels')
    cfg = tiny_cfg(work_dir, pipeline=stock_pipeline(config, full),
                   custom_hooks=[dict(type='EfficientTrainHook'),
                                 dict(type='ModelInputRecorder')],
                   log_level='INFO', **kwargs)
    cfg['train_dataloader']['dataset'].update(num=16, size=full + full // 4)
    cfg['model'].update(spec)
    cfg['model']['head']['in_channels'] = in_channels
    return cfg


@pytest.mark.parametrize('name', sorted(MODELS))
def test_stock_pipeline_is_adapted_and_each_stage_reaches_model_and_workers(
        name, tmp_path):
    runner = build_runner(adapted_cfg(tmp_path / 'work', name))
    assert runner.train_dataloader.persistent_workers
    runner.train()
    seen = next(h for h in runner.hooks
                if isinstance(h, ModelInputRecorder)).seen
    full = MODELS[name][1]
    assert [seen[e]['shapes'] for e in range(5)] == \
        [{(b, b)} for b in ET_B[full]]
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'EfficientTrain adapted the train pipeline of TinyImages' in log
    if name == 'resnet50':  # no RandAugment: its own augmentation stays
        assert all(seen[e]['magnitudes'] == {None} for e in range(5))
        assert 'only B follows the curriculum' in log
        assert 'inserted FourierCrop(size=32)' in log
    else:  # RandAugment became StagedRandAug, in the workers
        assert [seen[e]['magnitudes'] for e in range(5)] == \
            [{m} for m in ET_M]
        assert 'RandAugment -> StagedRandAug (the same' in log
    if name == 'swin-tiny':  # the window follows B: 80 // 32, 96 // 32
        assert [seen[e]['windows'] for e in range(5)] == \
            [{2}, {2}, {2}, {3}, {3}]
        # and the model is a stock Swin again outside training
        assert {m.window_size for m in runner.model.modules()
                if isinstance(m, ShiftWindowMSA)} == {3}
    hook = next(h for h in runner.hooks if isinstance(h, EfficientTrainHook))
    assert hook.plan.full_size == full


def test_low_pass_resize_takes_the_cheap_path(tmp_path):
    cfg = adapted_cfg(tmp_path / 'work', 'convnext-tiny', num_workers=0)
    cfg['custom_hooks'][0]['low_pass'] = 'resize'
    runner = build_runner(cfg)
    runner.train()
    transforms = [type(t).__name__ for t in
                  runner.train_dataloader.dataset.pipeline.transforms]
    assert transforms[0] == 'StagedRandomResizedCrop'
    assert 'FourierCrop' not in transforms
    seen = next(h for h in runner.hooks
                if isinstance(h, ModelInputRecorder)).seen
    assert [seen[e]['shapes'] for e in range(5)] == \
        [{(b, b)} for b in ET_B[64]]


def test_vit_b_not_a_multiple_of_the_patch_is_refused(tmp_path):
    cfg = adapted_cfg(tmp_path / 'work', 'deit-small', num_workers=0)
    # at 96 px ET's B are 68 and 82: not multiples of 16
    cfg['train_dataloader']['dataset']['pipeline'][0]['scale'] = 96
    cfg['model']['backbone']['img_size'] = 96
    with pytest.raises(ValueError, match=r'embeds 16x16 patches, but stage '
                       r'1/5 \(B=68, m=1, epoch 1 of 5\) trains at B=68.*'
                       r'multiple of 16'):
        build_runner(cfg).train()


def test_preflight_names_the_model_and_the_b_it_does_not_take():
    from mmpretrain.models import ImageClassifier
    model = ImageClassifier(backbone=dict(type='LeNet5', num_classes=4))
    before = [p.detach().clone() for p in model.parameters()]
    preflight_model(model, [32])  # LeNet-5 takes exactly 32 px
    # gradients, weights and mode as they were
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(RuntimeError, match=r'ImageClassifier with LeNet5 '
                       r'does not train at B=22 .*random 22x22 images'):
        preflight_model(model, [22])


def test_preflight_catches_it_in_the_hook_before_training(tmp_path):
    cfg = tiny_cfg(tmp_path / 'work', num_workers=0, max_epochs=5)
    cfg['model'].update(backbone=dict(type='LeNet5', num_classes=4),
                        neck=None, head=dict(
                            type='ClsHead',
                            loss=dict(type='CrossEntropyLoss')))
    runner = build_runner(cfg)
    with pytest.raises(RuntimeError, match='LeNet5 does not train at B=22'):
        runner.train()
