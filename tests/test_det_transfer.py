"""COCO transfer: configs/det, tools/extract_backbone.py, tools/fetch_det_data.py.

The chain is run for real on the CPU, at toy sizes: the shipped ImageNet
EfficientTrain configs train for one epoch on four random images, their
backbones are extracted, and mmdet trains and evaluates RetinaNet (through
tools/train.py and tools/test.py) and Cascade Mask R-CNN on ``coco_tiny``,
the tiny real COCO-format set made by tools/fetch_det_data.py.
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import mmet  # noqa: E402,F401
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import BaseDataset  # noqa: E402
from mmengine.hooks import EMAHook  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.registry import DATASETS  # noqa: E402

DET = osp.join(ROOT, 'configs', 'det')
DET_CONFIGS = sorted(f for f in os.listdir(DET) if f.endswith('.py'))
ARCH_OF = {'r50': 'resnet50', 'swin-t': 'swin-tiny', 'convnext-t': 'convnext-tiny'}
ET_CONFIGS = {
    'resnet50': 'resnet50_et_8xb256_in1k.py',
    'swin-tiny': 'swin-tiny_et_16xb64_in1k.py',
    'convnext-tiny': 'convnext-tiny_et_32xb128_in1k.py',  # has EMAHook
}


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'mmet_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


eb = _load_tool('extract_backbone')
fdd = _load_tool('fetch_det_data')


def arch_of_config(name):
    return next(a for k, a in ARCH_OF.items() if f'_{k}' in name)


def _run(args, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300, **kwargs)


# data ------------------------------------------------------------------------
def _cache_dir():
    return osp.join(os.environ.get('MMET_CACHE',
                                   osp.expanduser('~/.cache/mmet')),
                    'downloads')


@pytest.fixture(scope='session')
def coco_tiny(tmp_path_factory):
    """The set that tools/setup_env.sh makes, or a fresh one from the cache."""
    for root in (os.environ.get('MMET_DATA'), osp.join(ROOT, 'data')):
        if root and fdd.is_complete(osp.join(root, 'coco_tiny')):
            return osp.join(root, 'coco_tiny') + '/'
    out = str(tmp_path_factory.mktemp('data') / 'coco_tiny')
    try:
        fdd.build(out, _cache_dir())
    except fdd.FetchError as e:
        pytest.fail(f"coco_tiny could not be built; run tools/setup_env.sh: {e}")
    return out + '/'


def test_fetch_det_data_is_idempotent_real_coco(tmp_path, coco_tiny):
    from mmdet.datasets import CocoDataset
    from pycocotools.coco import COCO
    out = tmp_path / 'coco_tiny'
    fdd.main([str(out), '--cache', _cache_dir(), '--offline'])
    stamp = {p: os.stat(p).st_mtime_ns for p in out.rglob('*')}
    fdd.main([str(out), '--cache', _cache_dir(), '--offline'])  # no-op
    assert {p: os.stat(p).st_mtime_ns for p in out.rglob('*')} == stamp

    counts = {}
    for split in ('train', 'val'):
        ann = out / 'annotations' / f'instances_{split}2017.json'
        coco = COCO(str(ann))
        cats = json.loads(ann.read_text())['categories']
        # the 80 COCO categories, in mmdet's order, with the official ids
        assert tuple(c['name'] for c in cats) == CocoDataset.METAINFO['classes']
        assert cats[-1]['id'] == 90
        assert min(coco.anns) >= 1  # COCOeval reads annotation id 0 as unmatched
        for img in coco.imgs.values():
            assert (out / f'{split}2017' / img['file_name']).is_file()
        counts[split] = (len(coco.imgs), len(coco.anns))
    assert counts == dict(train=(3, 12), val=(1, 19))

    # a folder that is not ours is never deleted
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(fdd.FetchError, match='not a coco_tiny'):
        fdd.build(str(foreign), _cache_dir(), offline=True)


def test_coco_tiny_ground_truth_scores_ap_1(coco_tiny):
    """The annotations as predictions give AP 1.0 through mmdet's CocoMetric:
    categories, boxes and polygons are read as COCO."""
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from pycocotools.coco import COCO
    ann_file = coco_tiny + 'annotations/instances_val2017.json'
    coco = COCO(ann_file)
    classes = CocoDataset.METAINFO['classes']
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=classes)
    samples = []
    for img_id, img in coco.imgs.items():
        anns = coco.imgToAnns[img_id]
        boxes = [[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                  a['bbox'][1] + a['bbox'][3]] for a in anns]
        samples.append(dict(
            img_id=img_id, ori_shape=(img['height'], img['width']),
            pred_instances=dict(
                bboxes=torch.tensor(boxes),
                scores=torch.ones(len(anns)),
                labels=torch.tensor([classes.index(
                    coco.cats[a['category_id']]['name']) for a in anns]),
                masks=torch.from_numpy(np.stack(
                    [coco.annToMask(a) for a in anns]).astype(bool)))))
    metric.process({}, samples)
    result = metric.evaluate(size=len(samples))
    assert result['coco/bbox_mAP'] == pytest.approx(1.0)
    assert result['coco/segm_mAP'] == pytest.approx(1.0)


# classification checkpoints from real (tiny) mmet runs ----------------------
@DATASETS.register_module(force=True)
class DetTransferImages(BaseDataset):
    """``num`` random 80x80 uint8 images, 4 classes."""

    def __init__(self, num=4, size=80, **kwargs):
        self.num, self.size = num, size
        super().__init__(ann_file='', serialize_data=False, **kwargs)

    def load_data_list(self):
        rng = np.random.default_rng(0)
        return [dict(img=rng.integers(0, 256, (self.size, self.size, 3),
                                      dtype=np.uint8), gt_label=i % 4)
                for i in range(self.num)]


def _train_classifier(arch, work_dir):
    """One epoch (2 iterations) of the shipped ET config at 64 px."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'efficienttrain',
                                   ET_CONFIGS[arch]))
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(type='DetTransferImages', num=4, size=80, pipeline=[
            dict(type='RandomResizedCrop', scale=64, backend='pillow',
                 interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
            dict(type='StagedRandAug', policies='timm_increasing',
                 num_policies=2, total_level=10, magnitude_level=9,
                 magnitude_std=0.5, hparams=dict(pad_val=128)),
            dict(type='FourierCrop', size=64),
            dict(type='PackInputs'),
        ]))
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg',
                'test_dataloader', 'test_evaluator', 'test_cfg'):
        cfg[key] = None
    cfg.train_cfg.max_epochs = 1  # the shipped EfficientTrainLoop's plan
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True,
                                T_max=1, convert_to_iter_based=True)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    cfg.experiment_name = f'det_transfer_cls_{arch}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    # ground truth for the EMA tests, from the runner rather than the file
    live = {k: v.clone() for k, v in runner.model.backbone.state_dict().items()}
    emas = [h for h in runner.hooks if isinstance(h, EMAHook)]
    ema = ({k: v.clone() for k, v in
            emas[0].ema_model.module.backbone.state_dict().items()}
           if emas else None)
    return dict(path=osp.join(cfg.work_dir, 'epoch_1.pth'), live=live,
                ema=ema)


