"""ET++ configs, Lanczos low-pass mode and the tools around them."""
import glob
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from mmengine.config import Config

from mmet.curriculum import Curriculum
from mmet.transforms import FourierCrop, fourier_crop, lanczos_resize

ETPP = sorted(glob.glob(osp.join(ROOT, 'configs/efficienttrain_pp/*.py')))
DROP_PATH_AT_200 = {'resnet50': 0.0, 'convnext-tiny': 0.1, 'deit-small': 0.1,
                    'swin-tiny': 0.2}
FAMILY = {'resnet50': 'resnet', 'convnext-tiny': 'convnext',
          'deit-small': 'deit', 'swin-tiny': 'swin'}


def test_four_models_at_two_budgets():
    names = {tuple(osp.basename(p).split('_')[:2]) for p in ETPP}
    assert names == {(m, f'etpp-e{e}') for m in FAMILY for e in (100, 200)}


@pytest.mark.parametrize('path', ETPP, ids=osp.basename)
def test_etpp_config_trains_for_a_budget(path):
    cfg = Config.fromfile(path)
    model = osp.basename(path).split('_')[0]
    budget = int(osp.basename(path).split('_')[1][len('etpp-e'):])
    loop = cfg.train_cfg
    assert loop.type == 'EfficientTrainLoop' and 'max_epochs' not in loop
    assert (loop.curriculum, loop.family, loop.budget) == \
        ('efficienttrain++', FAMILY[model], budget)
    assert 'mmet' in cfg.custom_imports['imports']
    # drop_path scaled by E/200, visible in the config
    assert cfg.model.backbone.drop_path_rate == pytest.approx(
        DROP_PATH_AT_200[model] * budget / 200)
    # the loop registers the hook: no hook with another curriculum
    assert loop.micro_batch == 'auto'  # the fast step's per-stage batch
    assert 'EfficientTrainHook' not in str(cfg.get('custom_hooks'))
    if model == 'convnext-tiny':
        assert [h['type'] for h in cfg.custom_hooks] == ['EMAHook']
    # the ET recipe's schedule, run on the compute clock
    assert cfg.param_scheduler[0]['end'] == 20
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert types[-2:] == ['FourierCrop', 'PackInputs']


def test_lanczos_pipeline_is_the_et_pipeline_with_lanczos():
    et = Config.fromfile(osp.join(ROOT, 'configs/_base_/efficienttrain.py'))
    pp = Config.fromfile(osp.join(ROOT,
                                  'configs/_base_/efficienttrain_pp.py'))
    lanczos = [dict(t) for t in pp.etpp_lanczos_pipeline]
    assert lanczos[-2] == dict(type='FourierCrop', size=224, mode='lanczos')
    lanczos[-2] = dict(type='FourierCrop', size=224)
    assert lanczos == [dict(t) for t in et.et_train_pipeline]


