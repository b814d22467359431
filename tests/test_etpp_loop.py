"""EfficientTrainLoop in real Runners: derived epochs, stages in workers, the
compute clock, resume and replay."""
import os
import os.path as osp

import numpy as np
import pytest
from conftest import build_runner, recorder, tiny_cfg
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from mmet.curriculum import Curriculum
from mmet.hooks import EfficientTrainHook
from mmet.plan import StageClock

# 2 equal-compute stages at 32 px: B = 16 (m=2) and 32 (m=6). At E = 2
# full-size epochs they run 4 and 1 real epochs (4 iterations each).
TWO_STAGES = [dict(share=0.8, bandwidth=0.5, magnitude=2),
              dict(share=0.2, bandwidth=1.0, magnitude=6)]
SCHEDULE = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, eta_min=1e-3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
         by_epoch=True, eta_min=1e-5, convert_to_iter_based=True),
]


@HOOKS.register_module(force=True)
class IterRecorder(Hook):
    """Per iteration: epoch, batch shape, lr, weight decay; and the end."""

    priority = 'LOWEST'

    def __init__(self):
        self.rows, self.final = [], None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        group = runner.optim_wrapper.param_groups[0]
        loop = runner.train_loop
        buffer = getattr(getattr(loop, 'replay', None), 'buffer', None)
        self.rows.append(dict(
            epoch=runner.epoch,
            iter=runner.iter,
            n=len(data_batch['inputs']),
            hw=tuple(data_batch['inputs'][0].shape[-2:]),
            lr=group['lr'],
            wd=group['weight_decay'],
            loaded=loop.dataloader.batch_sampler.batch_size,
            chunks=None if buffer is None else len(buffer),
            capacity=None if buffer is None else buffer.capacity))

    def after_train(self, runner):
        group = runner.optim_wrapper.param_groups[0]
        self.final = (group['lr'], group['weight_decay'])


def iter_rec(runner):
    return next(h for h in runner.hooks if isinstance(h, IterRecorder))


def etpp_cfg(work_dir, curriculum=TWO_STAGES, budget=2, extra_hooks=(),
             **kwargs):
    loop = dict(type='EfficientTrainLoop', curriculum=curriculum,
                budget=budget)
    loop.update(kwargs.pop('loop', {}))
    return tiny_cfg(
        work_dir, train_cfg=loop, param_scheduler=SCHEDULE,
        optim_wrapper=dict(optimizer=dict(
            type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-3)),
        custom_hooks=[dict(type='BatchRecorder'), dict(type='IterRecorder'),
                      *extra_hooks],
        **kwargs)


def test_max_epochs_is_derived_and_stages_reach_the_workers(tmp_path):
    runner = build_runner(etpp_cfg(tmp_path))
    runner.train()
    assert runner.max_epochs == 5 and runner.max_iters == 20
    # the loop registered the hook, which follows the loop's plan
    hooks = [h for h in runner.hooks if isinstance(h, EfficientTrainHook)]
    assert len(hooks) == 1 and hooks[0].plan is runner.train_loop.plan
    seen = recorder(runner)
    assert [seen[e]['shapes'] for e in range(5)] == \
        [{(16, 16)}] * 4 + [{(32, 32)}]
    assert [seen[e]['magnitudes'] for e in range(5)] == [{2}] * 4 + [{6}]
    for e in range(5):  # made in worker processes
        assert os.getpid() not in seen[e]['pids']
    assert seen[3]['pids'].isdisjoint(seen[4]['pids'])  # re-forked


