"""EfficientTrain++ at small epoch counts: every stage trains.

Whole-epoch rounding of ten stages over 14 epochs leaves two stages without
an epoch. In the data workers (a stage switch restarts them) the loop
re-plans so that each stage gets one; on the batched path (every staged
transform in the data preprocessor) stages switch at iterations, each with
its compute share to within one iteration. The ET++ family comes from the
backbone (``ResNet_CIFAR``: resnet) in both.
"""
import os.path as osp

import pytest
from conftest import build_runner, on_the_batched_path, recorder, tiny_cfg
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from mmet.curriculum import Curriculum
from mmet.sizes import at_bandwidth

BUDGET = 6  # at 32 px: 13.75 real epochs, 14 whole ones
PRESET = Curriculum.build('efficienttrain++resnet')


def etpp_cfg(work_dir, **kwargs):
    return tiny_cfg(
        work_dir, log_level='INFO',
        train_cfg=dict(type='EfficientTrainLoop',
                       curriculum='efficienttrain++', budget=BUDGET),
        param_scheduler=[dict(type='CosineAnnealingLR', by_epoch=True,
                              convert_to_iter_based=True)],
        **kwargs)


def log_text(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def test_rounding_would_skip_stages():
    plan = PRESET.plan(BUDGET)
    assert plan.max_epochs == 14 and plan.epochs().count(0) == 2


def test_in_the_workers_every_stage_gets_an_epoch(tmp_path):
    runner = build_runner(etpp_cfg(
        tmp_path / 'work',
        custom_hooks=[dict(type='BatchRecorder')]))
    runner.train()
    loop = runner.train_loop
    assert not loop.plan.clock.by_iter and loop.plan.replanned
    assert loop.plan.budget_plan.epochs() == [3, 3, 1, 1, 1, 1, 1, 1, 1, 1]
    assert runner.max_epochs == 14
    seen = recorder(runner)
    edges = [0]
    for n in loop.plan.budget_plan.epochs():
        edges.append(edges[-1] + n)
    for i, s in enumerate(PRESET.stages):  # each stage, in the workers
        b = at_bandwidth(s.bandwidth, 32)
        for e in range(edges[i], edges[i + 1]):
            assert seen[e]['shapes'] == {(b, b)}, e
            assert seen[e]['magnitudes'] == {s.magnitude}, e
    log = log_text(runner)
    assert 'leave ET++ stages without an epoch' in log
    assert '[3, 3, 1, 1, 1, 1, 1, 1, 1, 1] over 14, +17.3% compute' in log
    # the compute clock counts the epochs that are trained
    assert [n for n, _ in loop.plan.clock_stages()] == \
        [4 * n for n in loop.plan.budget_plan.epochs()]


@HOOKS.register_module(force=True)
class IterInputRecorder(Hook):
    """Per iteration: the (B, m) the backbone got in training."""

    priority = 'LOWEST'

    def __init__(self):
        self.seen = {}

    def before_train(self, runner):
        model = runner.model

        def record(module, args):
            if module.training:
                self.seen[runner.iter] = (
                    args[0].shape[-1],
                    model.data_preprocessor.randaug.magnitude_level)
        model.backbone.register_forward_pre_hook(record)


def test_on_the_batched_path_stages_switch_by_iteration(tmp_path):
    cfg = etpp_cfg(tmp_path / 'work',
                   custom_hooks=[dict(type='IterInputRecorder')])
    on_the_batched_path(cfg)
    runner = build_runner(cfg)
    runner.train()
    loop = runner.train_loop
    assert loop.plan.clock.by_iter and not loop.plan.replanned
    assert runner.max_epochs == 14 and runner.max_iters == 56
    seen = next(h for h in runner.hooks
                if isinstance(h, IterInputRecorder)).seen
    assert sorted(seen) == list(range(56))
    # the model sees each stage's B and m, for the clock's iterations
    start = 0
    for (n, cost), s, share in zip(loop.plan.clock_stages(), PRESET.stages,
                                   loop.plan.curriculum.stages):
        b = at_bandwidth(s.bandwidth, 32)
        assert {seen[i] for i in range(start, start + n)} == \
            {(b, s.magnitude)}
        assert cost == pytest.approx((b / 32)**2)
        # its share of the plan (equal compute) to within one iteration
        assert n > 0 and abs(n - share.share * 56) <= 1
        start += n
    assert start == 56
    # some stages start in the middle of an epoch
    assert any({seen[i] for i in range(4 * e, 4 * e + 4)} != {seen[4 * e]}
               for e in range(14))
    assert 'EfficientTrain iteration' in log_text(runner)


def test_the_family_comes_from_the_backbone_or_is_asked_for(tmp_path):
    cfg = etpp_cfg(tmp_path / 'work', num_workers=0)
    cfg['model'].update(backbone=dict(type='LeNet5', num_classes=4),
                        neck=None, head=dict(
                            type='ClsHead',
                            loss=dict(type='CrossEntropyLoss')))
    with pytest.raises(ValueError, match=r'cannot infer the ET\+\+ model '
                       r"family of the backbone LeNet5; give train_cfg "
                       r"family= one of \['convnext', 'deit', 'mae', "
                       r"'resnet', 'swin'\]"):
        build_runner(cfg).train()
