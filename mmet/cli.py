"""The curriculum as command-line flags, on any config, with no edit to it.

``tools/train.py CONFIG --curriculum efficienttrain`` trains the config's own
recipe with EfficientTrain; ``--curriculum efficienttrain++ --speedup 1.5``
with EfficientTrain++ for 1.5x less compute than the config's
``max_epochs``. The hook and the loop adapt the config's own train pipeline
(:mod:`mmet.adapt`), so any stock mmpretrain config works, including by its
``mmpretrain::`` name.

A tool takes the flags with two calls::

    add_curriculum_args(parser)
    ...
    cfg = apply_curriculum_args(load_config(args.config), args)
"""
import argparse
import os.path as osp
from mmengine.config import Config
from mmengine.utils import get_installed_path

CURRICULA = ('efficienttrain', 'efficienttrain++')
LOW_PASS = ('fourier', 'resize')
# the epoch-valued arguments of mmengine's param schedulers
EPOCH_KEYS = ('begin', 'end', 'T_max', 'step_size')
EPOCH_LIST_KEYS = ('milestones', 'periods')


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


def load_config(path: str) -> Config:
    """``Config.fromfile``, also for ``mmpretrain::``/``mmdet::`` names.

    ``Config.fromfile`` reads ``package::`` paths only as ``_base_``; here
    they resolve to the config the package installed
    (``<package>/.mim/configs/<path>``), as ``mmengine.hub.get_config`` does,
    without its attempt to install a missing package.
    """
    if '::' not in path:
        return Config.fromfile(path)
    package, rel = path.split('::', 1)
    try:
        root = get_installed_path(package)
    except Exception:  # mmengine raises what importlib raises
        raise FileNotFoundError(
            f'{path}: the package {package!r} is not installed.') from None
    full = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(
            f'{path}: {package} ships no config {rel!r} (looked for {full}).')
    return Config.fromfile(full)


def apply_curriculum_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Add the curriculum that ``args`` asks for to ``cfg``, in place.

    - ``custom_imports`` gets ``mmet``;
    - EfficientTrain: an ``EfficientTrainHook`` is appended to
      ``custom_hooks``;
    - EfficientTrain++: ``train_cfg`` becomes an ``EfficientTrainLoop`` with
      the config's ``max_epochs`` as ``baseline_epochs`` and its
      ``val_begin``/``val_interval``/``dynamic_intervals``; the epoch-valued
      fields of epoch-based param schedulers are scaled by E / max_epochs,
      since the loop runs them as a full-size run of E epochs (on the
      compute clock). The family comes from the backbone
      (:func:`~mmet.curriculum.infer_family`).

    Returns:
        Config: ``cfg``.

    Raises:
        ValueError: flags that do not fit each other or the config (a
            config that already has a curriculum, an iteration-based loop),
            naming the fix.
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
    imports = dict(cfg.get('custom_imports') or {})
    names = list(imports.get('imports', []))
    cfg.custom_imports = dict(
        imports, imports=names + ['mmet'] * ('mmet' not in names))
    extra = {} if low_pass is None else dict(low_pass=low_pass)
    if curriculum == 'efficienttrain':
        if budget is not None or speedup is not None:
            raise ValueError(
                '--budget and --speedup set the compute of efficienttrain++; '
                'efficienttrain trains for the config\'s max_epochs '
                f'({max_epochs}). Use --curriculum efficienttrain++, or drop '
                'them (--cfg-options train_cfg.max_epochs=N changes the '
                'epochs).')
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='EfficientTrainHook', curriculum=curriculum, **extra)]
        return cfg
    if budget is None and speedup is None:
        raise ValueError(
            'efficienttrain++ trains for a compute budget: give --budget E '
            '(full-size epochs) or --speedup S (E = max_epochs / S, e.g. 1.5, '
            f'2 or 3 against this config\'s {max_epochs} epochs).')
    target = budget if budget is not None else max_epochs / speedup
    loop = dict(type='EfficientTrainLoop', curriculum=curriculum,
                baseline_epochs=max_epochs, **extra)
    loop.update(dict(budget=budget) if budget is not None else
                dict(speedup=speedup))
    for key in ('val_begin', 'val_interval', 'dynamic_intervals'):
        if key in train_cfg:
            loop[key] = train_cfg[key]
    cfg.train_cfg = loop
    schedulers = cfg.get('param_scheduler')
    if schedulers:
        cfg.param_scheduler = scale_epoch_schedule(
            schedulers, target / max_epochs)
    return cfg


def _check_no_curriculum(cfg: Config) -> None:
    hooks = [str(h.get('type', '')).split('.')[-1]
             for h in cfg.get('custom_hooks') or []]
    loop = str((cfg.get('train_cfg') or {}).get('type', '')).split('.')[-1]
    if 'EfficientTrainHook' in hooks or loop == 'EfficientTrainLoop':
        where = ('custom_hooks has an EfficientTrainHook'
                 if 'EfficientTrainHook' in hooks else
                 'train_cfg is an EfficientTrainLoop')
        raise ValueError(
            f'The config already trains with a curriculum ({where}). Drop '
            '--curriculum, or start from the config without it.')


def _epoch_based_max_epochs(train_cfg) -> int:
    kind = str(train_cfg.get('type', '')).split('.')[-1]
    by_epoch = train_cfg.get('by_epoch', kind != 'IterBasedTrainLoop')
    if kind == 'IterBasedTrainLoop' or not by_epoch or \
            train_cfg.get('max_epochs') is None:
        raise ValueError(
            f'The curriculum switches stages between epochs, but train_cfg '
            f'({dict(train_cfg)}) is iteration-based or has no max_epochs. '
            'Train by epochs: --cfg-options "train_cfg=dict(by_epoch=True, '
            'max_epochs=N, val_interval=1)".')
    return train_cfg['max_epochs']


def scale_epoch_schedule(schedulers, factor: float) -> list:
    """Epoch-based param schedulers with their epochs scaled by ``factor``.

    ``begin``, ``end``, ``T_max``, ``step_size``, ``milestones`` and
    ``periods`` of every scheduler with ``by_epoch=True`` (mmengine's
    default) are scaled and rounded to whole epochs (``end`` stays after
    ``begin``); iteration-based ones (warm-ups of N iterations) are kept.
    """
    single = isinstance(schedulers, dict)
    out = []
    for s in [schedulers] if single else schedulers:
        s = dict(s)
        if s.get('by_epoch', True):
            for key in EPOCH_KEYS:
                if isinstance(s.get(key), (int, float)):
                    s[key] = max(1, round(s[key] * factor)) \
                        if key != 'begin' else round(s[key] * factor)
            for key in EPOCH_LIST_KEYS:
                if isinstance(s.get(key), (list, tuple)):
                    s[key] = [max(1, round(v * factor)) for v in s[key]]
            if 'end' in s and s['end'] <= s.get('begin', 0):
                s['end'] = s.get('begin', 0) + 1
        out.append(s)
    return out[0] if single else out

