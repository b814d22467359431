"""The command-line tools, end to end, as a user runs them."""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
from conftest import ROOT

DEMO_ET = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')
FMNIST = osp.join(ROOT, 'data/fashion-mnist')

needs_fmnist = pytest.mark.skipif(
    not osp.exists(osp.join(FMNIST, 'train-images-idx3-ubyte')),
    reason='Fashion-MNIST not fetched; run tools/setup_env.sh')


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


@needs_fmnist
def test_train_and_test_on_the_demo_config(tmp_path):
    work = tmp_path / 'et'
    out = subprocess.run(
        [sys.executable, 'tools/train.py', DEMO_ET,
         *small_demo_options(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = open(glob.glob(str(work / '*' / '*.log'))[0]).read()
    # two epochs of five stages: epoch 1 is stage 2 (B=20), epoch 2 stage 5
    assert 'EfficientTrain epoch 1/2: stage 2/5, B=20, m=3' in log
    assert 'EfficientTrain epoch 2/2: stage 5/5, B=28, m=9' in log
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


@needs_fmnist
def test_demo_prints_the_table(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/demo.py', '--epochs', '2',
         '--train-subset', '512', '--val-subset', '500', '--batch-size', '64',
         '--work-dir',
         str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'train wall (s)' in out.stdout
    report = json.load(open(tmp_path / 'demo.json'))
    assert [r['run'] for r in report] == ['baseline', 'efficienttrain']
    et = report[1]
    assert [s['size'] for s in et['stages']] == [20, 20, 20, 24, 28]
    assert et['predicted_speedup'] > 1
    assert all(0 <= r['top1'] <= 100 for r in report)
    assert (tmp_path / 'demo.png').stat().st_size > 1000
