"""The fast training step on real Runners (issue 21): each part trains as
before — the same parameters after the same optimizer steps, the same LR and
weight-decay curves — and resumes.

The model here has GroupNorm, not BatchNorm, so that a larger micro-batch
computes the very gradient that the configured batch accumulates.
"""
import copy

import pytest
import torch
from conftest import build_runner, on_the_batched_path, tiny_cfg
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from mmet.fast_step import BF16OptimWrapper, merge_param_groups

PIPELINE = [dict(type='FourierCrop', size=32), dict(type='PackInputs')]
SCHEDULE = [
    dict(type='LinearLR', start_factor=0.25, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, eta_min=1e-4,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
         by_epoch=True, eta_min=1e-5, convert_to_iter_based=True),
]


@HOOKS.register_module(force=True)
class StepTrace(Hook):
    """Per optimizer step: the (lr, weight decay) of every param group; and
    the parameters at the end."""

    def __init__(self):
        self.steps, self.params = [], None

    def before_train(self, runner):
        optimizer = runner.optim_wrapper.optimizer
        optimizer.register_step_post_hook(lambda *_: self.steps.append(
            sorted({(round(g['lr'], 12), round(g['weight_decay'], 12))
                    for g in optimizer.param_groups})))

    def after_train(self, runner):
        self.params = {k: v.detach().clone().contiguous()
                       for k, v in runner.model.state_dict().items()}


def trace(runner):
    return next(h for h in runner.hooks if isinstance(h, StepTrace))


def cfg(work_dir, fast=None, loop=None, batch=8, accumulation=1, sgd=False,
        **kwargs):
    cfg = tiny_cfg(
        work_dir, num_workers=0, max_epochs=4, pipeline=PIPELINE,
        param_scheduler=SCHEDULE,
        randomness=dict(seed=0, deterministic=True),
        custom_hooks=[dict(type='StepTrace')],
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9,
                           weight_decay=0.05) if sgd else
            dict(type='AdamW', lr=1e-2, weight_decay=0.05),
            paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
            accumulative_counts=accumulation),
        **kwargs)
    cfg['model']['backbone']['norm_cfg'] = dict(type='GN', num_groups=4)
    cfg['train_dataloader']['batch_size'] = batch
    if fast is not None:
        cfg['optim_wrapper'].update(constructor='FastStepConstructor',
                                    fast_step=fast)
    if loop is not None:
        cfg['train_cfg'] = dict(type='EfficientTrainLoop', max_epochs=4,
                                curriculum=[
                                    dict(share=0.5, bandwidth=0.5,
                                         magnitude=0),
                                    dict(share=0.5, bandwidth=1.0,
                                         magnitude=0)], **loop)
        cfg['custom_hooks'].append(dict(type='EfficientTrainHook'))
    else:
        cfg['custom_hooks'].append(dict(type='EfficientTrainHook', curriculum=[
            dict(share=0.5, bandwidth=0.5, magnitude=0),
            dict(share=0.5, bandwidth=1.0, magnitude=0)]))
    return cfg


def trained(config):
    runner = build_runner(config)
    runner.train()
    return runner, trace(runner)


def assert_same_training(a, b, rtol=1e-5, atol=1e-6):
    assert len(a.steps) == len(b.steps) > 0
    for x, y in zip(a.steps, b.steps):
        assert len(x) == len(y)
        assert [v for pair in x for v in pair] == pytest.approx(
            [v for pair in y for v in pair], rel=1e-9)
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=rtol,
                                   atol=atol, msg=lambda m: f'{k}: {m}')


def test_merged_param_groups_train_as_one_group_per_parameter(tmp_path):
    runner, merged = trained(cfg(tmp_path / 'merged', fast=dict(
        channels_last=False)))
    _, per_param = trained(cfg(tmp_path / 'stock'))
    # mmpretrain's paramwise_cfg: one group per parameter, 2 settings
    groups = runner.optim_wrapper.optimizer.param_groups
    assert len(groups) == 2
    # the norms' and biases' group (decay_mult 0) and the rest
    assert len({g['weight_decay'] for g in groups}) == 2
    assert sum(len(g['params']) for g in groups) == \
        len(list(runner.model.parameters()))
    assert_same_training(merged, per_param)


def test_merge_param_groups_keeps_settings_and_refuses_a_used_optimizer():
    a, b, c = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    opt = torch.optim.AdamW([dict(params=[a], lr=0.1),
                             dict(params=[b], lr=0.2),
                             dict(params=[c], lr=0.1)])
    assert merge_param_groups(opt) == 2
    assert [(g['lr'], len(g['params'])) for g in opt.param_groups] == \
        [(0.1, 2), (0.2, 1)]
    opt.step()  # AdamW keeps no state without gradients; give it some
    a.grad = torch.ones(2)
    opt.step()
    with pytest.raises(RuntimeError, match='not stepped yet'):
        merge_param_groups(opt)