def run_tool(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def test_analyze_curriculum_shows_the_budget():
    path = osp.join(ROOT, 'configs/efficienttrain_pp',
                    'resnet50_etpp-e200_8xb256_in1k.py')
    out = run_tool('tools/analyze_curriculum.py', path)
    assert 'budget E=200 full-size epochs -> 455 real epochs' in out
    assert 'predicted speedup 1.50x vs 300 full-size epochs' in out
    assert '0-109 (109)' in out and '435-455 (20)' in out
    demo = osp.join(ROOT, 'configs/demo/fmnist_resnet_etpp.py')
    rep = json.loads(run_tool('tools/analyze_curriculum.py', demo, '--json'))
    assert rep['max_epochs'] == 15 and rep['budget'] == pytest.approx(20 / 3)
    assert sorted({r['size'] for r in rep['stages']}) == [12, 20, 28]
    shares = [r['compute'] / rep['relative_compute'] for r in rep['stages']]
    assert sum(shares) == pytest.approx(1)


def test_demo_config_derives_its_epochs():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/demo/fmnist_resnet_etpp.py'))
    base = Config.fromfile(
        osp.join(ROOT, 'configs/demo/fmnist_resnet_baseline.py'))
    assert cfg.model == base.model and cfg.optim_wrapper == base.optim_wrapper
    assert cfg.train_dataloader == base.train_dataloader
    assert cfg.train_cfg.type == 'EfficientTrainLoop'
    plan = Curriculum.build('efficienttrain++resnet').plan(
        cfg.train_cfg.baseline_epochs / cfg.train_cfg.speedup)
    # about the ET run's cost at the same 10 epochs (0.65 of the baseline)
    et = Curriculum.build('efficienttrain').relative_compute(10, 28)
    assert plan.compute_epochs(28) / 10 == pytest.approx(et, abs=0.05)


# the Lanczos mode ---------------------------------------------------------
def photo(size=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(size, size, 3)).cumsum(0).cumsum(1)
    x = (x - x.min()) / (x.max() - x.min()) * 255
    return x.astype(np.uint8)


def test_lanczos_mode_is_driven_like_the_fft_mode():
    img = photo()
    crop = FourierCrop(64, mode='lanczos')
    assert crop.transform(dict(img=img.copy()))['img'] is not None
    crop.size = 28  # what the hook does
    out = crop.transform(dict(img=img))
    assert out['img'].shape == (28, 28, 3) and out['img'].dtype == np.uint8
    assert out['img_shape'] == (28, 28)
    assert repr(crop) == "FourierCrop(size=28, mode='lanczos')"
    gray = FourierCrop(14, mode='lanczos').transform(
        dict(img=img[..., :1].copy()))['img']
    assert gray.shape == (14, 14, 1)
    with pytest.raises(ValueError, match="'fft', 'lanczos'"):
        FourierCrop(28, mode='bicubic')


def test_lanczos_leaks_a_little_above_the_cutoff_fft_none():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 64)).astype(np.float64)
    spec = np.fft.fft2(x)
    k = np.abs(np.fft.fftfreq(64) * 64)
    high = np.fft.ifft2(spec * ~((k[:, None] <= 16) & (k[None] <= 16))).real
    leak = {m: np.mean(f(high, 32) ** 2) / np.mean(high ** 2) for m, f in
            (('fft', fourier_crop), ('lanczos', lanczos_resize))}
    assert leak['fft'] < 1e-20
    assert 0 < leak['lanczos'] < 0.25  # decimation would pass about all


def test_benchmark_lowpass_on_real_photos(tmp_path):
    out = tmp_path / 'b.json'
    text = run_tool('tools/benchmark_lowpass.py', '--sizes', '96',
                    '--images', '2', '--repeats', '1', '--out', str(out))
    assert 'leak' in text
    rows = {r['method']: r for r in json.load(open(out))['rows']}
    assert rows['fft']['leak'] < 1e-12 and rows['fft']['rel_err'] == 0
    assert 0 < rows['lanczos']['leak'] < rows['cv2-linear']['leak']
    assert all(r['ms_per_image'] > 0 for r in rows.values())


@pytest.mark.parametrize('model', ['deit-small', 'swin-tiny'])
def test_transformers_train_at_96px(model):
    """ET++'s smallest bandwidth: DeiT 6x6 patches, Swin a 3x3 last stage."""
    import torch
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    from mmet.swin import set_swin_window
    path = next(p for p in ETPP if osp.basename(p).startswith(model))
    cfg = Config.fromfile(path)
    init_default_scope('mmpretrain')
    cfg.model.head.num_classes = 10
    cfg.model.pop('train_cfg', None)
    torch.manual_seed(0)
    net = MODELS.build(cfg.model)
    net.train()
    set_swin_window(net, 96 // 32)  # the driver's job; 0 if no Swin
    loss = net.loss(torch.randn(2, 3, 96, 96),
                    [DataSample().set_gt_label(i) for i in (1, 2)])['loss']
    loss.backward()
    assert torch.isfinite(loss)


def test_analyze_curriculum_refuses_an_unknown_replay():
    demo = osp.join(ROOT, 'configs/demo/fmnist_resnet_etpp.py')
    res = subprocess.run(
        [sys.executable, 'tools/analyze_curriculum.py', demo, '--cfg-options',
         'train_cfg.replay=bogus'], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0
    assert "train_cfg.replay: Unknown replay preset 'bogus'; valid: " \
        "['efficienttrain++']" in res.stderr
