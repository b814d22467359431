"""The curriculum search: pure logic, and one real search end to end."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from conftest import FMNIST, ROOT

from mmet.curriculum import Curriculum, Stage
from mmet.sizes import at_bandwidth
from mmet.search import (STOP_BUDGET, STOP_DONE, STOP_NO_GAIN,
                         STOP_SEARCH_COST, STOP_TRIALS, Budget, SearchError,
                         SearchSpace, Trial, candidate_bandwidths, choose,
                         default_magnitudes, equal_shares, schedule_compute,
                         sequential_search)

DEMO_ET = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')
TOOL = osp.join(ROOT, 'tools/search_curriculum.py')


# candidates ------------------------------------------------------------------
def test_candidates_scale_to_the_full_size():
    # 64..224 of 224 at 28 px: 8, 12, ..., 28 exactly
    bws = candidate_bandwidths(full_size=28)
    assert [at_bandwidth(b, 28) for b in bws] == [8, 12, 16, 20, 24, 28]
    assert bws[-1] == 1.0
    # at 224 the candidates are the paper's pixels
    bws = candidate_bandwidths(full_size=224)
    pixels = [at_bandwidth(b, 224) for b in bws]
    assert pixels == [64, 96, 128, 160, 192, 224]


def test_candidates_round_to_even_and_deduplicate():
    # at 10 px: 64/224*10 = 2.9 -> 2, 96 -> 4.3 -> 4, 128 -> 5.7 -> 6,
    # 160 -> 7.1 -> 8, 192 -> 8.6 -> 8 (merged), 224 -> 10
    bws = candidate_bandwidths(full_size=10)
    assert [at_bandwidth(b, 10) for b in bws] == [2, 4, 6, 8, 10]
    # pixel sizes map back exactly
    assert all(at_bandwidth(b, 10) == round(b * 10) for b in bws)
    rect = candidate_bandwidths([112, 224], full_size=(32, 64))
    assert [at_bandwidth(b, (32, 64)) for b in rect] == [(16, 32), (32, 64)]


@pytest.mark.parametrize('pixels', [[], [0], [-5], [300], [True]])
def test_bad_candidates_are_refused(pixels):
    with pytest.raises(SearchError):
        candidate_bandwidths(pixels, full_size=28)


def test_default_magnitudes_follow_the_et_ramp():
    # five stages, final 9: ET's 1, 3, 5, 7 plus the final magnitude
    assert default_magnitudes(5, 9) == [[1, 9], [3, 9], [5, 9], [7, 9]]
    assert default_magnitudes(2, 0) == [[0]]
    with pytest.raises(SearchError):
        default_magnitudes(5, 11)


def space(n=3, bandwidths=(0.5, 0.75, 1.0), magnitudes=(9, ), full=28):
    return SearchSpace(equal_shares(n), bandwidths, magnitudes, 9, full)


def test_space_errors():
    with pytest.raises(SearchError, match='at least 2 stages'):
        space(n=1)
    with pytest.raises(SearchError, match='No candidate bandwidths'):
        space(bandwidths=())
    with pytest.raises(SearchError, match='no stage can get cheaper'):
        space(bandwidths=(1.0, ))
    with pytest.raises(SearchError, match='no candidate magnitude'):
        SearchSpace([0.5, 0.5], [0.5, 1], [[]], 9, 28)
    with pytest.raises(SearchError, match='one magnitude list per'):
        SearchSpace([0.5, 0.25, 0.25], [0.5, 1], [[1], [2], [3]], 9, 28)
    with pytest.raises(SearchError, match='sum to 1'):
        SearchSpace([0.5, 0.6], [0.5, 1], [1], 9, 28)
    with pytest.raises(SearchError):
        equal_shares(0)


# choice rule -----------------------------------------------------------------
def trial(b, m, score, compute=None):
    return Trial(index=0, stage=1, bandwidth=b, magnitude=m, schedule=(),
                 relative_compute=compute if compute is not None else b * b,
                 score=score)


def test_choose_takes_the_cheapest_within_tolerance():
    ts = [trial(0.5, 1, 80.0), trial(0.75, 1, 89.6), trial(1.0, 9, 90.0)]
    assert choose(ts, 90.0, 0.5).bandwidth == 0.75
    assert choose(ts, 90.0, 10.0).bandwidth == 0.5
    assert choose(ts, 95.0, 0.5) is None
    # tolerance 0: at least the reference
    assert choose(ts, 90.0, 0).bandwidth == 1.0
    # same compute: the better score, then the weaker augmentation
    ts = [trial(0.5, 1, 89.0), trial(0.5, 9, 89.5), trial(0.5, 5, 89.5)]
    assert choose(ts, 90.0, 1.0).magnitude == 5
    for bad in (-0.1, float('nan'), float('inf'), True):
        with pytest.raises(SearchError, match='tolerance'):
            choose(ts, 90.0, bad)


class Fake:
    """A proxy whose score falls with the pixels removed from each stage."""

    def __init__(self, penalty=None):
        # score lost per unit of (1 - B^2) in each stage
        self.penalty = penalty or [2.0, 4.0, 8.0, 16.0]
        self.calls = []

    def __call__(self, schedule):
        self.calls.append(schedule)
        lost = sum(p * (1 - s.bandwidth**2)
                   for p, s in zip(self.penalty, schedule))
        return 90.0 - lost, dict(note='fake')


def test_sequential_search_fixes_earlier_stages():
    fake = Fake()
    res = sequential_search(space(n=4, bandwidths=(0.25, 0.5, 0.75, 1.0)),
                            fake, tolerance=3.0)
    # stage 1 (penalty 2): 0.25 loses 1.875 -> pass. stage 2 (penalty 4):
    # 0.25 loses 1.875 + 3.75 > 3; 0.5 loses 1.875 + 3 > 3; 0.75 loses
    # 1.875 + 1.75 > 3; 1.0 -> no gain, stop
    assert [s.bandwidth for s in res.schedule] == [0.25, 1.0, 1.0, 1.0]
    assert res.stop_reason == STOP_NO_GAIN and res.stopped_at_stage == 2
    assert res.reference_score == 90.0
    # the first call is the reference; every later call keeps stage 1 chosen
    assert all(s.bandwidth == 1.0 for s in fake.calls[0])
    assert all(c[0].bandwidth == 0.25 for c in fake.calls[2:])
    # (1.0, 9) in stage 2 is the stage-1 choice again: reused, not retrained
    assert res.trials[-1].reused and res.trials_run == len(fake.calls)
    # ref, stage 1 and stage 2's full size (which ends the search)
    assert [t.chosen for t in res.trials].count(True) == 3
    assert res.trials[1].info == dict(note='fake')
    Curriculum(res.schedule)


def test_search_stops_at_the_first_passing_bandwidth():
    fake = Fake(penalty=[1.0, 1.0, 1.0])
    res = sequential_search(space(n=3), fake, tolerance=2.0)
    # 0.5 passes in both searched stages: 0.75 is never trained
    assert [s.bandwidth for s in res.schedule] == [0.5, 0.5, 1.0]
    assert res.stop_reason == STOP_DONE
    assert all(t.bandwidth != 0.75 for t in res.trials)
    assert res.trials_run == 3
    assert res.relative_compute == pytest.approx(
        schedule_compute(res.schedule, 28))
    assert res.speedup == pytest.approx(1 / (2 / 3 * 14**2 / 28**2 + 1 / 3))


def test_bandwidths_never_decrease():
    # stage 2 loses nothing at low B, but stage 1 chose 0.75 so stage 2
    # may not go below it
    fake = Fake(penalty=[20.0, 0.0, 0.0])
    res = sequential_search(space(n=3), fake, tolerance=10.0)
    assert [s.bandwidth for s in res.schedule] == [0.75, 0.75, 1.0]
    assert all(t.bandwidth >= 0.75 for t in res.trials if t.stage == 2)


def test_magnitudes_are_searched_per_stage():
    def evaluate(schedule):  # weak augmentation early helps a little
        return 90.0 + (9 - schedule[0].magnitude) * 0.1
    s = SearchSpace([0.5, 0.5], [0.5, 1.0], [[1, 5, 9]], 9, 28)
    res = sequential_search(s, evaluate, tolerance=1.0)
    assert res.schedule[0] == Stage(0.5, 0.5, 1.0)
    assert len([t for t in res.trials if t.stage == 1]) == 3


def test_compute_budget_stops_the_search():
    fake = Fake(penalty=[0.0, 0.0, 0.0, 0.0])
    s = space(n=5, bandwidths=(0.5, 1.0))
    res = sequential_search(s, fake, tolerance=0.0,
                            budget=Budget.from_speedup(target_speedup=1.3))
    # each searched stage saves 0.2 * 0.75 = 0.15: 0.85, then 0.70 <= 1/1.3
    assert res.stop_reason == STOP_BUDGET and res.stopped_at_stage == 2
    assert [s.bandwidth for s in res.schedule] == [0.5, 0.5, 1, 1, 1]
    assert res.budget_met is True
    assert any('reached the compute budget' in m for m in res.messages)


def test_unmet_budget_is_reported():
    fake = Fake(penalty=[100.0] * 4)
    res = sequential_search(space(n=4), fake, tolerance=1.0,
                            budget=Budget(max_relative_compute=0.8))
    assert res.budget_met is False
    assert any('NOT met' in m for m in res.messages)
    assert res.relative_compute == 1.0


def test_unreachable_budget_is_refused():
    with pytest.raises(SearchError, match='out of reach'):
        sequential_search(space(n=2), Fake(), 1.0,
                          Budget.from_speedup(target_speedup=3.0))


def test_trial_cap_stops_and_says_so():
    fake = Fake(penalty=[0.0] * 4)
    s = SearchSpace(equal_shares(4), [0.5, 1.0], [1, 9], 9, 28)
    res = sequential_search(s, fake, tolerance=0.0,
                            budget=Budget(max_trials=4))
    # ref + 2 (stage 1: B=0.5 with m=1 and m=9) + 1 (stage 2, m=1): cap
    assert res.trials_run == 4 and len(fake.calls) == 4
    assert res.stop_reason == STOP_TRIALS and res.stopped_at_stage == 2
    # stage 2's one trial passed, so it is kept; stages 3.. stay full size
    assert [s.bandwidth for s in res.schedule] == [0.5, 0.5, 1.0, 1.0]
    assert res.messages and 'stages 3..4 stay at full size' in \
        res.messages[0]


def test_search_cost_cap():
    fake = Fake(penalty=[0.0] * 3)
    res = sequential_search(space(n=3), fake, tolerance=0.0,
                            budget=Budget(max_search_cost=1.8))
    # ref 1.0 + stage 1 at 0.5: 0.75 -> 1.75; stage 2 would add 0.5
    assert res.stop_reason == STOP_SEARCH_COST
    assert res.search_cost == pytest.approx(1.75)


def test_budget_errors():
    for kwargs in (dict(max_relative_compute=1.0),
                   dict(max_relative_compute=0), dict(max_trials=0),
                   dict(max_trials=1.5), dict(max_search_cost=0.5)):
        with pytest.raises(SearchError):
            Budget(**kwargs)
    with pytest.raises(SearchError, match='not both'):
        Budget.from_speedup(1.5, 0.5)
    with pytest.raises(SearchError, match='> 1'):
        Budget.from_speedup(target_speedup=0.9)


# the tool ------------------------------------------------------------------
def run_tool(*args, timeout=300):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_tool_refuses_bad_settings(tmp_path):
    cfg = tmp_path / 'no_crop.py'
    cfg.write_text(f"_base_ = ['{DEMO_ET}']\n"
                   "train_dataloader = dict(dataset=dict(pipeline=["
                   "dict(type='PackInputs')]))\n")
    out = run_tool(cfg, '--dry-run')
    assert out.returncode == 2 and 'no FourierCrop' in out.stderr
    out = run_tool(DEMO_ET, '--dry-run', '--proxy-epochs', '3')
    assert out.returncode == 2 and 'stage without epochs' in out.stderr
    out = run_tool(DEMO_ET, '--dry-run', '--proxy-epochs', '0')
    assert out.returncode == 2 and '--proxy-epochs must be >= 1, got 0' in \
        out.stderr
    out = run_tool(DEMO_ET, '--dry-run', '--tolerance', '-1')
    assert out.returncode == 2 and 'tolerance' in out.stderr
    out = run_tool(DEMO_ET, '--dry-run', '--target-speedup', '9')
    assert out.returncode == 2 and 'out of reach' in out.stderr
    out = run_tool(DEMO_ET, '--dry-run', '--target-speedup', '1.5')
    assert out.returncode == 0 and '[8, 12, 16, 20, 24, 28]' in out.stdout


def test_tool_accepts_what_the_hook_trains(tmp_path):
    """The cheap path (StagedRandomResizedCrop, no FourierCrop), the device
    and batched paths (DeviceAugmentPreprocessor) and a stock pipeline the
    hook adapts: the full size is the stage driver's."""
    fast = tmp_path / 'fast.py'
    fast.write_text(
        f"_base_ = ['{ROOT}/configs/efficienttrain/resnet50_et_8xb256_in1k"
        ".py']\ntrain_dataloader = dict(dataset=dict("
        'pipeline=_base_.et_fast_train_pipeline))\n')
    stock = tmp_path / 'stock.py'
    stock.write_text(
        "_base_ = ['mmpretrain::convnext/convnext-tiny_32xb128_in1k.py']\n"
        "custom_imports = dict(imports=['mmet'])\n")
    for config, full in (
            (fast, 224), (stock, 224),
            (osp.join(ROOT, 'configs/device/'
                      'resnet50_et-device_8xb256_in1k.py'), 224),
            (osp.join(ROOT, 'configs/demo/fmnist_resnet_et_batchaug.py'), 28)):
        out = run_tool(config, '--dry-run')
        assert out.returncode == 0, out.stderr[-2000:]
        assert f'full size {full}; ' in out.stdout and 'final m 9' in \
            out.stdout


