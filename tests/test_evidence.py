"""The evidence tools: tools/benchmark_accuracy.py and tools/demo.py."""
import copy
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import FMNIST, ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))

from benchmark_accuracy import (PredictionBalance, is_collapsed,  # noqa: E402
                                method_configs, summarize, verdicts)

TINY = ['--epochs', '2', '--train-subset', '512', '--val-subset', '500']


def test_benchmark_runs_every_method_over_seeds_and_resumes(fmnist,
                                                            tmp_path):
    cmd = [sys.executable, 'tools/benchmark_accuracy.py', 'fmnist',
           '--seeds', '2', *TINY, '--work-dir', str(tmp_path),
           '--cfg-options', 'train_dataloader.batch_size=64',
           f'train_dataloader.dataset.data_root={FMNIST}',
           f'val_dataloader.dataset.data_root={FMNIST}']
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rep = json.load(open(tmp_path / 'benchmark_accuracy.json'))
    assert (tmp_path / 'benchmark_accuracy.png').stat().st_size > 1000
    assert sorted(rep['summary']) == sorted([
        'baseline', 'efficienttrain', 'efficienttrain++', 'equal-compute',
        'progressive-resizing'])
    assert len(rep['runs']) == 10
    for row in rep['summary'].values():
        assert row['seeds'] == [0, 1]
        assert row['top1_std'] == pytest.approx(np.std(row['top1'], ddof=1))
        assert row['majority_rate'] == pytest.approx(
            100 * np.bincount(np.fromfile(
                osp.join(FMNIST, 't10k-labels-idx1-ubyte'), np.uint8,
                offset=8)[:500]).max() / 500)
    assert rep['verdicts'][0].startswith('ET: ')
    assert 'vs the equal-compute baseline' in rep['verdicts'][0]
    assert 'ET++ wall speedup >= 1.3x' in out.stdout

    # an interrupted sweep continues: only the missing run trains again
    os.remove(tmp_path / 'runs' / 'efficienttrain-seed1.json')
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(': cached') == 9
    assert 'efficienttrain seed 1: training' in again.stdout


def test_equal_compute_baseline_matches_et_compute_and_final_lr(
        fmnist, tmp_path):
    cfgs = method_configs('fmnist', ['baseline', 'efficienttrain',
                                     'equal-compute'], 10, 1.5)
    base, et, eq = (cfgs[k] for k in ('baseline', 'efficienttrain',
                                      'equal-compute'))
    # ET at 28 px spends 6 (20/28)^2 + 2 (24/28)^2 + 2 = 6.53 of 10 epochs
    et_compute = (6 * 20**2 + 2 * 24**2 + 2 * 28**2) / 28**2
    assert abs(eq.train_cfg.max_epochs - et_compute) <= 0.5
    assert eq.train_cfg.max_epochs == 7
    # the schedule is compressed to the cut epochs: warm-up, then a cosine
    # that ends at the baseline's final LR when the run ends
    warm, cos = eq.param_scheduler
    assert warm['end'] == cos['begin'] == pytest.approx(0.7)
    assert 'T_max' not in cos  # the cosine runs to the end of training
    lrs = {}
    for name, cfg in (('baseline', base), ('equal-compute', eq)):
        lrs[name] = lr_curve(cfg, tmp_path / name)
    assert lrs['equal-compute'][-1] == pytest.approx(lrs['baseline'][-1],
                                                     abs=2e-4)
    assert max(lrs['equal-compute']) == pytest.approx(
        max(lrs['baseline']), rel=0.05)
    assert len(lrs['equal-compute']) == 7 * len(lrs['baseline']) // 10


