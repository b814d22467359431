"""Resuming EfficientTrain++ exactly: the replay buffer in checkpoints, and
mid-epoch resume from iteration checkpoints.

The runs are deterministic (no worker processes, a pipeline without random
transforms, the DefaultSampler's order a function of seed and epoch), so a
resumed run must train the very batches, losses and LRs of the
uninterrupted one.
"""
import os.path as osp

import pytest
import torch
from conftest import build_runner, on_the_batched_path, tiny_cfg
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS
from mmpretrain.structures import DataSample

from mmet.replay import ReplayBuffer

# B = 16 px with replay R = 4, then 32 px with R = 2. At E = 4 the first
# stage makes 2 passes of 8 iterations (loading 4 of the batch of 16), the
# second 1 pass of 4 (loading 8): 20 iterations over 3 epochs.
STAGES = [dict(share=0.8, bandwidth=0.5, magnitude=0),
          dict(share=0.2, bandwidth=1.0, magnitude=0)]
REPLAY = dict(times=[4, 2], buffer_size=[4, 2], split=4)
SCHEDULE = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, eta_min=1e-3,
         convert_to_iter_based=True),
]


@HOOKS.register_module(force=True)
class TrainedBatches(Hook):
    """Per trained iteration: its stage's B, LR, loss and distinct
    samples."""

    priority = 'LOWEST'

    def __init__(self):
        self.rows = []
        self._row = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        hook = next(h for h in runner.hooks
                    if type(h).__name__ == 'EfficientTrainHook')
        self._row = dict(size=hook.applied.size,
                         lr=runner.optim_wrapper.get_lr()['lr'][0])

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        samples = data_batch['data_samples']
        self.rows.append(dict(
            self._row, iter=runner.iter, epoch=runner.epoch,
            loss=float(outputs['loss'].detach()), n=len(samples),
            unique=len({getattr(s, 'sample_idx', id(s)) for s in samples})))


def trained(runner):
    return next(h for h in runner.hooks
                if isinstance(h, TrainedBatches)).rows


def etpp_cfg(work_dir, checkpoint=None, loop=None, **kwargs):
    train_cfg = dict(type='EfficientTrainLoop', curriculum=STAGES, budget=4,
                     replay=REPLAY)
    train_cfg.update(loop or {})
    cfg = tiny_cfg(
        work_dir, num_workers=0, train_cfg=train_cfg,
        pipeline=[dict(type='FourierCrop', size=32),
                  dict(type='PackInputs')],
        param_scheduler=SCHEDULE,
        custom_hooks=[dict(type='TrainedBatches')],
        randomness=dict(seed=0, deterministic=True), **kwargs)
    cfg['train_dataloader']['batch_size'] = 16
    if checkpoint is not None:
        cfg['default_hooks']['checkpoint'] = checkpoint
    return cfg