@pytest.fixture(scope='session')
def classifiers(tmp_path_factory):
    root = tmp_path_factory.mktemp('cls')
    return {arch: _train_classifier(arch, root / arch) for arch in ET_CONFIGS}


@pytest.fixture(scope='session')
def backbones(classifiers, tmp_path_factory):
    root = tmp_path_factory.mktemp('backbones')
    out = {}
    for arch, run in classifiers.items():
        out[arch] = str(root / f'{arch}.pth')
        eb.extract(run['path'], out[arch], arch='auto', quiet=True)
    return out


# extract_backbone -------------------------------------------------------------
@pytest.mark.parametrize('arch', list(ET_CONFIGS))
def test_extract_round_trip_keeps_tensors_and_meta(arch, classifiers,
                                                   backbones, tmp_path):
    src = torch.load(classifiers[arch]['path'], map_location='cpu',
                     weights_only=False)
    # plain tensors and values only: safe to load
    out = torch.load(backbones[arch], weights_only=True)
    assert set(out) == {'state_dict', 'meta'}
    state = out['state_dict']
    assert all(k.startswith('backbone.') for k in state)
    # the weights of the model as it ended training (live, not EMA)
    live = classifiers[arch]['live']
    assert list(state) == ['backbone.' + k for k in live]
    for k, v in live.items():
        assert torch.equal(state['backbone.' + k], v), k

    meta = out['meta']
    # all of mmet's meta but the trainer's random state, kept for resume
    assert 'random_state' in src['meta']['efficienttrain']
    assert meta['efficienttrain'] == {
        k: v for k, v in src['meta']['efficienttrain'].items()
        if k != 'random_state'}
    assert len(meta['efficienttrain']['curriculum']) == 5
    assert meta['cfg'] == src['meta']['cfg']
    assert meta['backbone']['arch'] == arch
    assert meta['backbone']['ema'] is False
    assert meta['epoch'] == src['meta']['epoch'] == 1

    # loads strictly into the named mmpretrain backbone, through mmengine
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(eb.ARCHS[arch][0]))
    model.load_state_dict(
        _load_checkpoint_with_prefix('backbone.', backbones[arch]),
        strict=True)

    # the tool accepts its own output and writes the same file again
    again = eb.extract(backbones[arch], str(tmp_path / 'again.pth'),
                       arch=arch, quiet=True)
    assert list(again['state_dict']) == list(state)
    assert all(torch.equal(again['state_dict'][k], v)
               for k, v in state.items())
    assert again['meta']['efficienttrain'] == meta['efficienttrain']