def test_channels_last_trains_as_nchw(tmp_path):
    # SGD: AdamW would turn the kernels' rounding of near-zero gradients
    # into whole steps of lr
    runner, cl = trained(cfg(tmp_path / 'cl', sgd=True, fast=dict(
        channels_last=True, merge_groups=False)))
    conv = next(m for m in runner.model.modules()
                if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    _, nchw = trained(cfg(tmp_path / 'nchw', sgd=True))
    # other convolution kernels: equal up to their float rounding
    assert_same_training(cl, nchw, rtol=2e-4, atol=2e-5)


def test_bf16_runs_without_a_grad_scaler_and_resumes(tmp_path):
    amp = dict(type='AmpOptimWrapper', dtype='bfloat16')
    config = cfg(tmp_path / 'bf16', fast=dict(channels_last=False))
    config['optim_wrapper'].update(amp)
    runner, bf16 = trained(config)
    assert isinstance(runner.optim_wrapper, BF16OptimWrapper)
    assert not hasattr(runner.optim_wrapper, 'loss_scaler')
    assert 'loss_scaler' not in runner.optim_wrapper.state_dict()
    # the same optimizer steps as in float32, and a bf16 forward: close
    _, fp32 = trained(cfg(tmp_path / 'fp32', fast=dict(channels_last=False)))
    assert len(bf16.steps) == len(fp32.steps)
    deltas = [(bf16.params[k] - fp32.params[k]).abs().max()
              for k in fp32.params if fp32.params[k].is_floating_point()]
    # bf16's 8-bit mantissa in the forward; 16 AdamW steps at lr 1e-2 move
    # a weight by up to about 0.16: closer than that, and not equal
    assert all(torch.isfinite(d) for d in deltas)
    assert 0 < max(deltas) < 0.15
    # resume from its checkpoint, and from one a GradScaler wrote
    again = copy.deepcopy(config)
    again.update(resume=True, load_from=str(tmp_path / 'bf16' /
                                            'epoch_2.pth'))
    _, resumed = trained(again)
    assert resumed.params['head.fc.weight'].shape == \
        bf16.params['head.fc.weight'].shape
    state = runner.optim_wrapper.state_dict()
    runner.optim_wrapper.load_state_dict(dict(state, loss_scaler=dict(
        scale=65536.0)))


def test_the_per_stage_micro_batch_keeps_steps_lr_and_wd(tmp_path):
    """micro_batch='auto': the stage at 16 of 32 px trains micro-batches of
    8 (4x the pixels' room, accumulation 4 / 4 = 1); the full-size stage
    the configured 2 with accumulation 4. The same samples make each
    optimizer step, so the same parameters, LR and weight decay follow."""
    runner, micro = trained(cfg(tmp_path / 'micro', batch=2, sgd=True,
                                accumulation=4,
                                loop=dict(micro_batch='auto')))
    plan = runner.train_loop.plan
    assert [(s.batch, s.accumulation) for s in plan.stages] == \
        [(8, 1), (2, 4)]
    assert plan.needs_clock  # the iterations differ: schedules on a clock
    _, ref = trained(cfg(tmp_path / 'ref', batch=2, accumulation=4,
                         sgd=True, loop=dict()))
    assert len(micro.steps) == 16  # 4 epochs of 32 images, 8 a step
    assert_same_training(micro, ref, rtol=1e-4, atol=1e-5)


def test_no_room_for_a_micro_batch_is_said(tmp_path):
    runner = build_runner(cfg(tmp_path, batch=8, loop=dict(
        micro_batch='auto')))
    loop = runner.train_loop
    assert [s.batch for s in loop.plan.stages] == [8, 8]
    # the plan's summary, which the loop logs when it is built
    assert 'keep the configured batch 8: the global batch leaves no room ' \
        '(accumulative_counts=1)' in loop.plan.summary()


@pytest.mark.parametrize('budget', [None, 4])
def test_the_device_pipeline_ahead_trains_the_same_batches(tmp_path, budget):
    """prefetch=True runs the batched augmentation one batch ahead (on a
    side CUDA stream on a GPU): the same batches, the same training; on the
    budget path stages switch inside epochs, at the batch's own stage."""
    def run(work, prefetch):
        loop = dict(prefetch=prefetch)
        config = cfg(work, loop=loop)
        if budget:
            config['train_cfg'].pop('max_epochs')
            config['train_cfg']['budget'] = budget
        on_the_batched_path(config)
        return trained(config)

    runner, ahead = run(tmp_path / 'ahead', True)
    assert runner.train_loop.prefetch
    # nothing staged in the data workers: stages switch at iterations
    assert runner.train_loop.plan.clock.by_iter
    _, inline = run(tmp_path / 'inline', False)
    assert_same_training(ahead, inline)