def test_the_real_preset_switches_at_the_derived_epochs(tmp_path):
    # efficienttrain++resnet at 32 px: B = 14, 22, 32 px; E = 4.4 -> 10
    # whole epochs, which would leave 3 stages without one: re-planned to 12
    runner = build_runner(etpp_cfg(
        tmp_path, curriculum='efficienttrain++', budget=4.4,
        loop=dict(family='resnet'), num_workers=0))
    preset = Curriculum.build('efficienttrain++resnet')
    assert preset.plan(4.4).epochs() == [2, 3, 1, 1, 0, 1, 1, 0, 0, 1]
    plan = preset.plan(4.4, every_stage=True)
    assert plan.epochs() == [2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    runner.train()
    assert runner.max_epochs == 12
    clock = StageClock(plan.curriculum, 12, 32)
    expected = [clock.state(clock.index_at(e)) for e in range(12)]
    seen = recorder(runner)
    assert [seen[e]['shapes'] for e in range(12)] == \
        [{(s.size, s.size)} for s in expected]
    assert [seen[e]['magnitudes'] for e in range(12)] == \
        [{s.magnitude} for s in expected]
    assert [s.magnitude for s in expected] == \
        [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # every stage trains
    assert {s.size for s in expected} == {14, 22, 32}


def reference_run(tmp_path, epochs):
    """The full-size run: same optimizer and schedule, ``epochs`` epochs."""
    cfg = tiny_cfg(
        tmp_path / 'ref', max_epochs=epochs, num_workers=0,
        param_scheduler=SCHEDULE,
        optim_wrapper=dict(optimizer=dict(
            type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-3)),
        custom_hooks=[dict(type='IterRecorder')])
    runner = build_runner(cfg)
    runner.train()
    rec = iter_rec(runner)
    lr = [r['lr'] for r in rec.rows] + [rec.final[0]]
    wd = [r['wd'] for r in rec.rows] + [rec.final[1]]
    return np.array(lr), np.array(wd)


def test_lr_and_weight_decay_follow_the_compute(tmp_path):
    runner = build_runner(etpp_cfg(tmp_path / 'etpp', num_workers=0))
    runner.train()
    rec = iter_rec(runner)
    ref_lr, ref_wd = reference_run(tmp_path, epochs=2)  # E = 2 epochs
    # compute spent before each iteration, from the shapes really trained
    cost = np.array([r['hw'][0] * r['hw'][1] / 32**2 for r in rec.rows])
    spent = np.concatenate([[0], np.cumsum(cost)])
    position = spent / spent[-1] * (len(ref_lr) - 1)
    lr = np.array([r['lr'] for r in rec.rows] + [rec.final[0]])
    wd = np.array([r['wd'] for r in rec.rows] + [rec.final[1]])
    # the end of each stage: exactly the full-size run at that compute
    ends = [i for i in range(1, len(rec.rows))
            if rec.rows[i]['hw'] != rec.rows[i - 1]['hw']] + [len(rec.rows)]
    assert ends == [16, 20] and position[16] == 4
    for i in ends:
        k = int(position[i])
        assert position[i] == k
        assert lr[i] == pytest.approx(ref_lr[k], rel=1e-9)
        assert wd[i] == pytest.approx(ref_wd[k], rel=1e-9)
    # the warm-up (3 full-size iterations) stretches over 12 real ones
    assert np.all(np.diff(lr[:13]) > 0) and lr[12] == pytest.approx(0.1)
    # and in between, the full-size run's values at the compute spent
    grid = np.arange(len(ref_lr))
    assert np.allclose(lr, np.interp(position, grid, ref_lr))
    assert np.allclose(wd, np.interp(position, grid, ref_wd))


def test_resume_mid_stage(tmp_path):
    full = build_runner(etpp_cfg(tmp_path / 'full', num_workers=0))
    full.train()
    ref = iter_rec(full).rows

    cut = build_runner(etpp_cfg(
        tmp_path / 'cut', num_workers=0,
        extra_hooks=[dict(type='StopAfterEpoch', epoch=2)]))
    cut.train()
    ckpt = osp.join(tmp_path, 'cut', 'epoch_2.pth')
    resumed = build_runner(etpp_cfg(
        tmp_path / 'cut', num_workers=0, resume=True, load_from=ckpt))
    resumed.train()
    rows = iter_rec(resumed).rows
    assert rows[0]['epoch'] == 2 and rows[0]['iter'] == 8  # mid stage 1
    assert len(rows) == 12 and resumed.max_epochs == 5
    for a, b in zip(rows, ref[8:]):
        assert (a['epoch'], a['iter'], a['hw']) == \
            (b['epoch'], b['iter'], b['hw'])
        assert a['lr'] == pytest.approx(b['lr'], rel=1e-12)
        assert a['wd'] == pytest.approx(b['wd'], rel=1e-12)

    # another budget would move the stages and the clock: refused
    other = build_runner(etpp_cfg(
        tmp_path / 'cut', budget=3, num_workers=0, resume=True,
        load_from=ckpt))
    with pytest.raises(RuntimeError, match='another compute clock'):
        other.train()


def test_replay_restores_batches_and_keeps_the_steps(tmp_path):
    runner = build_runner(etpp_cfg(
        tmp_path, loop=dict(replay=dict(
            times=[2, 1], buffer_size=[3, 0], split=2))))
    runner.train()
    rows = iter_rec(runner).rows
    # stage 1 loads 4 images a step, replays 4, and makes 2 passes of 8
    # steps; stage 2 loads the full 8: 16 + 4 steps, as without replay
    assert runner.max_epochs == 3 and len(rows) == 20
    assert runner.train_loop.plan.clock_stages() == [(16, 0.25), (4, 1.0)]
    assert all(r['n'] == 8 for r in rows)
    assert [r['loaded'] for r in rows] == [4] * 16 + [8] * 4
    assert all(r['chunks'] <= r['capacity'] == 6 for r in rows[:16])
    assert max(r['chunks'] for r in rows[:16]) == 6  # it fills up
    assert all(r['chunks'] == r['capacity'] == 0 for r in rows[16:])
    seen = recorder(runner)
    assert [seen[e]['shapes'] for e in range(3)] == \
        [{(16, 16)}, {(16, 16)}, {(32, 32)}]
    # the loader is left as configured
    assert runner.train_dataloader.batch_sampler.batch_size == 8


def test_hook_and_loop_cannot_disagree(tmp_path):
    runner = build_runner(etpp_cfg(tmp_path / 'a', extra_hooks=[
        dict(type='EfficientTrainHook', curriculum='efficienttrain')]))
    with pytest.raises(ValueError, match='another curriculum'):
        runner.train()
    # the same stages in the hook: it follows the loop's epochs
    runner = build_runner(etpp_cfg(
        tmp_path / 'b', num_workers=0, extra_hooks=[
            dict(type='EfficientTrainHook', curriculum=TWO_STAGES)]))
    runner.train()
    hooks = [h for h in runner.hooks if isinstance(h, EfficientTrainHook)]
    assert len(hooks) == 1 and hooks[0].plan is runner.train_loop.plan


@pytest.mark.parametrize('loop, message', [
    (dict(budget=200, max_epochs=300), 'derives its epochs'),
    (dict(budget=None), 'exactly one of budget'),
    (dict(budget=200, speedup=1.5), 'exactly one of budget'),
    (dict(budget=2, replay=dict(times=[3, 1], buffer_size=[1, 0])),
     'not divisible'),
    (dict(budget=2, replay=dict(times=[2, 1], buffer_size=[0, 0])),
     'needs a buffer'),
])
def test_bad_loop_settings_say_what_to_change(tmp_path, loop, message):
    cfg = etpp_cfg(tmp_path, num_workers=0)
    cfg['train_cfg'].update(loop)
    runner = build_runner(cfg)
    with pytest.raises(ValueError, match=message):
        runner.train()


def test_speedup_gives_the_budget(tmp_path):
    cfg = etpp_cfg(tmp_path, num_workers=0, budget=None,
                   loop=dict(speedup=1.5, baseline_epochs=3))
    runner = build_runner(cfg)
    runner.train()
    loop = runner.train_loop
    assert loop.plan.budget == 2 and runner.max_epochs == 5
    assert loop.plan.predicted_speedup() == pytest.approx(1.5)


@HOOKS.register_module(force=True)
class StepCounter(Hook):
    """Count real optimizer steps per epoch (torch's step post-hook)."""

    def __init__(self):
        self.steps = {}

    def before_train(self, runner):
        runner.optim_wrapper.optimizer.register_step_post_hook(
            lambda *_: self.steps.__setitem__(
                runner.epoch, self.steps.get(runner.epoch, 0) + 1))


def test_micro_batch_doubles_the_batch_and_keeps_the_steps(tmp_path):
    """Official ET: 2x the batch below full size, half the accumulation."""
    def run(work, **loop):
        cfg = etpp_cfg(work, loop=loop,
                       extra_hooks=[dict(type='StepCounter')])
        cfg['train_dataloader']['batch_size'] = 4
        cfg['optim_wrapper']['accumulative_counts'] = 2
        runner = build_runner(cfg)
        runner.train()
        steps = next(h for h in runner.hooks
                     if isinstance(h, StepCounter)).steps
        return runner, iter_rec(runner).rows, steps

    runner, rows, steps = run(tmp_path / 'scaled', micro_batch=2)
    ref_runner, ref_rows, ref_steps = run(tmp_path / 'ref')
    # stage 1 (B=16): 4 epochs of 4 iterations of 8 images, no accumulation;
    # stage 2 (full size): 1 epoch of 8 iterations of 4, accumulating 2
    assert [r['loaded'] for r in rows] == [8] * 16 + [4] * 8
    assert runner.train_loop.plan.clock_stages() == [(16, 0.5), (8, 1.0)]
    assert ref_runner.train_loop.plan.clock_stages() == [(32, 0.25), (8, 1.0)]
    # the same optimizer steps, each over a global batch of 8
    assert steps == ref_steps == {0: 4, 1: 4, 2: 4, 3: 4, 4: 4}
    # the compute clock: the full-size stage starts with the same LR, and
    # both runs end where the schedule ends
    first = next(r for r in rows if r['hw'] == (32, 32))
    ref_first = next(r for r in ref_rows if r['hw'] == (32, 32))
    assert first['lr'] == pytest.approx(ref_first['lr'])
    assert iter_rec(runner).final == pytest.approx(iter_rec(ref_runner).final)
    assert runner.optim_wrapper._accumulative_counts == 2
    assert runner.train_dataloader.batch_sampler.batch_size == 4


def test_micro_batch_needs_divisible_accumulation(tmp_path):
    cfg = etpp_cfg(tmp_path, num_workers=0, loop=dict(micro_batch=2))
    runner = build_runner(cfg)
    with pytest.raises(ValueError, match=r'accumulative_counts=1 is not '
                       r'divisible.*Set accumulative_counts=2'):
        runner.train()
    cfg = etpp_cfg(tmp_path, num_workers=0, loop=dict(
        micro_batch=2, replay=dict(times=[2, 1], buffer_size=[3, 0])))
    with pytest.raises(ValueError, match='use one of them'):
        build_runner(cfg).train()
    # the old name says the new one
    cfg = etpp_cfg(tmp_path, num_workers=0, loop=dict(low_res_batch=2))
    with pytest.raises(ValueError, match=r'is now micro_batch: give '
                       r"micro_batch=2, or 'auto'"):
        build_runner(cfg).train()
