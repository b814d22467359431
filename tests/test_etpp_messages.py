"""EfficientTrainLoop's messages about the budget: one too small for the plan
is refused with the smallest that works, a speedup below 1 is warned of."""
import os.path as osp

import pytest
from conftest import build_runner, on_the_batched_path
from test_etpp_few_epochs import etpp_cfg as preset_cfg
from test_etpp_loop import etpp_cfg


def log_text(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def test_a_warm_up_longer_than_the_budget_names_the_smallest_budget(
        tmp_path):
    # the schedule warms up for 1 full-size epoch (4 iterations); E = 0.1
    # (speedup 100 of 10 epochs) leaves the cosine after it no iteration
    cfg = etpp_cfg(tmp_path / 'a', num_workers=0, budget=None,
                   loop=dict(speedup=100, baseline_epochs=10))
    with pytest.raises(ValueError, match=(
            r'budget E=0.1 full-size epochs \(speedup 100 against '
            r'baseline_epochs=10\) is too small: .* in which '
            r'CosineAnnealingLR \(from epoch 1\) and '
            r'CosineAnnealingParamScheduler \(from epoch 0\) get no '
            r'iteration .* smallest workable budget is budget=1.25 '
            r'\(speedup=8\)')):
        build_runner(cfg).train_loop
    # which trains
    runner = build_runner(etpp_cfg(tmp_path / 'b', num_workers=0,
                                   budget=None, loop=dict(
                                       speedup=8, baseline_epochs=10)))
    runner.train()
    assert runner.iter == runner.max_iters > 0


def batched(work_dir, budget):
    cfg = preset_cfg(work_dir, num_workers=0, custom_hooks=[])
    cfg['train_cfg']['budget'] = budget
    on_the_batched_path(cfg)
    return cfg


def test_the_batched_path_refuses_a_budget_that_skips_stages(tmp_path):
    # 10 ET++ stages switching by iteration: E = 0.3 gives 4 iterations
    with pytest.raises(ValueError, match=(
            r'budget E=0.3 full-size epochs .* too small: its 4 iterations '
            r'cannot give every stage one \(stages \[3, 5, 6, 7, 8, 9\] of '
            r'10 get none\). The smallest workable budget is budget=1.98 '
            r'\(speedup=151\)')):
        build_runner(batched(tmp_path / 'a', 0.3)).train_loop
    loop = build_runner(batched(tmp_path / 'b', 1.98)).train_loop
    assert min(n for n, _ in loop.plan.clock_stages()) == 1
    with pytest.raises(ValueError, match='stages \\[9\\] of 10 get none'):
        build_runner(batched(tmp_path / 'c', 1.97)).train_loop


def test_a_speedup_below_1_warns_that_it_costs_more(tmp_path):
    runner = build_runner(etpp_cfg(tmp_path, num_workers=0, budget=None,
                                   loop=dict(speedup=0.5,
                                             baseline_epochs=3)))
    assert runner.train_loop.plan.budget == 6
    assert 'WARNING - EfficientTrainLoop: speedup=0.5 is below 1: the ' \
        'budget E=6 full-size epochs costs more than the baseline_epochs=3 ' \
        'it is measured against (2x its compute).' in log_text(runner)


def test_a_budget_far_too_small_is_refused_on_the_per_sample_path(tmp_path):
    """Issue 22, item 8: --speedup 100 on the per-sample path (stages switch
    at whole epochs) used to train 6.27 full-size epochs for a budget of
    0.05 with a warning; both paths now refuse it with the smallest budget
    that works."""
    cfg = preset_cfg(tmp_path / 'a', num_workers=0, custom_hooks=[])
    cfg['train_cfg'].update(budget=None, speedup=100, baseline_epochs=5)
    with pytest.raises(ValueError, match=(
            r'budget E=0.05 full-size epochs \(speedup 100 against '
            r'baseline_epochs=5\) is too small: whole epochs give every stage '
            r'one only by training [\d.]+ full-size epochs of compute, '
            r'\+\d+% over the budget .* smallest workable budget is '
            r'budget=([\d.]+)')) as error:
        build_runner(cfg).train_loop
    smallest = float(str(error.value).split('budget=')[-1].split(' ')[0])
    cfg = preset_cfg(tmp_path / 'b', num_workers=0, custom_hooks=[])
    cfg['train_cfg'].update(budget=smallest)
    loop = build_runner(cfg).train_loop  # which plans
    assert loop.plan.replanned
    assert loop.plan.compute_epochs() <= 2 * smallest