def test_extract_ema_takes_the_averaged_weights(classifiers, tmp_path):
    run = classifiers['convnext-tiny']  # the ConvNeXt config has EMAHook
    assert run['ema'] is not None
    ema = eb.extract(run['path'], str(tmp_path / 'ema.pth'), ema=True,
                     quiet=True)
    live = eb.extract(run['path'], str(tmp_path / 'live.pth'), quiet=True)
    assert ema['meta']['backbone']['ema'] is True
    for k in run['live']:
        assert torch.equal(ema['state_dict']['backbone.' + k], run['ema'][k])
        assert torch.equal(live['state_dict']['backbone.' + k],
                           run['live'][k])
    assert any(not torch.equal(run['ema'][k], run['live'][k])
               for k in run['live'])


def test_wrong_checkpoints_fail_loudly(classifiers, backbones, tmp_path):
    # a detector checkpoint, through the command line
    det = dict(meta={}, state_dict=OrderedDict([
        ('backbone.conv1.weight', torch.zeros(64, 3, 7, 7)),
        ('neck.lateral_convs.0.conv.weight', torch.zeros(256, 512, 1, 1)),
        ('bbox_head.retina_cls.weight', torch.zeros(720, 256, 3, 3)),
    ]))
    torch.save(det, tmp_path / 'retinanet.pth')
    proc = _run(['tools/extract_backbone.py', str(tmp_path / 'retinanet.pth'),
                 str(tmp_path / 'out.pth')])
    assert proc.returncode != 0
    assert ('extract_backbone: error: ' in proc.stdout
            and 'is a detector/segmentor checkpoint (it has bbox_head)'
            in proc.stdout
            and 'Pass the classification checkpoint' in proc.stdout), \
        proc.stdout
    assert not (tmp_path / 'out.pth').exists()

    resnet = classifiers['resnet50']['path']
    with pytest.raises(eb.CheckpointError,
                       match='holds a resnet50 backbone, not swin-tiny. '
                             'Pass --arch resnet50'):
        eb.extract(resnet, str(tmp_path / 'x.pth'), arch='swin-tiny')

    with pytest.raises(eb.CheckpointError, match='holds no EMA weights'):
        eb.extract(resnet, str(tmp_path / 'x.pth'), ema=True)

    # a Swin-T saved with a 5x5 window (a per-stage rebuilt Swin)
    swin = torch.load(backbones['swin-tiny'], weights_only=True)
    for k, v in list(swin['state_dict'].items()):
        if k.endswith('relative_position_bias_table'):
            swin['state_dict'][k] = torch.zeros(81, v.shape[1])
        elif k.endswith('relative_position_index'):
            swin['state_dict'][k] = torch.zeros(25, 25, dtype=v.dtype)
    torch.save(swin, tmp_path / 'swin_w5.pth')
    with pytest.raises(eb.CheckpointError,
                       match='not at the final 7x7 window'):
        eb.extract(str(tmp_path / 'swin_w5.pth'), str(tmp_path / 'x.pth'),
                   arch='swin-tiny')

    # a ResNet-101 is not a ResNet-50
    from mmpretrain.registry import MODELS
    r101 = MODELS.build(dict(type='ResNet', depth=101)).state_dict()
    torch.save({'state_dict': {'backbone.' + k: v for k, v in r101.items()}},
               tmp_path / 'r101.pth')
    with pytest.raises(eb.CheckpointError,
                       match='is not an mmpretrain resnet50 backbone: .* '
                             'unexpected \\(layer3.6'):
        eb.extract(str(tmp_path / 'r101.pth'), str(tmp_path / 'x.pth'),
                   arch='resnet50')
    assert not (tmp_path / 'x.pth').exists()


