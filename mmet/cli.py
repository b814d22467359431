"""The curriculum as command-line flags, on any config, with no edit to it.

``tools/train.py CONFIG --curriculum efficienttrain`` trains the config's own
recipe with EfficientTrain; ``--curriculum efficienttrain++ --speedup 1.5``
with EfficientTrain++ for 1.5x less compute than the config's
``max_epochs``. Either trains with :class:`~mmet.loops.EfficientTrainLoop`
(per-stage micro-batch on), the fast training step (:mod:`mmet.fast_step`)
and :class:`~mmet.checkpoint.SafeCheckpointHook`; the loop adapts the
config's own train pipeline (:mod:`mmet.adapt`), so any stock mmpretrain
config works, including by its ``mmpretrain::`` name.

A tool takes the flags with two calls::

    add_curriculum_args(parser)
    ...
    cfg = apply_curriculum_args(load_config(args.config), args)
"""
import argparse

from .config import curriculum_hook, curriculum_loop, load_config, type_name
from .fast_step import enable_fast_step
from .plan import check_budget_value
from .schedulers import scale_schedule

CURRICULA = ('efficienttrain', 'efficienttrain++')
LOW_PASS = ('fourier', 'resize')

__all__ = ['add_curriculum_args', 'apply_curriculum_args', 'load_config']


def add_curriculum_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--curriculum``, ``--budget``/``--speedup`` and ``--low-pass``."""
    group = parser.add_argument_group(
        'curriculum', 'train the config with EfficientTrain, no edit needed')
    group.add_argument(
        '--curriculum', choices=CURRICULA,
        help='efficienttrain: the 5-stage schedule over the config\'s '
        'max_epochs; efficienttrain++: 10 stages of equal compute for a '
        'budget (--budget or --speedup)')
    budget = group.add_mutually_exclusive_group()
    budget.add_argument(
        '--budget', type=float, metavar='E',
        help='efficienttrain++: the compute in full-size epochs')
    budget.add_argument(
        '--speedup', type=float, metavar='S',
        help="efficienttrain++: S times less compute than the config's "
        'max_epochs at full size (E = max_epochs / S)')
    group.add_argument(
        '--low-pass', choices=LOW_PASS,
        help='fourier (default): a FourierCrop after the augmentations; '
        'resize: RandomResizedCrop resizes straight to B (cheaper loader)')


def apply_curriculum_args(cfg, args: argparse.Namespace):
    """Add the curriculum that ``args`` asks for to ``cfg``, in place.

    - ``custom_imports`` gets ``mmet``;
    - ``train_cfg`` becomes an ``EfficientTrainLoop`` with
      ``micro_batch='auto'``, keeping ``val_begin``/``val_interval``/
      ``dynamic_intervals``: EfficientTrain over the config's
      ``max_epochs``; EfficientTrain++ with the config's ``max_epochs`` as
      ``baseline_epochs``, and the epoch-valued fields of epoch-based param
      schedulers scaled by E / max_epochs (:func:`~mmet.schedulers.
      scale_schedule`), since the loop runs them as a full-size run of E
      epochs (on the compute clock). The family comes from the backbone;
    - the fast training step (:func:`~mmet.fast_step.enable_fast_step`)
      and ``SafeCheckpointHook``.

    Returns:
        Config: ``cfg``.

    Raises:
        ValueError: flags that do not fit each other or the config (a
            config that already has a curriculum, an iteration-based loop, a
            budget that is no positive number), naming the fix.
    """
    curriculum = getattr(args, 'curriculum', None)
    budget, speedup = getattr(args, 'budget', None), getattr(
        args, 'speedup', None)
    low_pass = getattr(args, 'low_pass', None)
    if curriculum is None:
        given = [f for f, v in (('--budget', budget), ('--speedup', speedup),
                                ('--low-pass', low_pass)) if v is not None]
        if given:
            raise ValueError(
                f'{" and ".join(given)} need(s) --curriculum efficienttrain++'
                ' (or efficienttrain for --low-pass).')
        return cfg
    _check_no_curriculum(cfg)
    train_cfg = cfg.get('train_cfg') or {}
    max_epochs = _epoch_based_max_epochs(train_cfg)
    loop = dict(type='EfficientTrainLoop', curriculum=curriculum,
                micro_batch='auto')
    if low_pass is not None:
        loop['low_pass'] = low_pass
    if curriculum == 'efficienttrain':
        if budget is not None or speedup is not None:
            raise ValueError(
                '--budget and --speedup set the compute of efficienttrain++; '
                'efficienttrain trains for the config\'s max_epochs '
                f'({max_epochs}). Use --curriculum efficienttrain++, or drop '
                'them (--cfg-options train_cfg.max_epochs=N changes the '
                'epochs).')
        loop['max_epochs'] = max_epochs
    else:
        if budget is None and speedup is None:
            raise ValueError(
                'efficienttrain++ trains for a compute budget: give --budget '
                'E (full-size epochs) or --speedup S (E = max_epochs / S, '
                f"e.g. 1.5, 2 or 3 against this config's {max_epochs} "
                'epochs).')
        target = check_budget_value(budget, speedup, max_epochs)
        loop.update(dict(budget=budget) if budget is not None else
                    dict(speedup=speedup), baseline_epochs=max_epochs)
        if cfg.get('param_scheduler'):
            cfg.param_scheduler = scale_schedule(cfg.param_scheduler,
                                                 target / max_epochs)
    for key in ('val_begin', 'val_interval', 'dynamic_intervals'):
        if key in train_cfg:
            loop[key] = train_cfg[key]
    cfg.train_cfg = loop
    imports = dict(cfg.get('custom_imports') or {})
    names = list(imports.get('imports', []))
    cfg.custom_imports = dict(
        imports, imports=names + ['mmet'] * ('mmet' not in names))
    enable_fast_step(cfg)
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint is not None and type_name(checkpoint) == 'CheckpointHook':
        checkpoint['type'] = 'SafeCheckpointHook'
    return cfg


def _check_no_curriculum(cfg) -> None:
    where = ('custom_hooks has an EfficientTrainHook' if curriculum_hook(cfg)
             else 'train_cfg is an EfficientTrainLoop'
             if curriculum_loop(cfg) else None)
    if where:
        raise ValueError(
            f'The config already trains with a curriculum ({where}). Drop '
            '--curriculum, or start from the config without it.')


def _epoch_based_max_epochs(train_cfg) -> int:
    kind = type_name(train_cfg)
    by_epoch = train_cfg.get('by_epoch', kind != 'IterBasedTrainLoop')
    if kind == 'IterBasedTrainLoop' or not by_epoch or \
            train_cfg.get('max_epochs') is None:
        raise ValueError(
            f'The curriculum switches stages between epochs, but train_cfg '
            f'({dict(train_cfg)}) is iteration-based or has no max_epochs. '
            'Train by epochs: --cfg-options "train_cfg=dict(by_epoch=True, '
            'max_epochs=N, val_interval=1)".')
    return train_cfg['max_epochs']
