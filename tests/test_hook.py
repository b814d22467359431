"""EfficientTrainHook in real Runners with real worker processes."""
import json
import os
import os.path as osp

import pytest
from conftest import recorder, tiny_cfg, tiny_pipeline, build_runner
from mmpretrain.registry import HOOKS

from mmet.hooks import EfficientTrainHook

# ET preset at 32 px over 5 epochs: one epoch per stage
ET_SIZES = [22, 22, 22, 28, 32]
ET_MAGS = [1, 3, 5, 7, 9]


def test_stages_reach_persistent_workers(tiny_runner):
    runner = tiny_runner(max_epochs=5)
    runner.train()
    seen = recorder(runner)
    assert sorted(seen) == list(range(5))
    for epoch, (size, m) in enumerate(zip(ET_SIZES, ET_MAGS)):
        assert seen[epoch]['shapes'] == {(size, size)}, epoch
        assert seen[epoch]['magnitudes'] == {m}, epoch
        # every sample was made in a worker process, not in the trainer
        assert os.getpid() not in seen[epoch]['pids']


def test_workers_persist_within_a_stage(tiny_runner):
    runner = tiny_runner(max_epochs=4, custom_hooks=[
        dict(type='EfficientTrainHook', curriculum=[
            dict(share=0.5, bandwidth=0.5, magnitude=2),
            dict(share=0.5, bandwidth=1.0, magnitude=6)]),
        dict(type='BatchRecorder')])
    runner.train()
    seen = recorder(runner)
    assert [seen[e]['shapes'] for e in range(4)] == [{(16, 16)}] * 2 + \
        [{(32, 32)}] * 2
    assert [seen[e]['magnitudes'] for e in range(4)] == [{2}, {2}, {6}, {6}]
    assert seen[0]['pids'] == seen[1]['pids']  # same persistent workers
    assert seen[1]['pids'].isdisjoint(seen[2]['pids'])  # re-forked at switch


def test_without_persistent_workers_and_in_process(tiny_runner):
    for kwargs in (dict(persistent_workers=False), dict(num_workers=0)):
        runner = tiny_runner(max_epochs=5, **kwargs)
        runner.train()
        seen = recorder(runner)
        assert [seen[e]['shapes'] for e in range(5)] == \
            [{(s, s)} for s in ET_SIZES]


@HOOKS.register_module(force=True)
class ForgetfulHook(EfficientTrainHook):
    """The bug peers shipped: change the pipeline, never tell the workers."""

    @staticmethod
    def _restart_workers(loader):
        pass


def test_switch_that_misses_workers_fails_loudly(tiny_runner):
    runner = tiny_runner(max_epochs=5, custom_hooks=[
        dict(type='ForgetfulHook', curriculum='efficienttrain')])
    with pytest.raises(RuntimeError, match='did not reach the data workers'):
        runner.train()


def test_resume_lands_in_the_right_stage(tmp_path):
    # 10 epochs: two per stage. Stop after epoch 3 (the middle of stage 2).
    hooks = [dict(type='EfficientTrainHook', curriculum='efficienttrain'),
             dict(type='BatchRecorder')]
    full = build_runner(tiny_cfg(tmp_path / 'full', max_epochs=10))
    full.train()
    ref = recorder(full)

    first = build_runner(tiny_cfg(
        tmp_path / 'cut', max_epochs=10,
        custom_hooks=hooks + [dict(type='StopAfterEpoch', epoch=3)]))
    first.train()
    ckpt = osp.join(tmp_path, 'cut', 'epoch_3.pth')
    assert osp.exists(ckpt)

    resumed = build_runner(tiny_cfg(
        tmp_path / 'cut', max_epochs=10, custom_hooks=hooks,
        resume=True, load_from=ckpt))
    resumed.train()
    seen = recorder(resumed)
    assert min(seen) == 3  # it did resume, at epoch index 3
    assert seen[3]['shapes'] == {(22, 22)} and seen[3]['magnitudes'] == {3}
    for e in range(3, 10):
        assert seen[e]['shapes'] == ref[e]['shapes'], e
        assert seen[e]['magnitudes'] == ref[e]['magnitudes'], e
        assert seen[e]['lr'] == pytest.approx(ref[e]['lr']), e
    import torch
    meta = torch.load(ckpt, weights_only=False)['meta']['efficienttrain']
    assert meta['curriculum'][0]['magnitude'] == 1


