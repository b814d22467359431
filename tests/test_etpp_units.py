"""The compute clock and the replay buffer, on their own."""
import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS
from mmpretrain.structures import DataSample

from mmet.replay import ReplayBuffer
from mmet.schedulers import ComputeClockScheduler, wrap_param_schedulers

SCHEDULES = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=2),
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
         eta_min=0.01, by_epoch=True),
    dict(type='LinearMomentum', start_factor=0.5, by_epoch=False, end=7),
]


def adamw():
    m = torch.nn.Linear(2, 2)
    return OptimWrapper(torch.optim.AdamW(
        [dict(params=[m.weight]),
         dict(params=[m.bias], weight_decay=0, lr=0.5)],
        lr=1.0, weight_decay=0.05))


def hyper(opt):
    return [(g['lr'], g['weight_decay'], g['betas'][0])
            for g in opt.param_groups]


def reference(epochs, L):
    """A plain full-size run: the values during each iteration (and after)."""
    opt, schedulers = adamw(), []
    for cfg in SCHEDULES:
        cfg = dict(cfg)
        cfg.setdefault('end', epochs if cfg.get('by_epoch', True)
                       else epochs * L)
        schedulers.append(PARAM_SCHEDULERS.build(
            cfg, default_args=dict(optimizer=opt, epoch_length=L)))
    values = []
    for i in range(epochs * L):
        values.append(hyper(opt))
        opt.step()
        for s in schedulers:
            if not s.by_epoch:
                s.step()
        if (i + 1) % L == 0:
            for s in schedulers:
                if s.by_epoch:
                    s.step()
    values.append(hyper(opt))
    return np.array(values)


def run_clock(stages, epochs, L):
    opt = adamw()
    clock = ComputeClockScheduler(opt, SCHEDULES, stages=stages,
                                  timeline_epochs=epochs, iters_per_epoch=L)
    values = []
    for _ in range(sum(n for n, _ in stages)):
        values.append(hyper(opt))
        opt.step()
        clock.step()
    values.append(hyper(opt))
    return np.array(values), clock, opt


def test_full_size_clock_reproduces_the_wrapped_schedulers_exactly():
    ref = reference(10, 7)
    got, _, _ = run_clock([(70, 1.0)], 10, 7)
    assert np.array_equal(got, ref)  # lr, weight decay and Adam's beta_0


def test_stage_ends_match_the_full_size_run_at_that_compute():
    # 32 iterations at 1/4 cost = 8 full-size iterations, then 12 at full
    L, epochs = 4, 5
    ref = reference(epochs, L)
    got, clock, _ = run_clock([(32, 0.25), (12, 1.0)], epochs, L)
    assert np.allclose(got[32], ref[8])  # after stage 1: 8 of 20 spent
    assert np.allclose(got[-1], ref[-1])  # the schedule ends with the run
    # in between: interpolated at the compute spent
    t = np.array([clock.position(j) for j in range(45)])
    assert t[32] == 8 and t[-1] == 20 and np.all(np.diff(t) > 0)
    for k in range(ref.shape[1]):
        for q in range(ref.shape[2]):
            assert np.allclose(got[:, k, q],
                               np.interp(t, np.arange(21), ref[:, k, q]))


def test_clock_state_survives_a_checkpoint_and_refuses_another_budget():
    _, clock, _ = run_clock([(24, 0.25), (6, 1.0)], 4, 3)
    state = clock.state_dict()
    assert '_table' not in state and state['_global_step'] == 30
    fresh = ComputeClockScheduler(
        adamw(), SCHEDULES, stages=[(24, 0.25), (6, 1.0)],
        timeline_epochs=4, iters_per_epoch=3)
    fresh.load_state_dict(state)
    assert fresh._global_step == 30
    other = ComputeClockScheduler(
        adamw(), SCHEDULES, stages=[(24, 0.25), (6, 1.0)],
        timeline_epochs=5, iters_per_epoch=3)
    with pytest.raises(RuntimeError, match='another compute clock'):
        other.load_state_dict(state)


