"""The device input pipeline: bytes from the loader, the rest in the model.

CI has no GPU: everything runs on CPU tensors, through the same code.
"""
import os
import os.path as osp
import sys

import mmcv
import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_cfg
from mmcv.transforms import BaseTransform
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.datasets.transforms import RandomCrop, RandomResizedCrop
from mmpretrain.structures import DataSample
from mmpretrain.registry import HOOKS, MODELS, TRANSFORMS

from mmet.batch_transforms import (BatchRandomCrop, BatchRandomErasing,
                                   BatchRandomResizedCrop, fourier_crop_batch)
from mmet.device_pipeline import DeviceAugmentPreprocessor
from mmet.transforms import fourier_crop

sys.path.insert(0, osp.join(ROOT, 'tools'))
from foolbox_photos import jpeg_bytes  # noqa: E402

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

MEAN_RGB = [123.675, 116.28, 103.53]
STD_RGB = [58.395, 57.12, 57.375]


@pytest.mark.parametrize('shape,size', [
    ((2, 3, 32, 32), 20), ((2, 3, 32, 32), 19), ((1, 1, 31, 27), (16, 13)),
    ((3, 3, 40, 24), (24, 18)), ((2, 3, 32, 32), 32)])
def test_batch_crop_is_the_per_image_transform(shape, size):
    x = torch.rand(shape, dtype=torch.float64) * 255
    out = fourier_crop_batch(x, size)
    for n in range(shape[0]):
        ref = fourier_crop(x[n].permute(1, 2, 0).numpy(), size)
        np.testing.assert_allclose(
            out[n].permute(1, 2, 0).numpy(), ref, atol=1e-9)
    x32 = x.float()
    np.testing.assert_allclose(
        fourier_crop_batch(x32, size).double().numpy(), out.numpy(),
        atol=2e-3)


def test_batch_crop_keeps_dtype_and_channels_last():
    x = (torch.rand(2, 3, 32, 32) * 255)
    cl = x.contiguous(memory_format=torch.channels_last)
    out = fourier_crop_batch(cl, 16)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, fourier_crop_batch(x, 16))
    u8 = x.to(torch.uint8)
    out8 = fourier_crop_batch(u8, 16)
    assert out8.dtype == torch.uint8
    ref = fourier_crop_batch(u8.float(), 16).round().clamp(0, 255)
    torch.testing.assert_close(out8.float(), ref)
    half = fourier_crop_batch(x.half(), 16)
    assert half.dtype == torch.float16
    with pytest.raises(ValueError, match='larger than the 32x32 input'):
        fourier_crop_batch(x, 40)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """An ImageNet-style folder of real JPEGs (the foolbox photos)."""
    root = tmp_path_factory.mktemp('photos')
    for i, data in enumerate(jpeg_bytes(n=16)):
        folder = root / 'train' / f'class{i % 4}'
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f'{i:02d}.jpg').write_bytes(data)
    return str(root)


def preprocessor(**kwargs):
    cfg = dict(type='DeviceAugmentPreprocessor', crop_size=64, num_classes=4,
               mean=MEAN_RGB, std=STD_RGB, to_rgb=True)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_crops_match_the_cpu_random_resized_crop(photos):
    """Same boxes from the same numpy state, and the same pixels."""
    data = jpeg_bytes(n=4)
    # mmpretrain's own class (a registry lookup could find mmdet's)
    cpu = RandomResizedCrop(scale=64, backend='pillow',
                            interpolation='bicubic')
    dev = preprocessor()
    images = dev.decode([torch.frombuffer(bytearray(d), dtype=torch.uint8)
                         for d in data])
    assert isinstance(dev.steps[0], BatchRandomResizedCrop)
    np.random.seed(3)
    out = dev.steps[0](images)
    np.random.seed(3)
    for n, d in enumerate(data):
        bgr = mmcv.imfrombytes(d)
        ref = cpu(dict(img=bgr))['img'][..., ::-1]  # to RGB
        got = out[n].permute(1, 2, 0).numpy()
        diff = np.abs(got - ref.astype(np.float32))
        # decoders and resamplers differ by a few grey levels, not a crop
        assert diff.mean() < 3, (n, diff.mean())