def lr_curve(cfg, work_dir):
    """The LR of every train iteration of ``cfg`` on 512 images."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class Record(Hook):
        def __init__(self):
            self.lrs = []

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.lrs.append(runner.optim_wrapper.get_lr()['lr'][0])

    cfg = copy.deepcopy(cfg)
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.dataset.update(data_root=FMNIST, indices=512)
    cfg.train_dataloader.batch_size = 64
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1,
                                        save_last=False)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    record = Record()
    runner.register_hook(record)
    runner.train()
    return record.lrs


def summary_of(**top1):
    runs = []
    for method, (accs, seconds) in top1.items():
        runs += [dict(method=method, seed=i, epochs=10, top1=a,
                      train_seconds=seconds, predicted_speedup=1.5,
                      majority_rate=10.0, collapsed=False)
                 for i, a in enumerate(accs)]
    return summarize(runs)


def test_the_verdict_is_computed_from_the_numbers():
    summary = summary_of(
        baseline=([91.0, 91.4], 100.0), efficienttrain=([90.9, 91.1], 80.0),
        **{'equal-compute': ([90.0, 90.4], 66.0)})
    assert verdicts(summary) == [
        'ET: 1.25x faster, \u22120.2 points vs the baseline, +0.8 vs the '
        'equal-compute baseline']
    summary = summary_of(baseline=([91.0], 100.0),
                         efficienttrain=([92.5], 50.0))
    assert verdicts(summary) == [
        'ET: 2.00x faster, +1.5 points vs the baseline (speedup above the '
        'FLOPs prediction: the machine was busy; measure again)']


def test_a_collapsed_run_is_flagged():
    metric = PredictionBalance()
    # 69% of the labels in class 0 and a model that always predicts it
    metric.process(None, [dict(gt_label=np.array([int(i >= 69)]),
                               pred_label=np.array([0]))
                          for i in range(100)])
    scores = metric.compute_metrics(metric.results)
    assert scores == dict(majority_rate=69.0, top_prediction_share=100.0)
    assert is_collapsed(69.0, **scores)
    assert is_collapsed(69.3, 69.0, 80.0)  # no better than the prior
    assert not is_collapsed(91.0, 10.0, 11.0)
    summary = summarize([dict(method='efficienttrain', seed=0, epochs=10,
                              top1=69.0, train_seconds=1.0,
                              predicted_speedup=1.5, majority_rate=69.0,
                              collapsed=True)])
    assert summary['efficienttrain']['collapsed'] == 1


def test_demo_prints_the_table_and_the_verdict(fmnist, tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/demo.py', '--epochs', '4', '--train-subset',
         '512', '--val-subset', '500', '--batch-size', '64',
         '--work-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    for column in ('train wall (s)', 'speedup', 'predicted', 'top-1 (%)',
                   'majority class (%)'):
        assert column in out.stdout
    report = json.load(open(tmp_path / 'demo.json'))
    assert [r['method'] for r in report] == [
        'baseline', 'efficienttrain', 'efficienttrain++', 'equal-compute']
    base, et, etpp, eq = report
    assert [s['size'] for s in et['stages']] == [20, 20, 20, 24, 28]
    # ET's 4 epochs are stages 1, 2, 4, 5: 0.69 of the compute, and the
    # equal-compute baseline trains 3 full-size epochs
    assert eq['epochs'] == 3
    assert eq['predicted_speedup'] == pytest.approx(4 / 3)
    line = next(ln for ln in out.stdout.splitlines()
                if ln.startswith('ET: '))
    for delta, text in ((et['top1'] - base['top1'], 'points vs the baseline'),
                        (et['top1'] - eq['top1'], 'vs the equal-compute')):
        assert f"{delta:+.1f}".replace('-', '\u2212') + f' {text}' in line
    assert (tmp_path / 'demo.png').stat().st_size > 1000


def test_demo_on_a_small_folder_reports_the_class_prior(fmnist, tmp_path):
    """An ImageNet-style folder of 2 imbalanced classes (70/30)."""
    from PIL import Image
    images = np.fromfile(osp.join(FMNIST, 'train-images-idx3-ubyte'),
                         np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.fromfile(osp.join(FMNIST, 'train-labels-idx1-ubyte'),
                         np.uint8, offset=8)
    root = tmp_path / 'data'
    for split, n in (('train', 100), ('val', 50)):
        for cls, share in ((0, 0.7), (1, 0.3)):
            folder = root / split / f'class{cls}'
            folder.mkdir(parents=True)
            picks = np.flatnonzero(labels == cls)[:int(n * share)]
            for i in picks:
                Image.fromarray(images[i]).convert('RGB').resize(
                    (40, 40)).save(folder / f'{i}.png')
    out = subprocess.run(
        [sys.executable, 'tools/demo.py', '--data-root', str(root),
         '--img-size', '32', '--epochs', '2', '--runs', 'baseline',
         'efficienttrain', '--work-dir', str(tmp_path / 'work')],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.load(open(tmp_path / 'work' / 'demo.json'))
    assert [r['majority_rate'] for r in report] == [70.0, 70.0]
    # small data: batches of at most a tenth of the 100 images
    assert all(r['epochs'] == 2 for r in report)
    assert [s['size'] for s in report[1]['stages']] == [22, 22, 22, 28, 32]


# small folders and bad inputs to the demo and the benchmark (issue 22) ------
def image_folder(root, classes=('a', 'b'), train=16, val=8):
    """``root/{train,val}/<class>/<i>.jpg``: ``train`` and ``val`` random
    40 px JPEGs per class (32 train images by default)."""
    import cv2
    rng = np.random.default_rng(0)
    for split, n in (('train', train), ('val', val)):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                assert cv2.imwrite(str(folder / f'{i}.jpg'), rng.integers(
                    0, 256, (40, 40, 3), dtype=np.uint8))
    return root


def run_demo(root, work, *flags):
    return subprocess.run(
        [sys.executable, 'tools/demo.py', '--data-root', str(root),
         '--img-size', '32', '--work-dir', str(work), *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=900)


def _empty_class(root):
    for split in ('train', 'val'):  # only empty subfolders
        (root / split / 'c' / 'scans').mkdir(parents=True)
    return f"{root / 'train' / 'c'} holds no images (only empty " \
        'subfolders): as a class it would be an output the classifier ' \
        'never sees. Add its images, or remove the folder (and val/c).'


def _one_class(root):
    for split in ('train', 'val'):
        for f in (root / split / 'b').iterdir():
            f.rename(root / split / 'a' / f'b{f.name}')
        (root / split / 'b').rmdir()
    return f"{root / 'train'} holds one class with images (a): a " \
        'classifier needs at least 2 classes.'


def _truncated_jpeg(root):
    bad = root / 'train' / 'b' / '3.jpg'
    bad.write_bytes(bad.read_bytes()[:120])  # cut off in the header
    return f'1 image(s) cannot be decoded (empty, truncated or not an ' \
        f'image): {bad}. Replace or delete them.'


@pytest.mark.parametrize('spoil', [_empty_class, _one_class,
                                   _truncated_jpeg])
def test_demo_refuses_a_bad_folder_before_training(spoil, tmp_path):
    """Issue 22, items 6 and 13: a class folder without images (a head with
    a class too many), a single class (100% top-1 for nothing) and an
    undecodable JPEG (a raw data-worker traceback) are named at start."""
    root = image_folder(tmp_path / 'data')
    expected = spoil(root)
    out = run_demo(root, tmp_path / 'work', '--epochs', '5', '--runs',
                   'baseline')
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert expected in out.stderr, out.stderr[-3000:]
    assert 'Traceback' not in out.stderr
    assert not (tmp_path / 'work' / 'warm-up').exists()  # nothing trained


def test_demo_trains_two_epochs_of_a_small_folder(tmp_path):
    """Issue 22, item 11: the warm-up (0.2 of an epoch at 2 epochs) spans
    no iteration of 4-iteration epochs; it is dropped, and said so, instead
    of mmengine's "end should be larger than begin"."""
    root = image_folder(tmp_path / 'data')
    # (ET++ at 1.5x of 2 epochs is refused on this per-sample path: its
    # whole epochs cannot give ten stages one each within the budget)
    out = run_demo(root, tmp_path / 'work', '--epochs', '2', '--runs',
                   'baseline', 'efficienttrain')
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.load(open(tmp_path / 'work' / 'demo.json'))
    assert [(r['method'], r['epochs']) for r in report] == [
        ('baseline', 2), ('efficienttrain', 2)]
    for method in ('baseline', 'efficienttrain'):
        assert f'{method}: the LinearLR of epochs 0 to 0.2 spans no ' \
            "iteration of this run's 4-iteration epochs: dropped" in \
            out.stdout


