"""A resume never moves the curriculum backwards silently; loading weights
(``load_from``, ``Runner.test``) never checks the curriculum at all."""
import os.path as osp

import pytest
import torch
from conftest import build_runner, eval_loader, recorder, tiny_cfg

from mmet.curriculum import Curriculum
from mmet.plan import StageClock

# ET at 32 px: B = 22, 22, 22, 28, 32 and m = 1, 3, 5, 7, 9. Over 5 epochs
# one epoch per stage, over 10 two.
ET = dict(type='EfficientTrainHook', curriculum='efficienttrain')
OTHER = [dict(share=0.5, bandwidth=0.5, magnitude=1),
         dict(share=0.5, bandwidth=1.0, magnitude=9)]


def test_extend_from_keeps_the_past_and_floors_the_rest():
    et = Curriculum.build('efficienttrain')
    plan = StageClock(et, 10, 32)
    # 4 epochs trained on the 5-epoch plan, the last one in stage 4
    plan.extend_from(4, 3, past=[0, 1, 2, 3, 4, 5])
    assert plan.edges == [0, 1, 2, 3, 8, 10]
    assert [plan.index_at(t) for t in range(10)] == [0, 1, 2, 3] + \
        [3] * 4 + [4] * 2
    assert [str(s) for s in plan.states()[3:]] == [
        'stage 4/5 (B=28, m=7, epochs 4-8 of 10)',
        'stage 5/5 (B=32, m=9, epochs 9-10 of 10)']
    # by iteration (4 an epoch): 10 iterations trained stage 1, which the
    # new plan leaves at iteration 8; from iteration 10 on, the new plan
    plan = StageClock(et, 10, 32, epoch_length=4)
    plan.extend_from(10, 0, past=[0, 10, 12, 12, 12, 20])
    assert plan.edges == [0, 10, 16, 24, 32, 40]
    assert plan.state(0).describe() == 'stage 1/5 (B=22, m=1, epochs 1-3 of 10)'


@pytest.fixture(scope='module')
def et5(tmp_path_factory):
    """A finished 5-epoch ET run; all its checkpoints are kept."""
    work = tmp_path_factory.mktemp('et5')
    runner = build_runner(tiny_cfg(work, max_epochs=5, num_workers=0))
    runner.train()
    assert [recorder(runner)[e]['shapes'] for e in range(5)] == \
        [{(s, s)} for s in (22, 22, 22, 28, 32)]
    return work


def resume(work, ckpt, max_epochs, allow=None, curriculum='efficienttrain',
           **kwargs):
    hook = dict(ET, curriculum=curriculum)
    if allow is not None:
        hook['allow_curriculum_change'] = allow
    return build_runner(tiny_cfg(
        work, max_epochs=max_epochs, num_workers=0, resume=True,
        load_from=str(ckpt), log_level='INFO',
        custom_hooks=[hook, dict(type='BatchRecorder')], **kwargs))


def stages(runner):
    """(B, m) of each epoch trained, in order."""
    seen = recorder(runner)
    out = []
    for e in sorted(seen):
        (shape, ), (m, ) = seen[e]['shapes'], seen[e]['magnitudes']
        out.append((shape[0], m))
    return out


