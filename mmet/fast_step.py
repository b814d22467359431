"""The fast training step: the fixed cost per step that small-B stages pay.

A low-B stage does few FLOPs per image, so a fixed cost per step that the
full size amortises dominates it (``docs/evidence.md``, the GPU section,
measures each cost). :class:`FastStepConstructor` removes three such costs
where the optimizer is built, and changes no update:

- **merged param groups**: mmpretrain's ``paramwise_cfg`` makes one param
  group per parameter with a handful of distinct settings, and PyTorch's
  multi-tensor optimizers launch their kernels per group. Groups with equal
  settings become one (:func:`merge_param_groups`);
- **bf16 without a GradScaler**: ``AmpOptimWrapper`` keeps a loss scaler
  under bf16, which bf16's range does not need, and its step checks for
  infs on the host; ``dtype='bfloat16'`` gets :class:`BF16OptimWrapper`;
- **channels_last** for convolutional backbones on CUDA: the model's
  weights and the data preprocessor's output.

One line turns it on in any config, whatever else its ``optim_wrapper``
says::

    optim_wrapper = dict(constructor='FastStepConstructor')

Options go in ``optim_wrapper.fast_step``: ``dict(inner=<the constructor it
wraps, default DefaultOptimWrapperConstructor>, merge_groups=True,
channels_last='auto', bf16_without_scaler=True)``. mmet's configs and
``tools/train.py --curriculum`` turn it on (:func:`enable_fast_step`), for
the baseline and the curricula alike. The per-stage micro-batch and the
device pipeline one batch ahead belong to the loop
(:class:`~mmet.loops.EfficientTrainLoop`).
"""
import copy
from contextlib import contextmanager
from typing import Dict, List

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS
from mmengine.runner.amp import autocast

from .config import type_name

CHANNELS_LAST = ('auto', True, False)


_UNCOMPARABLE = object()


def _comparable(value):
    """``value`` as a hashable key, or ``_UNCOMPARABLE``."""
    if isinstance(value, (int, float, str, bool, type(None), torch.dtype)):
        return value
    if isinstance(value, (tuple, list)):
        items = tuple(_comparable(v) for v in value)
        return _UNCOMPARABLE if _UNCOMPARABLE in items else items
    return _UNCOMPARABLE


def _settings(group: dict, index: int) -> tuple:
    """What tells param groups apart: every key but the parameters; a group
    with a setting that cannot be compared is its own."""
    key = []
    for name, value in sorted(group.items()):
        if name in ('params', 'param_names'):
            continue
        value = _comparable(value)
        if value is _UNCOMPARABLE:
            return ('own', index)
        key.append((name, value))
    return tuple(key)


def merge_param_groups(optimizer: torch.optim.Optimizer) -> int:
    """Merge the param groups of ``optimizer`` whose settings are equal.

    Must run before the optimizer steps (it holds no state yet) and before
    param schedulers are built on it. Returns the number of groups left.
    """
    if optimizer.state:
        raise RuntimeError('merge_param_groups needs an optimizer that has '
                           'not stepped yet.')
    merged: Dict[tuple, dict] = {}
    for i, group in enumerate(optimizer.param_groups):
        key = _settings(group, i)
        if key not in merged:
            merged[key] = dict(group, params=list(group['params']))
            if 'param_names' in group:
                merged[key]['param_names'] = list(group['param_names'])
            continue
        merged[key]['params'].extend(group['params'])
        if 'param_names' in group:
            merged[key].setdefault('param_names', []).extend(
                group['param_names'])
    optimizer.param_groups = list(merged.values())
    return len(optimizer.param_groups)


def is_convolutional(model: torch.nn.Module) -> bool:
    """Whether a model's backbone is a ConvNet: more than the one
    convolution of a patch embedding."""
    backbone = getattr(model, 'backbone', None) or model
    return sum(isinstance(m, torch.nn.Conv2d)
               for m in backbone.modules()) > 1


def _channels_last_inputs(module, args, output):
    """A forward hook of the data preprocessor: 4-D ``inputs`` in
    channels_last."""
    inputs = output.get('inputs') if isinstance(output, dict) else None
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        return dict(output, inputs=inputs.contiguous(
            memory_format=torch.channels_last))
    return output