# configs/det -------------------------------------------------------------------
def test_det_configs_cover_both_detectors_and_three_backbones():
    assert len(DET_CONFIGS) == 9
    for arch in ARCH_OF:
        names = [n for n in DET_CONFIGS if f'_{arch}' in n]
        assert {n.split('_')[0] for n in names} == {
            'retinanet', 'cascade-mask-rcnn'}, names
        assert any('1x' in n and n.startswith('cascade') for n in names)
        assert any('3x' in n for n in names)


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_det_config_loads_the_whole_backbone(name, backbones):
    """Every tensor of the extracted checkpoint lands in the detector's
    backbone unchanged; nothing is left out. The only backbone tensors not
    in it are the LayerNorms Swin/ConvNeXt add on the extra feature levels
    a detector taps (an ImageNet classifier has only the last one)."""
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(DET, name))
    assert cfg.checkpoint == cfg.model.backbone.init_cfg.checkpoint
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
    assert cfg.model.backbone.type.startswith('mmpretrain.')
    assert 'mmet' in cfg.custom_imports['imports']
    arch = arch_of_config(name)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint':
                         backbones[arch]})  # as --cfg-options does
    model = MODELS.build(cfg.model)
    model.init_weights()

    ckpt = torch.load(backbones[arch], weights_only=True)['state_dict']
    ckpt = {k[len('backbone.'):]: v for k, v in ckpt.items()}
    state = model.backbone.state_dict()
    assert sorted(set(ckpt) - set(state)) == []  # nothing unused
    out_indices = cfg.model.backbone.get('out_indices', ())
    new_norms = {f'norm{i}.{p}' for i in out_indices if i != 3
                 for p in ('weight', 'bias')} if arch != 'resnet50' else set()
    assert set(state) - set(ckpt) == new_norms
    for k, v in ckpt.items():
        assert torch.equal(state[k], v), k

    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 128, 160))
    stride = 8 if name.startswith('retinanet') else 4
    assert len(feats) == 5 and all(f.shape[1] == 256 for f in feats)
    assert tuple(feats[0].shape[-2:]) == (128 // stride, 160 // stride)


# detection training and evaluation on coco_tiny ---------------------------------
def _scaled(obj, factor):
    """``obj`` with every image scale / crop size in it scaled."""
    if isinstance(obj, dict):
        return {k: (_scale_value(v, factor)
                    if k in ('scale', 'scales', 'crop_size') else
                    _scaled(v, factor)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_scaled(v, factor) for v in obj)
    return obj


def _scale_value(v, factor):
    if isinstance(v, (int, float)):
        return max(32, int(v * factor))
    return type(v)(_scale_value(x, factor) for x in v)


def tiny_det_cfg(name, backbone, data_root, work_dir, factor=0.25):
    """The shipped config at 1/4 scale on coco_tiny: 1 epoch, workers off,
    fewer proposals, every detection scored (score_thr=0)."""
    cfg = Config.fromfile(osp.join(DET, name))
    cfg.model.backbone.init_cfg.checkpoint = backbone
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.num_workers, loader.persistent_workers = 0, False
        ds = loader.dataset
        while 'dataset' in ds:  # RepeatDataset
            ds.times = 1
            ds = ds.dataset
        ds.data_root = data_root
        ds.pipeline = _scaled(ds.pipeline, factor)
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = data_root + 'annotations/instances_val2017.json'
    model = cfg.model
    if 'roi_head' in model:
        model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
        for stage in model.train_cfg.rcnn:
            stage.sampler.num = 64
        model.test_cfg.rpn.update(nms_pre=200, max_per_img=100)
        model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=50)
    else:
        model.test_cfg.update(score_thr=0.0, nms_pre=200, max_per_img=50)
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    return cfg


def _finite_losses(work_dir):
    logs = [osp.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs
            if f == 'scalars.json']
    assert logs, f'no scalars.json under {work_dir}'
    rows = [json.loads(line) for line in open(logs[0])]
    losses = [r['loss'] for r in rows if 'loss' in r]
    assert losses and all(np.isfinite(losses)), rows
    return rows


def test_retinanet_from_et_checkpoint_with_the_tools(backbones, coco_tiny,
                                                     tmp_path):
    """ET Swin-T classifier -> backbone -> tools/train.py -> tools/test.py."""
    name = 'retinanet_swin-t-p4-w7_fpn_1x_coco.py'
    cfg = tiny_det_cfg(name, 'overridden/below.pth', coco_tiny,
                       tmp_path / 'work')
    cfg.dump(str(tmp_path / name))
    work = tmp_path / 'work'
    proc = _run(['tools/train.py', str(tmp_path / name), '--work-dir',
                 str(work), '--cfg-options',
                 f'model.backbone.init_cfg.checkpoint={backbones["swin-tiny"]}'])
    assert proc.returncode == 0, proc.stdout[-3000:]
    # mmengine's own load report: the override reached the backbone, and
    # only the two new output norms of the detector were not in it
    assert f'Loads checkpoint by local backend from path: ' \
        f'{backbones["swin-tiny"]}' in proc.stdout, proc.stdout[-3000:]
    assert 'missing keys in source state_dict: norm1.weight, norm1.bias, ' \
        'norm2.weight, norm2.bias\n' in proc.stdout
    assert 'unexpected key' not in proc.stdout
    rows = _finite_losses(work)
    val = [r for r in rows if 'coco/bbox_mAP' in r]
    assert val and all(isinstance(val[-1][k], float) for k in (
        'coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'))

    proc = _run(['tools/test.py', str(tmp_path / name),
                 str(work / 'epoch_1.pth'), '--work-dir', str(tmp_path / 't'),
                 '--out', str(tmp_path / 'metrics.json')])
    assert proc.returncode == 0, proc.stdout[-3000:]
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
    print('RetinaNet Swin-T smoke metrics:', metrics)


def test_cascade_mask_rcnn_from_et_checkpoint(backbones, coco_tiny, tmp_path):
    """ET Swin-T classifier -> backbone -> Cascade Mask R-CNN (the paper's
    1x recipe) -> CocoMetric box and mask AP."""
    name = 'cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1fc-giou_ms-crop-1x_coco.py'
    cfg = tiny_det_cfg(name, backbones['swin-tiny'], coco_tiny,
                       tmp_path / 'work')
    cfg.experiment_name = 'det_transfer_cascade'
    runner = Runner.from_cfg(cfg)
    runner.train()
    rows = _finite_losses(tmp_path / 'work')
    assert any('loss_mask' in k for r in rows for k in r)
    metrics = runner.val_loop.run()
    for k in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50',
              'coco/segm_mAP_50'):
        assert 0.0 <= metrics[k] <= 1.0, metrics
    print('Cascade Mask R-CNN Swin-T smoke metrics:', metrics)
