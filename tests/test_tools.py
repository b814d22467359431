"""The command-line tools, end to end, as a user runs them."""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
from conftest import FMNIST, ROOT

pytestmark = pytest.mark.usefixtures('fmnist')

DEMO_ET = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')


def small_demo_options(work_dir, epochs=2):
    return [
        '--work-dir', str(work_dir), '--cfg-options',
        f'train_cfg.max_epochs={epochs}',
        f'train_dataloader.dataset.data_root={FMNIST}',
        f'val_dataloader.dataset.data_root={FMNIST}',
        'train_dataloader.dataset.indices=512',
        'val_dataloader.dataset.indices=500',
        'train_dataloader.batch_size=64',
        'param_scheduler.1.T_max=1',
    ]


def test_train_and_test_on_the_demo_config(tmp_path):
    work = tmp_path / 'et'
    out = subprocess.run(
        [sys.executable, 'tools/train.py', DEMO_ET,
         *small_demo_options(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = open(glob.glob(str(work / '*' / '*.log'))[0]).read()
    # two epochs of five stages: epoch 1 is stage 2 (B=20), epoch 2 stage 5
    assert 'EfficientTrain epoch 1/2: stage 2/5 (B=20, m=3)' in log
    assert 'EfficientTrain epoch 2/2: stage 5/5 (B=28, m=9)' in log
    assert 'accuracy/top1' in log
    ckpt = work / 'epoch_2.pth'
    assert ckpt.exists()

    res = subprocess.run(
        [sys.executable, 'tools/test.py', DEMO_ET, str(ckpt), '--work-dir',
         str(tmp_path / 'test'), '--cfg-options',
         f'test_dataloader.dataset.data_root={FMNIST}',
         'test_dataloader.dataset.indices=500'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'accuracy/top1' in res.stdout + res.stderr


@pytest.mark.parametrize('config', [
    DEMO_ET, osp.join(ROOT, 'configs/demo/fmnist_resnet_et_batchaug.py')])
def test_benchmark_curriculum_reports_each_stage(config, tmp_path):
    out = tmp_path / 'bench.json'
    res = subprocess.run(
        [sys.executable, 'tools/benchmark_curriculum.py', config,
         '--iters', '2', '--warmup', '1', '--repeats', '2', '--out', str(out),
         '--cfg-options', f'train_dataloader.dataset.data_root={FMNIST}',
         'train_dataloader.dataset.indices=640',
         'train_dataloader.batch_size=32', 'train_dataloader.num_workers=1'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'measured speedup (end to end)' in res.stdout
    rep = json.load(open(out))
    assert [s['size'] for s in rep['stages']] == [20, 20, 20, 24, 28]
    assert rep['repeats'] == 2 and res.stdout.count('round 2/2') == 5
    for s in rep['stages']:
        assert s['loader'] > 0 and s['model'] > 0 and s['end_to_end'] > 0
        assert s['bound_by'] in ('loader', 'model')
        assert s['switch_s'] >= 0 and 0 <= s['switch_share'] < 1
    assert 'stage switch (worker restart)' in res.stdout
    assert rep['predicted_speedup'] == pytest.approx(
        10 * 28**2 / (6 * 20**2 + 2 * 24**2 + 2 * 28**2))


def test_benchmark_curriculum_reads_the_etpp_loop(tmp_path):
    out = tmp_path / 'bench.json'
    res = subprocess.run(
        [sys.executable, 'tools/benchmark_curriculum.py',
         osp.join(ROOT, 'configs/demo/fmnist_resnet_etpp.py'),
         '--iters', '1', '--warmup', '1', '--repeats', '1', '--out', str(out),
         '--cfg-options', f'train_dataloader.dataset.data_root={FMNIST}',
         'train_dataloader.dataset.indices=320',
         'train_dataloader.batch_size=32', 'train_dataloader.num_workers=1'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.load(open(out))
    # the loop's 15 derived epochs over ten stages at 12, 20 and 28 px,
    # against the baseline's 10 full-size epochs
    assert [s['size'] for s in rep['stages']] == [12] * 2 + [20] * 4 + \
        [28] * 4
    assert sum(s['epochs'] for s in rep['stages']) == rep['max_epochs'] == 15
    assert rep['baseline_epochs'] == 10
    assert rep['predicted_speedup'] == pytest.approx(
        10 * 28**2 / sum(s['epochs'] * s['size']**2 for s in rep['stages']))


# tools/train.py --curriculum -------------------------------------------------
DEMO_BASELINE = osp.join(ROOT, 'configs/demo/fmnist_resnet_baseline.py')


def train_with_curriculum(work, epochs, *flags):
    """The demo's plain config, on 128 images, without validation."""
    out = subprocess.run(
        [sys.executable, 'tools/train.py', DEMO_BASELINE, *flags,
         '--work-dir', str(work), '--no-validate', '--cfg-options',
         f'train_cfg.max_epochs={epochs}',
         f'train_dataloader.dataset.data_root={FMNIST}',
         'train_dataloader.dataset.indices=128',
         'train_dataloader.batch_size=64', 'train_dataloader.num_workers=1',
         f'param_scheduler.1.T_max={epochs - 1}'],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    log = open(glob.glob(str(work / '*' / '*.log'))[0]).read()
    return [line.split(' - ')[-1] for line in log.splitlines()
            if 'EfficientTrain epoch' in line]


def test_train_curriculum_flag_on_the_plain_config(tmp_path):
    epochs = train_with_curriculum(tmp_path / 'et', 3,
                                   '--curriculum', 'efficienttrain')
    # ET's five stages over the config's 3 epochs: 20 px first, 28 px last
    assert len(epochs) == 3
    assert epochs[0].startswith('EfficientTrain epoch 1/3') and \
        'B=20' in epochs[0]
    assert 'B=28' in epochs[-1] and 'm=9' in epochs[-1]


def test_train_curriculum_flag_efficienttrain_pp(tmp_path):
    # 6 epochs of 2 iterations: E = 4, the least whose whole epochs give
    # each of the ten stages one within twice the budget (per sample)
    epochs = train_with_curriculum(tmp_path / 'etpp', 6, '--curriculum',
                                   'efficienttrain++', '--speedup', '1.5')
    # ten stages, 12 -> 20 -> 28 px (the ResNet family, inferred), m 0 -> 9
    sizes = [line.split('B=')[1].split(',')[0] for line in epochs]
    assert sizes[0] == '12' and sizes[-1] == '28' and '20' in sizes
    assert 'm=0' in epochs[0] and 'm=9' in epochs[-1]
    cfg = open(glob.glob(str(tmp_path / 'etpp' / '*' / 'vis_data' /
                             'config.py'))[0]).read()
    assert "type='EfficientTrainLoop'" in cfg and 'speedup=1.5' in cfg
    assert 'baseline_epochs=6' in cfg


def test_train_curriculum_flag_refuses_what_does_not_fit(tmp_path):
    res = subprocess.run(
        [sys.executable, 'tools/train.py', DEMO_ET, '--curriculum',
         'efficienttrain', '--work-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert 'already trains with a curriculum' in res.stderr


def test_train_amp_without_a_gpu_fails_before_building(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU: --amp is valid here')
    res = subprocess.run(
        [sys.executable, 'tools/train.py', DEMO_ET, '--amp', '--work-dir',
         str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=600)
    assert res.returncode != 0
    assert '--amp needs a CUDA (or NPU, MLU, MUSA) device' in res.stderr
    assert not glob.glob(str(tmp_path / '*' / '*.log'))  # no Runner built


def test_test_py_names_a_text_file_without_advice_it_cannot_take(tmp_path):
    """Issue 22, item 13: tools/test.py on a text file named .pth names the
    file and what is wrong, without advising --resume (it has none)."""
    bad = tmp_path / 'epoch_1.pth'
    bad.write_text('see the notes of epoch 1\n')
    out = subprocess.run(
        [sys.executable, 'tools/test.py', DEMO_ET, str(bad), '--work-dir',
         str(tmp_path / 'test')], cwd=ROOT, capture_output=True, text=True,
        timeout=600)
    assert out.returncode != 0
    assert f'{bad} (25 bytes) is not a torch checkpoint' in out.stderr
    assert '--resume' not in out.stderr and 'Traceback' not in out.stderr


def test_benchmark_gpu_runs_at_tiny_scale_on_the_cpu(tmp_path):
    """The GPU benchmark's smoke test: every model, variant, size and both
    end-to-end paths, at 64 px on the CPU."""
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_gpu.py', '--tiny', '--out',
         str(tmp_path / 'gpu.json')], cwd=ROOT, capture_output=True,
        text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / 'gpu.json').read_text())
    assert sorted(report['models']) == \
        ['convnext-t', 'deit-s', 'resnet50', 'swin-t']
    for row in report['models'].values():
        for rates in row['rates'].values():
            assert [int(s) for s in rates] == report['sizes']
            assert all(r > 0 for r in rates.values())
        assert row['et']['fast'] > 0 and row['etpp_e100']['stock'] > 0
    assert sorted(report['end_to_end']) == ['CPU path', 'device pipeline']
    fast = report['end_to_end']['device pipeline']['fast_step']
    assert fast['param_groups'] == 2 and not fast['grad_scaler']
    assert 'smoke test' in out.stdout


def test_train_py_refuses_a_budget_that_is_no_number(tmp_path):
    """Issue 22, item 13: one line, the cause and the fix, no traceback."""
    for flag, value in (('--budget', '-5'), ('--budget', 'nan'),
                        ('--speedup', '0')):
        out = subprocess.run(
            [sys.executable, 'tools/train.py', DEMO_ET.replace(
                '_et.py', '_baseline.py'), '--curriculum', 'efficienttrain++',
             flag, value, '--work-dir', str(tmp_path)], cwd=ROOT,
            capture_output=True, text=True, timeout=300)
        assert out.returncode != 0 and 'Traceback' not in out.stderr
        assert 'is not a positive finite number' in out.stderr, out.stderr


def test_benchmark_calls_a_speedup_above_the_ceiling_invalid():
    """Issue 21, item 2: end to end cannot beat the model alone; where the
    rates say it does (a prefetch queue read as the loader), the measured
    speedup is withheld with the cause."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from benchmark_curriculum import summarize

    from mmet.curriculum import Curriculum
    from mmet.plan import TrainPlan
    plan = TrainPlan(Curriculum.build('efficienttrain'), full_size=224,
                     max_epochs=300)

    def rates(e2e_small):
        return {(160, m, None): dict(loader=9e4, model=1000.,
                                     end_to_end=e2e_small, switch_s=1.)
                for m in (1, 3, 5)} | {
            (192, 7, None): dict(loader=9e4, model=800., end_to_end=700.,
                                 switch_s=1.),
            (224, 9, None): dict(loader=9e4, model=600., end_to_end=500.,
                                 switch_s=1.)}
    honest = summarize(plan, rates(700.), images=1000)
    assert honest['measured_speedup'] < honest['ceiling_speedup']
    queue = summarize(plan, rates(1300.), images=1000)
    assert queue['measured_speedup'] is None
    assert 'above the model-only ceiling' in queue['invalid']


def test_benchmark_curriculum_sets_swin_windows_as_training(tmp_path):
    """Issue 21, item 2: a Swin ET config (here a narrow Swin) runs at
    every B, its window following B as in training, and the report says
    which parts of the fast step were on."""
    out, config = tmp_path / 'bench.json', tmp_path / 'narrow_swin.py'
    base = osp.join(ROOT, 'configs/efficienttrain/swin-tiny_et_16xb64_in1k.py')
    config.write_text(
        f'_base_ = [{base!r}]\n'
        'model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=16,'
        ' depths=[1] * 4, num_heads=[1] * 4)),'
        ' head=dict(in_channels=128))\n')
    res = subprocess.run(
        [sys.executable, 'tools/benchmark_curriculum.py', str(config),
         '--fake-data', '24', '--iters', '1', '--warmup', '1',
         '--repeats', '1', '--out', str(out), '--cfg-options',
         'train_dataloader.batch_size=4', 'train_dataloader.num_workers=1'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.load(open(out))
    assert [s['size'] for s in rep['stages']] == [160, 160, 160, 192, 224]
    fast = rep['fast_step']
    # merged groups (one per parameter before), no channels_last for a
    # transformer on a CPU
    assert fast['param_groups'] <= 4 and not fast['channels_last']
    assert f"fast step: {fast['param_groups']} param groups" in res.stdout


def test_test_py_refuses_an_out_it_cannot_write(mmpretrain_scope, tmp_path):
    """Issue 22, item 7: ``--out m.txt`` ran the whole test, exited 0 and
    wrote nothing; it is refused before anything is loaded, naming the
    suffixes that work (and ``.json`` still writes the metrics)."""
    import torch
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    ckpt = tmp_path / 'untrained.pth'
    model = MODELS.build(Config.fromfile(DEMO_ET).model)
    torch.save(dict(meta=dict(epoch=0), state_dict=model.state_dict()), ckpt)

    def test_py(out, work):
        return subprocess.run(
            [sys.executable, 'tools/test.py', DEMO_ET, str(ckpt), '--out',
             str(out), '--work-dir', str(work), '--cfg-options',
             f'test_dataloader.dataset.data_root={FMNIST}',
             'test_dataloader.dataset.indices=100'],
            cwd=ROOT, capture_output=True, text=True, timeout=600)

    txt = tmp_path / 'metrics.txt'
    res = test_py(txt, tmp_path / 'txt')
    assert res.returncode == 2, res.stderr[-3000:]
    assert f'--out {txt}: .txt is not a format test.py writes; end the ' \
        'name with .json (the metrics) or .pkl (the raw predictions).' in \
        res.stderr
    assert not txt.exists() and not (tmp_path / 'txt').exists()
    out = tmp_path / 'new' / 'metrics.json'  # its folder is made
    res = test_py(out, tmp_path / 'json')
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'accuracy/top1' in json.loads(out.read_text())