def test_metric_driven_schedulers_are_refused():
    with pytest.raises(ValueError, match='validation metrics'):
        ComputeClockScheduler(
            adamw(), [dict(type='ReduceOnPlateauLR', monitor='loss')],
            stages=[(4, 1.0)], timeline_epochs=1, iters_per_epoch=4)


def test_wrap_keeps_the_runner_config_shapes():
    one = dict(type='CosineAnnealingLR', by_epoch=True)
    for cfg in (one, [one]):
        wrapped = wrap_param_schedulers(cfg, [(4, 1.0)], 1, 4)
        assert len(wrapped) == 1
        assert wrapped[0]['type'] is ComputeClockScheduler
        assert wrapped[0]['schedulers'] == [one]
    per_opt = wrap_param_schedulers(dict(a=[one], b=one), [(4, 1.0)], 1, 4)
    assert set(per_opt) == {'a', 'b'}
    assert wrap_param_schedulers(None, [(4, 1.0)], 1, 4) is None
    with pytest.raises(ValueError, match='already holds'):
        wrap_param_schedulers(wrapped, [(4, 1.0)], 1, 4)


# replay -----------------------------------------------------------------
def batch(n, start=0, stacked=False, dtype=torch.uint8):
    inputs = [torch.full((3, 4, 4), i, dtype=dtype)
              for i in range(start, start + n)]
    return dict(
        inputs=torch.stack(inputs) if stacked else inputs,
        data_samples=[DataSample().set_gt_label(i % 7)
                      for i in range(start, start + n)])


@pytest.mark.parametrize('stacked', [False, True])
def test_replay_restores_the_batch_size(stacked):
    buf = ReplayBuffer(times=4, size=3, split=2, seed=0)
    for step in range(10):
        fresh = batch(6, start=6 * step, stacked=stacked)
        out = buf.mix(fresh)
        assert len(out['inputs']) == len(out['data_samples']) == 24
        # the fresh samples lead the batch, untouched
        assert all(torch.equal(a, b) for a, b in
                   zip(out['inputs'][:6], fresh['inputs']))
        assert out['inputs'][0].dtype == torch.uint8
        # replayed samples keep their label with their image
        for x, ds in zip(out['inputs'], out['data_samples']):
            assert int(x.flatten()[0]) % 7 == int(ds.gt_label)
        assert len(buf) <= buf.capacity == 6  # 3 loaded batches x 2 chunks


def test_replay_buffer_is_a_bounded_fifo():
    buf = ReplayBuffer(times=2, size=2, split=4)
    for step in range(6):
        buf.push(batch(8, start=8 * step))
        assert len(buf) <= 8 and buf.num_samples <= 16
    held = sorted(int(x.flatten()[0]) for c in buf._chunks
                  for x in c['inputs'])
    assert held == list(range(32, 48))  # the two newest loaded batches
    assert buf.nbytes == 16 * 3 * 4 * 4  # uint8 kept as it is


def test_replay_stores_floats_in_fp16_and_copies_samples():
    buf = ReplayBuffer(times=2, size=1, split=1)
    fresh = batch(2, dtype=torch.float32)
    out = buf.mix(fresh)
    assert buf._chunks[0]['inputs'][0].dtype == torch.float16
    assert out['inputs'][2].dtype == torch.float32
    # a model that edits its samples (e.g. Mixup's gt_score) does not reach
    # the buffer
    out['data_samples'][2].set_gt_score(torch.ones(7))
    assert 'gt_score' not in buf._chunks[0]['data_samples'][0]


def test_replay_drains_at_r1():
    buf = ReplayBuffer(times=4, size=2, split=2)
    buf.mix(batch(4))
    assert len(buf) == 2
    buf.configure(1, 0)  # a stage with R = 1, as the last four of ET++
    assert len(buf) == 0 and buf.capacity == 0
    fresh = batch(8)
    assert buf.mix(fresh) is fresh and len(buf) == 0
    with pytest.raises(ValueError, match='needs a buffer'):
        buf.configure(2, 0)