def log_text(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def resume(work_dir, ckpt, **kwargs):
    runner = build_runner(etpp_cfg(work_dir, resume=True, load_from=ckpt,
                                   **kwargs))
    runner.train()
    return runner


def loaded(n, start, dtype=torch.uint8):
    return dict(inputs=torch.arange(start, start + n).to(dtype)
                .view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous(),
                data_samples=[DataSample().set_gt_label(i % 4)
                              for i in range(start, start + n)])


def test_the_buffer_state_round_trips():
    buf = ReplayBuffer(times=4, size=2, split=2, seed=3)
    for step in range(3):
        buf.mix(loaded(4, 4 * step))
    same = ReplayBuffer(times=4, size=2, split=2, seed=99)
    same.load_state_dict(buf.state_dict())
    assert len(same) == len(buf) == 4
    for step in range(3, 6):  # the same draws from the same chunks
        a, b = buf.mix(loaded(4, 4 * step)), same.mix(loaded(4, 4 * step))
        assert torch.equal(a['inputs'], b['inputs'])
        assert [int(s.gt_label) for s in a['data_samples']] == \
            [int(s.gt_label) for s in b['data_samples']]
    # without the contents: the same draws, from an empty buffer
    fresh = ReplayBuffer(times=4, size=2, split=2, seed=99)
    fresh.load_state_dict(buf.state_dict(contents=False))
    assert len(fresh) == 0
    assert torch.equal(fresh._generator.get_state(),
                       buf._generator.get_state())


def test_a_float16_chunk_holds_its_own_samples_only():
    buf = ReplayBuffer(times=2, size=1, split=4)
    buf.push(loaded(8, 0, dtype=torch.float16))
    chunk = buf._chunks[0]['inputs']
    # not a view of the loaded batch, which a checkpoint would save whole
    assert chunk.untyped_storage().nbytes() == chunk.numel() * 2 == 48


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """One run with epoch checkpoints: its batches and its work dir."""
    work = tmp_path_factory.mktemp('full')
    runner = build_runner(etpp_cfg(work))
    runner.train()
    assert runner.train_loop.plan.budget_plan.epochs() == [2, 1]
    assert runner.train_loop.plan.clock_stages() == [(16, 0.25), (4, 1.0)]
    return work, trained(runner)


def test_resume_at_a_stage_boundary_draws_what_the_run_drew(
        uninterrupted, tmp_path):
    work, ref = uninterrupted
    # epoch 2 starts the R = 2 stage: an empty buffer in both runs, so only
    # the random draws could differ
    runner = resume(tmp_path, osp.join(work, 'epoch_2.pth'))
    rows = trained(runner)
    assert [r['iter'] for r in rows] == list(range(16, 20))
    assert rows == ref[16:]


def test_resume_mid_stage_restores_the_buffer(uninterrupted, tmp_path):
    work, ref = uninterrupted
    # after the first of two R = 4 epochs: the run's buffer is full
    runner = resume(tmp_path, osp.join(work, 'epoch_1.pth'))
    rows = trained(runner)
    assert [r['iter'] for r in rows] == list(range(8, 20))
    # the batches right after resume mix in as many distinct samples as
    # those of the uninterrupted run, and train to the same losses
    assert [r['unique'] for r in rows] == [r['unique'] for r in ref[8:]]
    assert min(r['unique'] for r in ref[8:16]) > 4  # more than the fresh
    assert rows == ref[8:]
    buffer = runner.train_loop.replay.buffer
    assert buffer.times == 2 and len(buffer) <= buffer.capacity


def test_the_checkpoint_holds_the_buffer_within_its_bound(uninterrupted,
                                                          tmp_path):
    work, _ = uninterrupted
    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=False)
    state = ckpt['replay_buffer']
    assert (state['stage'], state['rank']) == (0, 0)
    assert state['buffer']['generator'].dtype == torch.uint8
    chunks = state['buffer']['chunks']
    # full: 4 loaded batches of 4 samples, one chunk each, uint8 as loaded
    assert len(chunks) == 16 and all(c['_n'] == 1 for c in chunks)
    assert all(x.dtype == torch.uint8 and x.shape == (3, 16, 16)
               for c in chunks for x in c['inputs'])

    # over checkpoint_mb (12 KiB here): the random state only, and a run
    # resumed from it refills the buffer
    small = dict(replay=dict(REPLAY, checkpoint_mb=0.01))
    runner = build_runner(etpp_cfg(tmp_path / 'small', loop=small))
    runner.train()
    ckpt = osp.join(tmp_path, 'small', 'epoch_1.pth')
    state = torch.load(ckpt, weights_only=False)['replay_buffer']
    assert state['buffer']['chunks'] is None
    assert 'more than replay.checkpoint_mb=0.01' in log_text(runner)
    runner = resume(tmp_path / 'resumed', ckpt, loop=small)
    assert trained(runner)[0]['unique'] == 4  # the fresh samples only
    assert 'kept the replay buffer without its contents' in log_text(runner)


def test_load_from_without_resume_starts_a_fresh_buffer(uninterrupted,
                                                        tmp_path):
    work, _ = uninterrupted
    runner = build_runner(etpp_cfg(
        tmp_path, load_from=osp.join(work, 'epoch_1.pth')))
    runner.train()
    rows = trained(runner)
    assert rows[0]['iter'] == 0 and rows[0]['unique'] == 4


# mid-epoch resume ------------------------------------------------------------
def iter_checkpoints(interval):
    return dict(type='CheckpointHook', by_epoch=False, interval=interval)