def test_demo_shows_progress_and_eta_of_each_run(tmp_path):
    """Issue 22, item 14: a line per epoch with the run's share done, the
    time spent and the ETA; ET's share weighs its cheaper 22 px epochs."""
    root = image_folder(tmp_path / 'data')
    out = run_demo(root, tmp_path / 'work', '--epochs', '5',
                   '--val-interval', '5', '--runs', 'baseline',
                   'efficienttrain')
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln.strip() for ln in out.stdout.splitlines()]
    base = [ln for ln in lines
            if ln.startswith('baseline: epoch ') and 'val' not in ln]
    assert [ln.split(', ')[:2] for ln in base] == [
        [f'baseline: epoch {e}/5', f'{20 * e}% of the run']
        for e in range(1, 6)]
    duration = r'\d+ (s|min \d\d s)'
    assert all(re.search(f', {duration} elapsed, ETA {duration}$', ln)
               for ln in base), base
    et = [ln.split(',')[1].strip() for ln in lines
          if ln.startswith('efficienttrain: epoch ') and 'val' not in ln]
    # (22/32)^2 = 0.47 for epochs 1-3, (28/32)^2 = 0.77 and 1: 3.18 in all
    assert et == ['15% of the run', '30% of the run', '45% of the run',
                  '69% of the run', '100% of the run']
    assert sum(ln.startswith('efficienttrain: epoch 5 val top-1 ')
               for ln in lines) == 1


def test_benchmark_retrains_an_unreadable_cached_run(fmnist, tmp_path):
    """Issue 22, item 12: an empty or truncated runs/*.json (a run killed
    while writing it, a full disk) is named and trained again, instead of a
    JSONDecodeError that names no file. The runs show their progress."""
    runs = tmp_path / 'runs'
    runs.mkdir()
    empty, cut = runs / 'baseline-seed0.json', runs / 'baseline-seed1.json'
    empty.write_text('')
    cut.write_text('{"method": "baseline", "seed": 1, "top1": 9')
    out = subprocess.run(
        [sys.executable, 'tools/benchmark_accuracy.py', 'fmnist', '--seeds',
         '2', '--methods', 'baseline', '--epochs', '1', '--train-subset',
         '128', '--val-subset', '100', '--work-dir', str(tmp_path),
         '--cfg-options', 'train_dataloader.batch_size=64',
         f'train_dataloader.dataset.data_root={FMNIST}',
         f'val_dataloader.dataset.data_root={FMNIST}'],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f'{empty} is empty; training that run again to replace it' in \
        out.stdout
    assert f'{cut} is not readable JSON (truncated?): ' in out.stdout
    for seed, path in enumerate((empty, cut)):
        assert json.loads(path.read_text())['seed'] == seed
        assert f'baseline seed {seed}: training' in out.stdout
    assert out.stdout.count('baseline: epoch 1/1, 100% of the run, ') == 2