def log_of(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def test_more_epochs_refused_by_default(et5, tmp_path):
    runner = resume(tmp_path, et5 / 'epoch_4.pth', max_epochs=10)
    with pytest.raises(RuntimeError, match='max_epochs was 5, now 10') as e:
        runner.train()
    msg = str(e.value)
    # epoch 5 would fall back from stage 4 to stage 3
    assert 'epoch 5 would go back to stage 3/5 (B=22, m=5) after stage ' \
        '4/5 (B=28, m=7)' in msg, msg
    assert 'max_epochs=5' in msg
    assert "allow_curriculum_change='extend'" in msg
    assert 'allow_curriculum_change=True' in msg
    assert not recorder(runner)  # refused before any epoch


def test_more_epochs_extend_never_goes_back(et5, tmp_path):
    runner = resume(tmp_path, et5 / 'epoch_4.pth', max_epochs=10,
                    allow='extend')
    runner.train()
    trained = stages(runner)
    assert min(recorder(runner)) == 4  # it resumed at epoch 5
    # epoch 4 trained B=28, m=7: the later of the new stage and that one
    assert trained == [(28, 7)] * 4 + [(32, 9)] * 2
    assert trained == sorted(trained)  # B and m never go back
    log = log_of(runner)
    assert "allow_curriculum_change='extend' re-plans from epoch 5" in log
    assert 'stage 4/5 (B=28, m=7, epochs 4-8 of 10), stage 5/5 (B=32, m=9, ' \
        'epochs 9-10 of 10)' in log

    # the checkpoint records the plan really trained, re-plan included ...
    record = torch.load(tmp_path / 'epoch_7.pth',
                        weights_only=False)['meta']['efficienttrain']
    assert record['edges'] == [0, 1, 2, 3, 8, 10]
    assert (record['max_epochs'], record['trained']) == (10, 7)
    assert record['curriculum'][0]['magnitude'] == 1
    # ... so resuming it with the same settings continues that plan, even
    # without 'extend'
    again = resume(tmp_path / 'again', tmp_path / 'epoch_7.pth',
                   max_epochs=10)
    again.train()
    assert stages(again) == [(28, 7), (32, 9), (32, 9)]


def test_more_epochs_allowed_continues_on_the_new_plan(et5, tmp_path):
    runner = resume(tmp_path, et5 / 'epoch_4.pth', max_epochs=10,
                    allow=True)
    runner.train()
    assert stages(runner) == [(22, 5)] * 2 + [(28, 7)] * 2 + [(32, 9)] * 2
    log = log_of(runner)
    assert 'max_epochs was 5, now 10' in log
    assert 'allowed by allow_curriculum_change=True' in log


def test_checkpoint_without_boundaries_checks_the_curriculum(et5, tmp_path):
    """A checkpoint saved before the stage boundaries were recorded."""
    ckpt = torch.load(et5 / 'epoch_4.pth', weights_only=False)
    record = ckpt['meta']['efficienttrain']
    ckpt['meta']['efficienttrain'] = dict(curriculum=record['curriculum'])
    torch.save(ckpt, tmp_path / 'old.pth')
    # the boundaries are unknown: taken to be the new plan's
    runner = resume(tmp_path, tmp_path / 'old.pth', max_epochs=10)
    runner.train()
    assert stages(runner) == [(22, 5)] * 2 + [(28, 7)] * 2 + [(32, 9)] * 2
    assert 'does not record its stage boundaries' in log_of(runner)
    # the curriculum still is checked
    other = resume(tmp_path / 'other', tmp_path / 'old.pth', max_epochs=10,
                   curriculum=OTHER)
    with pytest.raises(RuntimeError, match='5 stages before, 2 now'):
        other.train()


def test_mid_epoch_checkpoint_counts_its_epoch(tmp_path):
    """A checkpoint by iteration resumes into the epoch it saved in."""
    first = build_runner(tiny_cfg(
        tmp_path / 'cut', max_epochs=5, num_workers=0,
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=6, by_epoch=False)),
        custom_hooks=[ET, dict(type='StopAfterEpoch', epoch=2)]))
    first.train()  # 4 iterations an epoch: iter_6.pth is mid epoch 2
    ckpt = tmp_path / 'cut' / 'iter_6.pth'
    record = torch.load(ckpt, weights_only=False)['meta']['efficienttrain']
    assert record['trained'] == 2
    with pytest.raises(RuntimeError, match='max_epochs was 5, now 10') as e:
        resume(tmp_path / 'long', ckpt, max_epochs=10).train()
    assert 'epoch 2 would go back to stage 1/5 (B=22, m=1)' in str(e.value)
    same = resume(tmp_path / 'same', ckpt, max_epochs=5)
    same.train()
    assert stages(same)[0] == (22, 3)  # epoch 2 again, in its own stage


@pytest.fixture
def baseline(tmp_path):
    """A full-size run without the hook, stopped after 2 of 5 epochs."""
    work = tmp_path / 'baseline'
    build_runner(tiny_cfg(work, max_epochs=5, num_workers=0, custom_hooks=[
        dict(type='StopAfterEpoch', epoch=2)])).train()
    return work / 'epoch_2.pth'


def test_baseline_checkpoint_refused_under_the_curriculum(baseline,
                                                          tmp_path):
    with pytest.raises(RuntimeError, match='no EfficientTrain record') as e:
        resume(tmp_path / 'et', baseline, max_epochs=5).train()
    msg = str(e.value)
    assert 'trained epochs 1-2 at full size without a curriculum' in msg
    assert 'epoch 3 would train stage 3/5 (B=22, m=5)' in msg
    assert 'without EfficientTrainHook' in msg
    assert "allow_curriculum_change='extend'" in msg
    # 'extend': the remaining epochs stay at full size and the final m
    runner = resume(tmp_path / 'extend', baseline, max_epochs=5,
                    allow='extend')
    runner.train()
    assert stages(runner) == [(32, 9)] * 3


def test_load_from_another_curriculum_is_not_a_resume(et5, tmp_path):
    # fine-tuning from the weights: a fresh plan from its first stage
    runner = build_runner(tiny_cfg(
        tmp_path / 'tune', max_epochs=2, num_workers=0,
        load_from=str(et5 / 'epoch_4.pth'),
        custom_hooks=[dict(ET, curriculum=OTHER), dict(type='BatchRecorder')]))
    runner.train()
    assert stages(runner) == [(16, 1), (32, 9)]

    # evaluating it (tools/test.py loads the checkpoint the same way)
    tester = build_runner(tiny_cfg(
        tmp_path / 'test', num_workers=0, load_from=str(et5 / 'epoch_4.pth'),
        custom_hooks=[dict(ET, curriculum=OTHER)],
        test_dataloader=eval_loader(), test_cfg=dict(),
        test_evaluator=dict(type='Accuracy', topk=(1, ))))
    metrics = tester.test()
    assert 'accuracy/top1' in metrics