@pytest.mark.usefixtures('fmnist')
def test_unknown_metric_is_refused_before_any_proxy_trains(tmp_path):
    out = run_tool(DEMO_ET, '--work-dir', tmp_path / 'search', '--metric',
                   'bogus', '--stages', '2', '--proxy-epochs', '2',
                   '--val-subset', '200', '--workers', '0', '--cfg-options',
                   f'train_dataloader.dataset.data_root={FMNIST}',
                   f'val_dataloader.dataset.data_root={FMNIST}')
    assert out.returncode == 2, out.stderr[-2000:]
    assert "--metric 'bogus' is not one the validation reports: it " \
        "reports ['accuracy/top1']" in out.stderr
    assert 'training trial' not in out.stdout
    assert not (tmp_path / 'search' / 'trials').exists() or \
        not list((tmp_path / 'search' / 'trials').iterdir())


@pytest.mark.usefixtures('fmnist')
def test_tiny_search_end_to_end_and_resume(tmp_path):
    work = tmp_path / 'search'
    args = [DEMO_ET, '--work-dir', work, '--stages', '2', '--bandwidths',
            '128', '224', '--magnitudes', '3', '--proxy-epochs', '2',
            '--train-subset', '256', '--val-subset', '200', '--batch-size',
            '64', '--workers', '0', '--tolerance', '100', '--cfg-options',
            f'train_dataloader.dataset.data_root={FMNIST}',
            f'val_dataloader.dataset.data_root={FMNIST}']
    out = run_tool(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((work / 'search.json').read_text())
    assert report['trials_trained_now'] == 2
    assert [(t['stage'], t['size'], t['chosen']) for t in report['trials']] \
        == [(0, 28, True), (1, 16, True)]
    assert [s['size'] for s in report['schedule']] == [16, 28]
    assert len(list((work / 'trials').glob('*.json'))) == 2
    assert (work / 'search.png').stat().st_size > 0

    # the snippet is a config that inherits the demo and loads into the hook
    from mmengine.config import Config
    snippet = work / 'searched_curriculum.py'
    cfg = Config.fromfile(str(snippet))
    hooks = [h for h in cfg.custom_hooks
             if h['type'] == 'EfficientTrainHook']
    assert len(hooks) == 1
    cur = Curriculum.build(hooks[0]['curriculum'])
    assert cur.stages == (Stage(0.5, 16 / 28, 3.0), Stage(0.5, 1.0, 9.0))
    assert cfg.model.backbone.type == 'ResNet_CIFAR'  # the base is kept
    from mmet.hooks import EfficientTrainHook
    EfficientTrainHook(curriculum=hooks[0]['curriculum'])

    # a rerun trains nothing and gives the same answer
    again = run_tool(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    report2 = json.loads((work / 'search.json').read_text())
    assert report2['trials_trained_now'] == 0
    assert report2['trials_from_cache'] == 2
    assert report2['schedule'] == report['schedule']

    # changed proxy settings must not reuse those trials (checked with a
    # trial cap of 1: only the reference, retrained under the new seed)
    third = run_tool(*args, '--seed', '1', '--max-trials', '1')
    assert third.returncode == 0, third.stderr[-3000:]
    report3 = json.loads((work / 'search.json').read_text())
    assert report3['trials_trained_now'] == 1
    assert report3['stop_reason'] == STOP_TRIALS
    assert 'reached --max-trials' in third.stdout
    assert len(list((work / 'trials').glob('*.json'))) == 3

    # two seeds per trial: the seed-0 and seed-1 runs made above are reused,
    # only the candidate's seed-1 run is new, and scores are averaged
    fourth = run_tool(*args, '--seeds', '2')
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    report4 = json.loads((work / 'search.json').read_text())
    assert report4['trials_trained_now'] == 1
    assert report4['trials_from_cache'] == 3
    for t in report4['trials']:
        assert len(t['scores']) == 2
        assert t['score'] == pytest.approx(sum(t['scores']) / 2)


@pytest.mark.usefixtures('fmnist')
def test_a_stock_pipeline_is_searched_as_training_adapts_it(tmp_path):
    """Issue 22, item 5: RandomResizedCrop + RandAugment (stock), which
    tools/train.py adapts; the search's proxies adapt it the same way."""
    config = tmp_path / 'stock.py'
    base = osp.join(ROOT, 'configs/demo/fmnist_resnet_baseline.py')
    config.write_text(
        f'_base_ = [{base!r}]\n'
        'train_dataloader = dict(dataset=dict(pipeline=[\n'
        "    dict(type='RandomResizedCrop', scale=28,\n"
        "         crop_ratio_range=(0.5, 1.0)),\n"
        "    dict(type='RandomFlip', prob=0.5, direction='horizontal'),\n"
        "    dict(type='RandAugment', num_policies=2, magnitude_level=9,\n"
        "         policies=[dict(type='Rotate', magnitude_range=(0, 30)),\n"
        "                   dict(type='Shear', magnitude_range=(0, 0.3))]),\n"
        "    dict(type='PackInputs')]))\n")
    work = tmp_path / 'search'
    out = run_tool(config, '--work-dir', work, '--stages', '2',
                   '--bandwidths', '160', '224', '--magnitudes', '3',
                   '--proxy-epochs', '2', '--train-subset', '128',
                   '--val-subset', '100', '--batch-size', '64', '--workers',
                   '0', '--tolerance', '100', '--cfg-options',
                   f'train_dataloader.dataset.data_root={FMNIST}',
                   f'val_dataloader.dataset.data_root={FMNIST}')
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((work / 'search.json').read_text())
    assert report['trials_trained_now'] == 2


@pytest.mark.usefixtures('fmnist')
def test_out_never_replaces_the_config(tmp_path):
    """Issue 22, item 2: ``--out CONFIG`` wrote a config that inherits
    itself over the input (RecursionError at the next train). The input,
    by any path to it, is refused even with --force, and an existing file
    needs --force; all before any proxy trains."""
    config = tmp_path / 'my_et.py'
    text = f"_base_ = ['{DEMO_ET}']\n"
    config.write_text(text)
    link = tmp_path / 'link.py'
    link.symlink_to(config)
    other = tmp_path / 'other.py'
    other.write_text('# keep me\n')
    args = [config, '--work-dir', tmp_path / 'search', '--stages', '2',
            '--bandwidths', '128', '224', '--magnitudes', '3',
            '--proxy-epochs', '2', '--train-subset', '128', '--val-subset',
            '100', '--batch-size', '64', '--workers', '0', '--tolerance',
            '100', '--cfg-options',
            f'train_dataloader.dataset.data_root={FMNIST}',
            f'val_dataloader.dataset.data_root={FMNIST}']
    for out, force in ((config, []), (link, ['--force']),
                       (f'{tmp_path}/./my_et.py', ['--force'])):
        res = run_tool(*args, '--out', out, *force)
        assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
        assert f'the output {out} is the input config {config}: ' in \
            res.stderr
        assert 'training trial' not in res.stdout
    assert config.read_text() == text and link.is_symlink()
    res = run_tool(*args, '--out', other)
    assert res.returncode == 2
    assert f'{other} exists; pass --force to replace it' in res.stderr
    assert other.read_text() == '# keep me\n'
    assert not (tmp_path / 'search' / 'trials').exists()
    res = run_tool(*args, '--out', other, '--force', '--dry-run')
    assert res.returncode == 0, res.stderr[-2000:]
