"""mmet.cli: the --curriculum flags on real configs, stock mmpretrain ones
by their mmpretrain:: names included."""
import argparse
import os.path as osp

import pytest
from conftest import ROOT
from mmengine.config import Config

from mmet.cli import add_curriculum_args, apply_curriculum_args, load_config
from mmet.schedulers import scale_schedule

RESNET50 = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
DEMO = osp.join(ROOT, 'configs/demo/fmnist_resnet_baseline.py')


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_curriculum_args(parser)
    return parser.parse_args(list(argv))


def test_load_config_reads_installed_names():
    cfg = load_config(RESNET50)
    assert cfg.model.backbone.type == 'ResNet'
    assert cfg.train_cfg.max_epochs == 100
    with pytest.raises(FileNotFoundError, match='ships no config'):
        load_config('mmpretrain::resnet/no_such_config.py')


def test_efficienttrain_adds_the_loop_the_fast_step_and_mmet():
    cfg = load_config(RESNET50)
    hooks = list(cfg.get('custom_hooks') or [])
    apply_curriculum_args(cfg, parse('--curriculum', 'efficienttrain'))
    assert cfg.custom_imports['imports'][-1] == 'mmet'
    assert cfg.get('custom_hooks') == (hooks or None)
    # the config's own schedule, with the per-stage micro-batch
    assert dict(cfg.train_cfg) == dict(
        type='EfficientTrainLoop', curriculum='efficienttrain',
        micro_batch='auto', max_epochs=100, val_interval=1)
    assert cfg.optim_wrapper.constructor == 'FastStepConstructor'
    assert cfg.optim_wrapper.fast_step == dict(
        inner='DefaultOptimWrapperConstructor')
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    # the result is a plain config: it dumps and reloads
    assert Config.fromstring(cfg.pretty_text, '.py').train_cfg[
        'type'] == 'EfficientTrainLoop'


def test_low_pass_is_passed_on():
    cfg = apply_curriculum_args(load_config(RESNET50), parse(
        '--curriculum', 'efficienttrain', '--low-pass', 'resize'))
    assert cfg.train_cfg['low_pass'] == 'resize'


def test_efficienttrain_pp_replaces_the_loop():
    cfg = load_config(RESNET50)
    scheduler = cfg.param_scheduler
    assert scheduler['milestones'] == [30, 60, 90]
    apply_curriculum_args(cfg, parse('--curriculum', 'efficienttrain++',
                                     '--speedup', '2'))
    assert dict(cfg.train_cfg) == dict(
        type='EfficientTrainLoop', curriculum='efficienttrain++',
        micro_batch='auto', baseline_epochs=100, speedup=2.0,
        val_interval=1)
    # the 100-epoch steps, as a full-size run of E = 50 epochs
    assert cfg.param_scheduler['milestones'] == [15, 30, 45]
    cfg = apply_curriculum_args(load_config(RESNET50), parse(
        '--curriculum', 'efficienttrain++', '--budget', '80'))
    assert cfg.train_cfg['budget'] == 80 and 'speedup' not in cfg.train_cfg
    assert cfg.param_scheduler['milestones'] == [24, 48, 72]


def test_scale_schedule_keeps_iteration_based_warmups():
    """The one scaler: whole epochs where mmengine counts epochs, exact
    where it converts them to iterations, iteration-based ones kept."""
    schedule = [
        dict(type='LinearLR', by_epoch=False, begin=0, end=500),
        dict(type='LinearLR', begin=0, end=20, convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', T_max=280, begin=20, end=300),
        dict(type='MultiStepLR', milestones=[30, 60], end=10**9),
    ]
    assert scale_schedule(schedule, 2 / 3) == [
        dict(type='LinearLR', by_epoch=False, begin=0, end=500),
        dict(type='LinearLR', begin=0.0, end=20 * (2 / 3),
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', T_max=187, begin=13, end=200),
        dict(type='MultiStepLR', milestones=[20, 40], end=10**9),
    ]
    assert scale_schedule({'a': schedule[1:2]}, 0.5) == {'a': [dict(
        type='LinearLR', begin=0, end=10.0, convert_to_iter_based=True)]}


@pytest.mark.parametrize('argv, message', [
    (('--curriculum', 'efficienttrain', '--budget', '100'),
     'Use --curriculum efficienttrain++'),
    (('--curriculum', 'efficienttrain++'), 'give --budget E'),
    (('--speedup', '2'), 'need(s) --curriculum efficienttrain++'),
    # a budget or speedup that is no positive finite number: the cause and
    # the fix in one line (issue 22, items 10 and 13)
    (('--curriculum', 'efficienttrain++', '--speedup', '0'),
     'speedup=0.0 is not a positive finite number'),
    (('--curriculum', 'efficienttrain++', '--speedup', 'inf'),
     'speedup=inf is not a positive finite number'),
    (('--curriculum', 'efficienttrain++', '--budget', 'nan'),
     'budget=nan is not a positive finite number'),
    (('--curriculum', 'efficienttrain++', '--budget', '0'),
     'budget=0.0 is not a positive finite number'),
    (('--curriculum', 'efficienttrain++', '--budget', '-5'),
     'budget=-5.0 is not a positive finite number: it is the full-size-'
     'equivalent epochs of compute. Give e.g. budget=200'),
])
def test_flags_that_do_not_fit_are_refused(argv, message):
    with pytest.raises(ValueError, match=message.replace('+', r'\+')
                       .replace('(', r'\(').replace(')', r'\)')):
        apply_curriculum_args(load_config(RESNET50), parse(*argv))


def test_budget_and_speedup_exclude_each_other():
    with pytest.raises(SystemExit):
        parse('--curriculum', 'efficienttrain++', '--budget', '1',
              '--speedup', '2')


def test_configs_with_a_curriculum_or_iterations_are_refused():
    et = Config.fromfile(osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py'))
    with pytest.raises(ValueError, match='already trains with a curriculum'):
        apply_curriculum_args(et, parse('--curriculum', 'efficienttrain'))
    cfg = Config.fromfile(DEMO)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1000)
    with pytest.raises(ValueError, match='iteration-based.*by_epoch=True'):
        apply_curriculum_args(cfg, parse('--curriculum', 'efficienttrain'))


def test_without_the_flag_nothing_changes():
    cfg = Config.fromfile(DEMO)
    before = cfg.to_dict()
    apply_curriculum_args(cfg, parse())
    assert cfg.to_dict() == before