def test_augment_output_and_mixup(photos):
    dev = preprocessor(
        randaug=dict(policies='timm_increasing', num_policies=2,
                     magnitude_level=9, magnitude_std=0.5,
                     hparams=dict(pad_val=[124, 116, 104])),
        erasing=dict(erase_prob=1.0, min_area_ratio=0.02,
                     max_area_ratio=1 / 3, fill_color=MEAN_RGB,
                     fill_std=STD_RGB),
        batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8)]))
    from mmpretrain.structures import DataSample
    data = dict(
        inputs=[torch.frombuffer(bytearray(d), dtype=torch.uint8)
                for d in jpeg_bytes(n=4)],
        data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    dev.fourier_crop.size = 40
    out = dev(data, training=True)
    assert out['inputs'].shape == (4, 3, 40, 40)
    assert out['inputs'].dtype == torch.float32
    # normalised, and mixup turned the labels into scores
    assert -3 < out['inputs'].mean() < 3
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    assert scores.shape == (4, 4) and (scores.sum(1) - 1).abs().max() < 1e-5
    with pytest.raises(RuntimeError, match='outside training'):
        dev(data, training=False)
    # decoded (val) batches pass straight through to ClsDataPreprocessor
    val = dev(dict(inputs=[torch.zeros(3, 8, 8, dtype=torch.uint8)]),
              training=False)
    assert val['inputs'].shape == (1, 3, 8, 8)


def test_padded_crop_matches_mmpretrain_random_crop():
    """crop_padding: mmpretrain's RandomCrop offsets from the same numpy
    state, so the very same pixels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    cpu = RandomCrop(crop_size=28, padding=2)
    crop = BatchRandomCrop(28, padding=2)
    np.random.seed(5)
    out = crop(torch.from_numpy(images)[:, None])
    np.random.seed(5)
    for n, img in enumerate(images):
        ref = cpu(dict(img=img))['img']
        np.testing.assert_array_equal(out[n, 0].numpy(), ref)
    with pytest.raises(ValueError, match='crop_padding=None'):
        crop([torch.zeros(1, 28, 28), torch.zeros(1, 30, 30)])
    dev = preprocessor(crop_size=28, crop_padding=2)
    assert [type(s).__name__ for s in dev.steps] == [
        'BatchRandomCrop', 'BatchFlip', 'BatchFourierCrop']


def test_decoded_train_batches_are_augmented():
    """Decoded uint8 batches (stacked or listed) go through steps 2-6 in RGB;
    floating batches count as augmented."""
    dev = preprocessor(crop_size=16, crop_padding=0, flip_prob=0,
                       mean=[0] * 3, std=[1] * 3, to_rgb=True)
    dev.fourier_crop.size = 12
    bgr = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    bgr[:, 0] = 200  # blue, in the loader's BGR order
    samples = [DataSample().set_gt_label(0) for _ in range(2)]
    for inputs in (bgr, list(bgr)):
        out = dev(dict(inputs=inputs, data_samples=samples), training=True)
        assert out['inputs'].shape == (2, 3, 12, 12)
        # to_rgb: blue ends in the last channel, unchanged by the low-pass
        torch.testing.assert_close(out['inputs'][:, 2],
                                   torch.full((2, 12, 12), 200.),
                                   atol=1e-3, rtol=0)
        assert out['inputs'][:, :2].abs().max() < 1e-3
    done = torch.rand(2, 3, 10, 10)
    out = dev(dict(inputs=done, data_samples=samples), training=True)
    assert out['inputs'].shape == (2, 3, 10, 10)  # not cropped again


@HOOKS.register_module(force=True)
class InputRecorder(Hook):
    """Record the preprocessed inputs' size and the RandAugment magnitude."""

    def __init__(self):
        self.seen = {}

    def before_train(self, runner):
        model = runner.model

        def record(module, args):
            if not module.training:  # validation runs at full size
                return
            self.seen.setdefault(runner.epoch, set()).add(
                (tuple(args[0].shape[-2:]),
                 model.data_preprocessor.randaug.magnitude_level))
        model.backbone.register_forward_pre_hook(record)


def test_hook_drives_the_device_pipeline_with_real_workers(photos, tmp_path):
    cfg = tiny_cfg(
        tmp_path, max_epochs=5,
        custom_hooks=[dict(type='EfficientTrainHook',
                           curriculum='efficienttrain'),
                      dict(type='InputRecorder')])
    cfg['model']['data_preprocessor'] = dict(
        type='DeviceAugmentPreprocessor', crop_size=64, num_classes=4,
        mean=MEAN_RGB, std=STD_RGB, to_rgb=True,
        randaug=dict(policies='timm_increasing', num_policies=2,
                     magnitude_level=9, magnitude_std=0.5))
    cfg['train_dataloader'].update(
        batch_size=4,
        collate_fn=dict(type='pseudo_collate'),
        dataset=dict(type='CustomDataset', data_root=photos,
                     data_prefix='train', with_label=True,
                     pipeline=[dict(type='LoadImageBytes'),
                               dict(type='PackInputs',
                                    input_key='img_bytes')]))
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    seen = next(h for h in runner.hooks
                if isinstance(h, InputRecorder)).seen
    # ET at 64 px: B = 46, 46, 46, 54, 64 and m = 1, 3, 5, 7, 9
    assert seen == {0: {((46, 46), 1)}, 1: {((46, 46), 3)},
                    2: {((46, 46), 5)}, 3: {((54, 54), 7)},
                    4: {((64, 64), 9)}}
    loader = runner.train_dataloader
    assert loader.num_workers == 2 and loader.persistent_workers
    assert os.path.exists(osp.join(runner.work_dir, 'epoch_5.pth'))


def test_batched_demo_config_trains_each_stage_with_a_worker(tmp_path):
    """configs/demo/fmnist_resnet_et_batchaug.py, on 512 demo images: the
    worker only packs, and the model sees each stage's B and m."""
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/demo/fmnist_resnet_et_batchaug.py'))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.indices = 512
    cfg.train_cfg.val_interval = 5
    cfg.val_dataloader.dataset.indices = 500
    cfg.custom_hooks.append(dict(type='InputRecorder'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    seen = next(h for h in runner.hooks
                if isinstance(h, InputRecorder)).seen
    # five stages of two epochs: B = 20, 20, 20, 24, 28 px; m = 1, 3, 5, 7, 9
    stages = [((20, 20), 1), ((20, 20), 3), ((20, 20), 5), ((24, 24), 7),
              ((28, 28), 9)]
    assert seen == {e: {stages[e // 2]} for e in range(10)}
    loader = runner.train_dataloader
    assert loader.num_workers == 1 and loader.persistent_workers
    assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline] == \
        ['PackInputs']


@TRANSFORMS.register_module(force=True)
class ToFloat(BaseTransform):
    """A pipeline step that leaves float images, as Normalize does."""

    def transform(self, results):
        results['img'] = results['img'].astype(np.float32)
        return results


def test_hook_refuses_float_batches_the_preprocessor_would_skip(tmp_path):
    """Float images pass DeviceAugmentPreprocessor unaugmented: under the
    hook that would be a curriculum without effect, so it fails loudly."""
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/demo/fmnist_resnet_et_batchaug.py'))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.indices = 256
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='ToFloat'), dict(type='PackInputs')]
    runner = Runner.from_cfg(cfg)
    with pytest.raises(RuntimeError, match='takes as augmented already'):
        runner.train()


def test_device_config_inherits_the_et_config():
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/device/resnet50_et-device_8xb256_in1k.py'))
    assert cfg.data_preprocessor.type == 'DeviceAugmentPreprocessor'
    assert cfg.data_preprocessor.crop_size == 224
    assert cfg.train_dataloader.collate_fn.type == 'pseudo_collate'
    assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline] == \
        ['LoadImageBytes', 'PackInputs']
    # the eval pipeline stays the CPU one
    assert cfg.val_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile'
    assert cfg.train_cfg.type == 'EfficientTrainLoop'
    pre = MODELS.build(cfg.data_preprocessor)
    assert isinstance(pre, DeviceAugmentPreprocessor)
    assert pre.randaug.magnitude_level == 9
    # the analysis tool finds the full size in the preprocessor
    import subprocess
    out = subprocess.run(
        [sys.executable, 'tools/analyze_curriculum.py',
         'configs/device/resnet50_et-device_8xb256_in1k.py'],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert 'predicted speedup 1.53x' in out and '  160  ' in out


def test_benchmark_curriculum_times_the_device_pipeline(tmp_path):
    """The ResNet ET device config (at depth 18) on --fake-data JPEGs."""
    import json
    import subprocess
    out = tmp_path / 'bench.json'
    res = subprocess.run(
        [sys.executable, 'tools/benchmark_curriculum.py',
         'configs/device/resnet50_et-device_8xb256_in1k.py',
         '--fake-data', '24', '--iters', '1', '--warmup', '1', '--repeats', '1',
         '--out', str(out), '--cfg-options', 'model.backbone.depth=18',
         'model.head.in_channels=512', 'model.head.num_classes=10',
         'data_preprocessor.num_classes=10',
         'train_dataloader.batch_size=4', 'train_dataloader.num_workers=1'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.load(open(out))
    assert [s['size'] for s in rep['stages']] == [160, 160, 160, 192, 224]
    assert all(s['loader'] > 0 and s['end_to_end'] > 0
               for s in rep['stages'])


def test_two_ddp_ranks_drive_the_device_pipeline(photos, tmp_path):
    """torchrun, 2 gloo ranks: the hook reaches the preprocessor through
    DDP (on CPUs mmet's CPUDistributedDataParallel, an
    MMDistributedDataParallel), on both ranks, stage by stage."""
    import json
    import subprocess
    config = tmp_path / 'ddp_device.py'
    config.write_text(
        f"_base_ = '{ROOT}/configs/device/resnet50_et-device_8xb256_in1k.py'\n"
        "custom_imports = dict(imports=['mmet', 'probe_hook'])\n"
        "custom_hooks = [dict(type='EfficientTrainHook'),\n"
        "                dict(type='ModelInputProbeHook')]\n"
        "model = dict(backbone=dict(depth=18),\n"
        "             head=dict(in_channels=512, num_classes=4))\n"
        "data_preprocessor = dict(num_classes=4, crop_size=64)\n"
        "train_dataloader = dict(batch_size=4, num_workers=1, dataset=dict(\n"
        "    _delete_=True, type='CustomDataset', data_prefix='train',\n"
        f"    data_root='{photos}', pipeline=_base_.et_device_pipeline))\n"
        "train_cfg = dict(max_epochs=5)\n"
        "param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True)]\n"
        "val_dataloader = val_cfg = val_evaluator = None\n"
        "test_dataloader = test_cfg = test_evaluator = None\n"
        "auto_scale_lr = dict(enable=False)\n")
    env = dict(os.environ, PYTHONPATH=osp.join(ROOT, 'tests'),
               OMP_NUM_THREADS='1')
    out = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run',
         '--nproc_per_node=2', '--master_port=29537', 'tools/train.py',
         str(config), '--launcher', 'pytorch', '--work-dir', str(tmp_path),
         '--cfg-options', 'env_cfg.dist_cfg.backend=gloo'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert out.returncode == 0, out.stderr[-4000:]
    for rank in (0, 1):
        rows = [json.loads(line)
                for line in open(tmp_path / f'inputs_rank{rank}.jsonl')]
        assert {r['wrapped'] for r in rows} == {
            'CPUDistributedDataParallel'}
        # ET at 64 px: B = 46, 46, 46, 54, 64 and m = 1, 3, 5, 7, 9
        assert [(r['shapes'], r['m']) for r in rows] == [
            ([[46, 46]], 1), ([[46, 46]], 3), ([[46, 46]], 5),
            ([[54, 54]], 7), ([[64, 64]], 9)]


def test_erasing_draws_one_box_per_image_in_the_area_range():
    erase = BatchRandomErasing(
        erase_prob=1.0, min_area_ratio=0.1, max_area_ratio=0.3,
        fill_color=0, fill_std=0.0)
    x = torch.full((64, 3, 40, 40), 100.)
    out = erase(x)
    erased = out == 0
    assert ((out == 0) | (out == 100)).all()
    for img in erased.all(1):  # the same box in every channel
        rows, cols = img.any(1).nonzero(), img.any(0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min()
                                                     + 1)
        assert img.sum() == h * w  # one filled rectangle
        assert 0.1 * 1600 * 0.8 <= h * w <= 0.3 * 1600 * 1.2
    erase.settings.erase_prob = 0.0
    assert torch.equal(erase(x), x)
    with pytest.raises(ValueError, match="'rand' mode only"):
        preprocessor(erasing=dict(mode='const'))