def test_stage_is_logged_through_message_hub(tiny_runner, tmp_path):
    runner = tiny_runner(max_epochs=5, num_workers=0, log_level='INFO',
                         visualizer=dict(type='Visualizer', vis_backends=[
                             dict(type='LocalVisBackend')]))
    runner.train()
    scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    rows = [json.loads(line) for line in open(scalars)]
    rows = [r for r in rows if 'et_B' in r]
    by_epoch = {r['epoch']: (r['et_stage'], r['et_B'], r['et_m'])
                for r in rows}
    assert by_epoch == {e + 1: (e + 1, s, m) for e, (s, m)
                        in enumerate(zip(ET_SIZES, ET_MAGS))}
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'EfficientTrain epoch 2/5: stage 2/5 (B=22, m=3)' in log


def test_no_curriculum_transform_fails_at_start(tiny_runner):
    pipeline = [dict(type='RandomFlip', prob=0.5), dict(type='PackInputs')]
    runner = tiny_runner(pipeline=pipeline)
    with pytest.raises(RuntimeError, match='found no FourierCrop, '
                       'StagedRandomResizedCrop or StagedRandAug') as err:
        runner.train()
    assert 'RandomFlip' in str(err.value)  # it says what it did find


def test_magnitude_curriculum_without_staged_randaug_fails(tiny_runner):
    """The MobileOne trap: a curriculum the pipeline cannot express."""
    pipeline = [dict(type='RandAugment', policies='timm_increasing',
                     num_policies=2, magnitude_level=9),
                dict(type='FourierCrop', size=32), dict(type='PackInputs')]
    runner = tiny_runner(pipeline=pipeline)
    with pytest.raises(RuntimeError, match='Replace RandAugment with'):
        runner.train()


def test_bandwidth_larger_than_images_fails_at_start(tiny_runner):
    pipeline = tiny_pipeline(full=48)  # TinyImages are 32 px
    runner = tiny_runner(pipeline=pipeline)
    with pytest.raises(RuntimeError, match=r'fails in stage 1/5 \(B=34') as e:
        runner.train()
    assert 'can only shrink' in str(e.value)


def test_iteration_based_loop_is_refused(tiny_runner):
    runner = tiny_runner(train_cfg=dict(by_epoch=False, max_iters=4),
                         param_scheduler=[])
    with pytest.raises(TypeError, match='needs an EpochBasedTrainLoop'):
        runner.train()


def test_two_hooks_are_refused(tiny_runner):
    runner = tiny_runner(custom_hooks=[
        dict(type='EfficientTrainHook'), dict(type='EfficientTrainHook')])
    with pytest.raises(RuntimeError, match='2 EfficientTrainHooks'):
        runner.train()


def test_hook_walks_dataset_wrappers(tmp_path):
    cfg = tiny_cfg(tmp_path, max_epochs=5)
    cfg['train_dataloader']['dataset'] = dict(
        type='ConcatDataset', datasets=[
            dict(type='RepeatDataset', times=1,
                 dataset=dict(type='TinyImages', num=16,
                              pipeline=tiny_pipeline())),
            dict(type='TinyImages', num=16, pipeline=tiny_pipeline())])
    runner = build_runner(cfg)
    runner.train()
    assert [recorder(runner)[e]['shapes'] for e in range(5)] == \
        [{(s, s)} for s in ET_SIZES]


def test_resume_with_another_curriculum_is_refused_unless_allowed(tmp_path):
    first = build_runner(tiny_cfg(tmp_path, max_epochs=2, num_workers=0))
    first.train()
    ckpt = str(tmp_path / 'epoch_1.pth')
    other = [dict(share=0.5, bandwidth=0.5, magnitude=1),
             dict(share=0.5, bandwidth=1.0, magnitude=9)]

    def resume(**hook):
        return build_runner(tiny_cfg(
            tmp_path, max_epochs=2, num_workers=0, resume=True,
            load_from=ckpt, log_level='INFO', custom_hooks=[
                dict(type='EfficientTrainHook', curriculum=other, **hook),
                dict(type='BatchRecorder')]))

    with pytest.raises(RuntimeError, match='5 stages before, 2 now') as e:
        resume().train()
    assert 'allow_curriculum_change=True' in str(e.value)
    runner = resume(allow_curriculum_change=True)
    runner.train()
    assert recorder(runner)[1]['shapes'] == {(32, 32)}
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'different curriculum' in log
