"""The shipped configs: they load, carry the curriculum, and their models
train at every bandwidth of the preset."""
import glob
import json
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS, TRANSFORMS
from mmcv.transforms import Compose

from mmet.curriculum import Curriculum
from mmet.sizes import at_bandwidth
from mmet.swin import set_swin_window

IMAGENET = sorted(glob.glob(osp.join(ROOT, 'configs/efficienttrain/*.py')))
ET_224 = [at_bandwidth(s.bandwidth, 224)
          for s in Curriculum.build('efficienttrain').stages]


def test_all_four_imagenet_configs_exist():
    names = {osp.basename(p).split('_')[0] for p in IMAGENET}
    assert names == {'resnet50', 'convnext-tiny', 'deit-small', 'swin-tiny'}


@pytest.mark.parametrize('path', IMAGENET, ids=osp.basename)
def test_imagenet_config_wires_the_curriculum(path):
    cfg = Config.fromfile(path)
    assert 'mmet' in cfg.custom_imports['imports']
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandAugment' not in types
    assert types.index('StagedRandAug') < types.index('FourierCrop') == \
        len(types) - 2
    # the loop plans the run (and registers the hook), with the fast step
    assert 'EfficientTrainHook' not in str(cfg.get('custom_hooks'))
    loop = cfg.train_cfg
    assert (loop.type, loop.curriculum, loop.max_epochs, loop.micro_batch) \
        == ('EfficientTrainLoop', 'efficienttrain', 300, 'auto')
    assert cfg.optim_wrapper.constructor == 'FastStepConstructor'
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    # evaluation stays at full size
    assert 'FourierCrop' not in str(cfg.val_dataloader.dataset.pipeline)
    # Table 14: RandAug (9, 0.5), AdamW, wd 0.05, cosine after 20 warm-up
    ra = next(t for t in cfg.train_dataloader.dataset.pipeline
              if t['type'] == 'StagedRandAug')
    assert (ra['magnitude_level'], ra['magnitude_std']) == (9, 0.5)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.param_scheduler[0]['end'] == 20


@pytest.mark.parametrize('path', IMAGENET, ids=osp.basename)
def test_imagenet_model_trains_at_every_bandwidth(path):
    cfg = Config.fromfile(path)
    init_default_scope('mmpretrain')
    model_cfg = cfg.model
    model_cfg.head.num_classes = 10  # a small head is enough here
    model_cfg.pop('train_cfg', None)  # mixup needs a batch > 1 label space
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.train()
    from mmpretrain.structures import DataSample
    for size in sorted(set(ET_224)):
        set_swin_window(model, size // 32)  # the driver's job (Swin only)
        x = torch.randn(2, 3, size, size)
        samples = [DataSample().set_gt_label(i) for i in (1, 2)]
        loss = model.loss(x, samples)['loss']
        loss.backward()
        assert torch.isfinite(loss), size
        grads = [p.grad for p in model.backbone.parameters()
                 if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        model.zero_grad()


def test_imagenet_pipeline_produces_each_stage_size(tmp_path):
    """The real ET train pipeline on a real JPEG file, at every stage."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/efficienttrain.py'))
    init_default_scope('mmpretrain')
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (375, 500, 3), np.uint8),
                           (9, 9), 3)
    path = str(tmp_path / 'photo.jpg')
    cv2.imwrite(path, img)
    pipeline = Compose([TRANSFORMS.build(t) for t in cfg.et_train_pipeline])
    crop = next(t for t in pipeline.transforms if type(t).__name__ ==
                'FourierCrop')
    for size in ET_224:
        crop.size = size
        out = pipeline(dict(img_path=path, gt_label=0))
        assert tuple(out['inputs'].shape) == (3, size, size)
        assert out['inputs'].dtype == torch.uint8


def run_tool(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def test_analyze_curriculum_table_and_json(tmp_path):
    path = osp.join(ROOT, 'configs/efficienttrain/resnet50_et_8xb256_in1k.py')
    table = run_tool('tools/analyze_curriculum.py', path)
    assert 'predicted speedup 1.53x' in table
    assert '0-60 (60)' in table and '240-300 (60)' in table
    rep = json.loads(run_tool('tools/analyze_curriculum.py', path, '--json'))
    assert [r['size'] for r in rep['stages']] == ET_224
    assert [r['magnitude'] for r in rep['stages']] == [1, 3, 5, 7, 9]
    png = tmp_path / 'c.png'
    demo = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')
    out = run_tool('tools/analyze_curriculum.py', demo, '--plot', str(png),
                   '--cfg-options', 'train_cfg.max_epochs=20')
    assert '20 full-size epochs' in out and png.stat().st_size > 1000
    assert [20, 20, 20, 24, 28] == [
        r['size'] for r in json.loads(run_tool(
            'tools/analyze_curriculum.py', demo, '--json'))['stages']]