def test_mid_epoch_resume_trains_the_plan_and_keeps_the_clock(tmp_path):
    full = build_runner(etpp_cfg(tmp_path / 'full',
                                 checkpoint=iter_checkpoints(4)))
    full.train()
    ref = trained(full)
    assert len(ref) == full.max_iters == 20
    # iter_12 is 4 of the 8 batches into epoch 2, the second R = 4 epoch;
    # iter_16 is saved after the last batch of epoch 2, before its end
    for it, done in ((12, 4), (16, 8)):
        runner = resume(tmp_path / f'resumed_{it}',
                        osp.join(tmp_path, 'full', f'iter_{it}.pth'),
                        checkpoint=iter_checkpoints(4), log_level='INFO')
        rows = trained(runner)
        # the iterations left, not the whole epoch again: 20 in all, each
        # with the LR (and, with the buffer restored, the batch and loss)
        # of the uninterrupted run
        assert [r['iter'] for r in rows] == list(range(it, 20))
        assert runner.iter == runner.max_iters == 20
        assert [r['lr'] for r in rows] == [r['lr'] for r in ref[it:]]
        assert rows == ref[it:]
        assert f'resumed mid-epoch at iteration {it} (epoch 2, {done} of 8 ' \
            f'batches done): skipping the {done} batches already trained' \
            in log_text(runner)


def batched_cfg(work_dir, **kwargs):
    """The batched path: stages switch by iteration, here mid-epoch."""
    cfg = etpp_cfg(work_dir, loop=dict(replay=None, budget=3), **kwargs)
    on_the_batched_path(cfg)
    cfg['log_level'] = 'INFO'
    return cfg


def test_mid_epoch_resume_on_the_batched_path(tmp_path):
    full = build_runner(batched_cfg(tmp_path / 'full',
                                    checkpoint=iter_checkpoints(13)))
    full.train()
    loop = full.train_loop
    ref = trained(full)
    # 8 epochs of 2 iterations; stage 2 starts at iteration 13, mid-epoch
    assert loop.plan.clock.by_iter
    assert loop.plan.clock_stages() == [(13, 0.25), (3, 1.0)]
    runner = build_runner(batched_cfg(
        tmp_path / 'resumed', checkpoint=iter_checkpoints(13), resume=True,
        load_from=osp.join(tmp_path, 'full', 'iter_13.pth')))
    runner.train()
    rows = trained(runner)
    assert [r['iter'] for r in rows] == [13, 14, 15]
    assert [r['lr'] for r in rows] == [r['lr'] for r in ref[13:]]
    # the stage of the resumed iteration, not of its epoch's start
    assert ref[12]['size'] == 16
    assert [r['size'] for r in rows] == [r['size'] for r in ref[13:]] == \
        [32] * 3


# -- random augmentation: the workers and the trainer draw as before ------
def random_cfg(work_dir, batched, **kwargs):
    """Two persistent workers (or the batched path) with random flips and
    RandAugment; four epochs over two stages, a checkpoint each epoch."""
    cfg = tiny_cfg(
        work_dir, max_epochs=4, custom_hooks=[
            dict(type='EfficientTrainHook', curriculum=[
                dict(share=0.5, bandwidth=0.5, magnitude=5),
                dict(share=0.5, bandwidth=1.0, magnitude=9)]),
            dict(type='TrainedBatches')],
        randomness=dict(seed=3, deterministic=True), **kwargs)
    return on_the_batched_path(cfg) if batched else cfg


@pytest.mark.parametrize('batched', [False, True],
                         ids=['workers', 'batched'])
def test_a_resume_draws_the_augmentations_of_the_uninterrupted_run(
        tmp_path, batched):
    """Issue 22, item 9: the workers seed from (seed, epoch, rank, worker
    id) at each epoch and the trainer's random state is in the checkpoint,
    so a resumed run trains the very losses of the uninterrupted one."""
    full = build_runner(random_cfg(tmp_path / 'full', batched))
    full.train()
    expected = [r['loss'] for r in trained(full) if r['epoch'] >= 2]
    runner = build_runner(random_cfg(
        tmp_path / 'full', batched, resume=True,
        load_from=str(tmp_path / 'full' / 'epoch_2.pth')))
    runner.train()
    rows = trained(runner)
    assert rows[0]['epoch'] == 2 and len(rows) == len(expected) == 8
    assert [r['loss'] for r in rows] == pytest.approx(expected, rel=1e-6)