def _channels_last_from_first_forward(module: torch.nn.Module) -> None:
    """Put ``module`` in channels_last at its first forward, once.

    Not at once: the Runner initialises the weights after it builds the
    optimizer, and ``nn.init`` fills a tensor in memory order, so weights
    initialised in channels_last would be other draws than NCHW's. The
    parameters stay the same objects (the optimizer's).
    """
    def convert(mod, args):
        mod.to(memory_format=torch.channels_last)
        handle.remove()

    handle = module.register_forward_pre_hook(convert)


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """An optimizer wrapper that runs the forward pass under bf16 autocast,
    without a loss scaler (bf16 has float32's range, so gradients neither
    underflow nor need unscaling and inf checks). Works on CPUs too.

    Args:
        **kwargs: ``OptimWrapper`` arguments.
    """

    def __init__(self, **kwargs):
        kwargs.pop('dtype', None)
        super().__init__(**kwargs)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), autocast(dtype=torch.bfloat16):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        # a checkpoint of AmpOptimWrapper holds its scaler's state
        state_dict = {k: v for k, v in state_dict.items()
                      if k != 'loss_scaler'}
        super().load_state_dict(state_dict)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FastStepConstructor:
    """Build the optimizer wrapper of the fast step (module docstring).

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config (without
            ``constructor`` and ``paramwise_cfg``), with the options in
            ``fast_step``.
        paramwise_cfg (dict, optional): Passed to the inner constructor.
    """

    OPTIONS = ('inner', 'merge_groups', 'channels_last',
               'bf16_without_scaler')

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None):
        cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        opts = dict(cfg.pop('fast_step', None) or {})
        unknown = sorted(set(opts) - set(self.OPTIONS))
        if unknown:
            raise ValueError(f'optim_wrapper.fast_step takes '
                             f'{list(self.OPTIONS)}, got {unknown}.')
        self.merge_groups = opts.get('merge_groups', True)
        self.channels_last = opts.get('channels_last', 'auto')
        if self.channels_last not in CHANNELS_LAST:
            raise ValueError(f'fast_step.channels_last must be one of '
                             f'{CHANNELS_LAST}, got {self.channels_last!r}.')
        self.changes: List[str] = []
        if opts.get('bf16_without_scaler', True) and \
                type_name(cfg.get('type', 'OptimWrapper')) == \
                'AmpOptimWrapper' and \
                cfg.get('dtype') in ('bfloat16', torch.bfloat16):
            cfg['type'] = 'BF16OptimWrapper'
            cfg.pop('loss_scale', None)
            self.changes.append('bf16 without a GradScaler')
        self.inner = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type=opts.get('inner', 'DefaultOptimWrapperConstructor'),
            optim_wrapper_cfg=cfg, paramwise_cfg=paramwise_cfg))

    def __call__(self, model: torch.nn.Module) -> OptimWrapper:
        module = model.module if hasattr(model, 'module') else model
        changes = list(self.changes)
        on_cuda = any(p.is_cuda for p in module.parameters())
        if self.channels_last is True or (
                self.channels_last == 'auto' and on_cuda and
                is_convolutional(module)):
            _channels_last_from_first_forward(module)
            pre = getattr(module, 'data_preprocessor', None)
            if isinstance(pre, torch.nn.Module):
                pre.register_forward_hook(_channels_last_inputs)
            changes.append('channels_last')
        wrapper = self.inner(model)
        if self.merge_groups:
            before = len(wrapper.optimizer.param_groups)
            after = merge_param_groups(wrapper.optimizer)
            changes.append(f'{before} param groups merged into {after}')
        done = ', '.join(changes) or 'nothing to change'
        print_log(f'Fast training step: {done}.', logger='current')
        return wrapper


def enable_fast_step(cfg) -> None:
    """Turn the fast step on in ``cfg``, in place: its ``optim_wrapper``
    constructor becomes :class:`FastStepConstructor`, wrapping the one it
    had."""
    optim = cfg.get('optim_wrapper')
    if optim is None or 'optimizer' not in optim:
        return  # several optimizers: a dict of wrappers, left alone
    inner = optim.get('constructor', 'DefaultOptimWrapperConstructor')
    if type_name(inner) == 'FastStepConstructor':
        return
    optim['constructor'] = 'FastStepConstructor'
    optim['fast_step'] = dict(optim.get('fast_step') or {}, inner=inner)
