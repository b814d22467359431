"""Parameter schedules on a clock of the plan's.

In EfficientTrain++ the learning rate, its warm-up and the weight decay
follow the fraction of the *compute* spent, not of the epochs: a stage at
bandwidth B runs (224/B)^2 times as many epochs as its compute share at full
size would, and each of its iterations costs (B/224)^2 of a full-size one.
Where stages run larger micro-batches (:class:`~mmet.plan.TrainPlan`), an
iteration trains several configured batches, so iteration-based schedules
must count those instead. Both are a weight per iteration of each stage.

:class:`ComputeClockScheduler` wraps any list of mmengine parameter scheduler
configs. It runs them once, on a shadow optimizer, over the timeline of a
full-size run (``timeline_epochs`` epochs of ``iters_per_epoch`` iterations)
and
tabulates every scheduled value per iteration. At each real iteration it
looks up the value at the compute spent so far (interpolated between
full-size iterations). mmengine's schedulers are chainable (each value comes
from the previous one), so they cannot be asked for an arbitrary step; the
table makes the remapping exact for all of them.

:class:`~mmet.loops.EfficientTrainLoop` wraps the config's ``param_scheduler``
in one of these automatically; configs keep their usual schedulers.
:func:`scale_schedule` is the one way mmet rescales epoch-based schedules
(``--curriculum efficienttrain++``, search proxies, equal-compute runs).
"""
import bisect
import copy
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS

from .config import per_optimizer


class _ShadowOptimizer(torch.optim.Optimizer):
    """An optimizer with the hyper-parameters of some groups and no state."""

    def __init__(self, groups: List[dict], defaults: dict):
        super().__init__(
            [dict(g, params=[torch.zeros(1)]) for g in groups],
            dict(defaults))

    def step(self, closure=None):  # noqa: D102  (nothing to optimize)
        return None


def _hashable(v):
    if isinstance(v, (int, float, str, bool, type(None))):
        return v
    if isinstance(v, (tuple, list)):
        try:
            return tuple(_hashable(x) for x in v)
        except TypeError:
            return None
    return None


def _signature(group: dict) -> tuple:
    """The hyper-parameters of a param group (everything but the params)."""
    return tuple(sorted((k, _hashable(v)) for k, v in group.items()
                        if k != 'params' and k != 'param_names'))


@PARAM_SCHEDULERS.register_module()
class ComputeClockScheduler(_ParamScheduler):
    """Run mmengine parameter schedulers on the compute clock.

    Args:
        optimizer (OptimWrapper | Optimizer): The real optimizer.
        schedulers (list[dict]): Param scheduler configs, written for a
            full-size run of ``timeline_epochs`` epochs (the ``end`` of
            epoch-based ones defaults to ``timeline_epochs``, as the Runner
            defaults it to ``max_epochs``). Any mmengine scheduler works,
            including ``convert_to_iter_based`` and weight-decay or momentum
            schedulers, except ones that read validation metrics.
        stages (list[tuple[int, float]]): The real run: per stage, its number
            of iterations and the weight of one iteration on the timeline:
            its compute relative to a full-size one (``(B / full)^2`` times
            the configured batches it trains), or the configured batches it
            trains (:meth:`~mmet.plan.TrainPlan.clock_stages`).
        timeline_epochs (float): Length of the full-size run the schedulers
            describe, in epochs (EfficientTrain++: the budget E).
        iters_per_epoch (int): Iterations per epoch of that full-size run.
        by_epoch (bool): Must be False: the wrapper steps every iteration.
        begin, end, last_step, verbose: As for any scheduler; ``begin`` and
            ``end`` are accepted for the Runner and ignored.

    The value for real iteration ``j`` is the full-size run's value at
    iteration ``C_j / C * timeline_epochs * iters_per_epoch``, where ``C_j`` is
    the compute spent before ``j`` and ``C`` the whole run's. So the last
    iteration of a stage that ends at a fraction ``f`` of the compute is
    followed by exactly the value the full-size run has at ``f``. An
    iteration of weight ``w > 1`` (a micro-batch of ``w`` configured
    batches) takes the value at ``C_j + w - 1``: the configured run's at its
    optimizer step.
    """

    def __init__(self,
                 optimizer,
                 schedulers: Sequence[dict],
                 stages: Sequence[Tuple[int, float]],
                 timeline_epochs: float,
                 iters_per_epoch: int,
                 by_epoch: bool = False,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 verbose: bool = False):
        if by_epoch:
            raise ValueError('ComputeClockScheduler steps every iteration; '
                             'it cannot be by_epoch.')
        self.stages = [(int(n), float(c)) for n, c in stages]
        if not self.stages or any(n < 0 or not c > 0
                                  for n, c in self.stages):
            raise ValueError(f'Invalid stages {stages}: give (iterations, '
                             'relative cost > 0) per stage.')
        self.timeline_epochs = float(timeline_epochs)
        self.epoch_length = int(iters_per_epoch)
        if not (self.timeline_epochs > 0 and self.epoch_length > 0):
            raise ValueError(
                f'timeline_epochs={timeline_epochs} and iters_per_epoch='
                f'{iters_per_epoch} must be positive.')
        self.timeline_iters = max(
            1, int(round(self.timeline_epochs * self.epoch_length)))
        self.scheduler_cfgs = [dict(copy.deepcopy(s)) for s in schedulers]
        self._step_edges = [0]
        self._compute_edges = [0.0]
        for n, c in self.stages:
            self._step_edges.append(self._step_edges[-1] + n)
            self._compute_edges.append(self._compute_edges[-1] + n * c)
        self.fingerprint = dict(
            stages=self.stages,
            timeline_epochs=self.timeline_epochs,
            iters_per_epoch=self.epoch_length,
            schedulers=repr(self.scheduler_cfgs))
        self._tabulate(optimizer)
        super().__init__(
            optimizer,
            param_name=self.param_names[0],
            begin=0,
            end=INF,
            last_step=last_step,
            by_epoch=False,
            verbose=verbose)

    # the table -------------------------------------------------------------
    def _tabulate(self, optimizer) -> None:
        """Simulate the schedulers over the full-size timeline, once."""
        groups = optimizer.param_groups
        classes: Dict[tuple, int] = {}
        self._group_class = []
        shadow_groups = []
        for g in groups:
            key = _signature(g)
            if key not in classes:
                classes[key] = len(shadow_groups)
                shadow_groups.append(
                    {k: copy.deepcopy(v) for k, v in g.items()
                     if k not in ('params', 'param_names')})
            self._group_class.append(classes[key])
        defaults = getattr(optimizer, 'defaults', None)
        if defaults is None:  # an OptimWrapper without ``defaults``
            defaults = getattr(getattr(optimizer, 'optimizer', None),
                               'defaults', {})
        shadow = _ShadowOptimizer(shadow_groups, defaults)
        L = self.epoch_length
        built = []
        for cfg in self.scheduler_cfgs:
            cfg = copy.deepcopy(cfg)
            if cfg.get('type') in ('ComputeClockScheduler',
                                   ComputeClockScheduler):
                raise ValueError('ComputeClockScheduler cannot wrap itself.')
            by_epoch = cfg.get('by_epoch', True)
            cfg.setdefault(
                'end',
                self.timeline_epochs if by_epoch else self.timeline_iters)
            try:
                s = PARAM_SCHEDULERS.build(
                    cfg, default_args=dict(optimizer=shadow, epoch_length=L))
            except (ValueError, TypeError, KeyError, AssertionError) as e:
                raise ValueError(
                    f'{e} (building {cfg.get("type")} on the compute clock, '
                    f'whose full-size timeline is {self.timeline_epochs:g} '
                    f'epochs of {L} iterations)') from e
            if getattr(s, 'need_val_args', False):
                raise ValueError(
                    f'{type(s).__name__} reads validation metrics, so it '
                    'cannot be replayed on the compute clock; use a '
                    'time-based schedule.')
            built.append(s)
        if not built:
            raise ValueError('ComputeClockScheduler got no schedulers.')
        names: List[str] = []
        for s in built:
            if s.param_name not in names:
                names.append(s.param_name)
        self.param_names = names
        self._betas = 'momentum' in names and any(
            getattr(s, 'use_betas', False) for s in built)
        iter_based = [s for s in built if not s.by_epoch]
        epoch_based = [s for s in built if s.by_epoch]
        M = self.timeline_iters
        nan = float('nan')
        sgroups = shadow.param_groups
        rows = []
        for i in range(M + 1):
            rows.append([g.get(n, nan) for g in sgroups for n in names])
            if i == M:
                break
            shadow.step()
            for s in iter_based:
                s.step()
            if (i + 1) % L == 0:
                for s in epoch_based:
                    s.step()
        self._table = np.array(rows, dtype=np.float64).reshape(
            M + 1, len(sgroups), len(names))

    # the clock -------------------------------------------------------------
    @property
    def total_iters(self) -> int:
        """Real iterations of the whole run."""
        return self._step_edges[-1]

    def compute_spent(self, step: int) -> float:
        """Compute spent before real iteration ``step``, in full-size iters."""
        step = min(max(step, 0), self.total_iters)
        k = min(bisect.bisect_right(self._step_edges, step) - 1,
                len(self.stages) - 1)
        done = step - self._step_edges[k]
        return self._compute_edges[k] + done * self.stages[k][1]

    def position(self, step: int) -> float:
        """Where real iteration ``step`` falls on the full-size timeline.

        An iteration that weighs more than one full-size iteration (a
        micro-batch of several configured batches) takes the value of the
        last of them, with which the configured run makes its optimizer
        step."""
        total = self._compute_edges[-1]
        clamped = min(max(step, 0), self.total_iters - 1)
        k = min(bisect.bisect_right(self._step_edges, clamped) - 1,
                len(self.stages) - 1)
        ahead = max(0.0, self.stages[k][1] - 1)
        return min(self.compute_spent(step) + ahead, total) / total * \
            self.timeline_iters

    def values_at(self, step: int) -> np.ndarray:
        """Scheduled values for real iteration ``step``: (class, name)."""
        t = self.position(step)
        i = min(int(np.floor(t)), self.timeline_iters - 1)
        frac = t - i
        return (1 - frac) * self._table[i] + frac * self._table[i + 1]

    def step(self):
        self._global_step += 1
        self.last_step += 1
        values = self.values_at(self._global_step)
        for i, (g, c) in enumerate(
                zip(self.optimizer.param_groups, self._group_class)):
            for k, name in enumerate(self.param_names):
                v = values[c, k]
                if np.isnan(v):
                    continue
                g[name] = float(v)
                if name == 'momentum' and self._betas and 'betas' in g:
                    g['betas'] = (float(v), g['betas'][1])
            if self.verbose:
                self.print_value(True, i, g[self.param_name])
        self._last_value = [
            group[self.param_name] for group in self.optimizer.param_groups
        ]

    def _get_value(self):  # pragma: no cover - step() is overridden
        raise NotImplementedError

    # checkpoints -----------------------------------------------------------
    def state_dict(self) -> dict:
        return dict(
            _global_step=self._global_step,
            last_step=self.last_step,
            _last_value=getattr(self, '_last_value', None),
            fingerprint=copy.deepcopy(self.fingerprint))

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get('fingerprint')
        if saved is not None and saved != self.fingerprint:
            diffs = [k for k in self.fingerprint
                     if saved.get(k) != self.fingerprint[k]]
            raise RuntimeError(
                'The checkpoint was trained with another compute clock '
                f'(different {", ".join(diffs)}): '
                f'{ {k: saved.get(k) for k in diffs} } then, '
                f'{ {k: self.fingerprint[k] for k in diffs} } now. The '
                'budget, curriculum, replay, batch size, dataset size or '
                'param_scheduler changed; resume with the settings the run '
                'started with.')
        for key in ('_global_step', 'last_step', '_last_value'):
            if key in state_dict:
                setattr(self, key, state_dict[key])


def wrap_param_schedulers(cfg, stages: Sequence[Tuple[int, float]],
                          timeline_epochs: float, iters_per_epoch: int):
    """Wrap a Runner's ``param_scheduler`` config in the compute clock.

    Accepts what the Runner accepts: a dict, a list of dicts, or a dict of
    those per optimizer name. Returns the same shape with each list replaced
    by one :class:`ComputeClockScheduler` config. Built schedulers cannot be
    re-timed and raise.
    """
    def wrap(schedulers):
        if isinstance(schedulers, dict):
            schedulers = [schedulers]
        schedulers = list(schedulers)
        if not schedulers:
            return schedulers
        for s in schedulers:
            if isinstance(s, _ParamScheduler):
                raise TypeError(
                    'EfficientTrainLoop puts param schedulers on the '
                    'compute clock, so give them as configs (dicts), not '
                    f'built {type(s).__name__} objects; or set '
                    'compute_clock=False.')
            if s.get('type') in ('ComputeClockScheduler',
                                 ComputeClockScheduler):
                raise ValueError(
                    'param_scheduler already holds a ComputeClockScheduler; '
                    'EfficientTrainLoop adds it. Give the plain schedulers.')
        return [
            dict(
                type=ComputeClockScheduler,
                schedulers=[dict(s) for s in schedulers],
                stages=[list(s) for s in stages],
                timeline_epochs=timeline_epochs,
                iters_per_epoch=iters_per_epoch,
                by_epoch=False)
        ]

    if cfg is None:
        return None
    if per_optimizer(cfg):
        return {name: wrap(v) for name, v in cfg.items()}
    return wrap(cfg)


# the epoch-valued arguments of mmengine's param schedulers
EPOCH_KEYS = ('begin', 'end', 'T_max', 'step_size')
EPOCH_LIST_KEYS = ('milestones', 'periods')
# an ``end`` at or beyond this is mmengine's "to the end of training"
OPEN_END = 10**8


def scale_schedule(schedulers, factor: float):
    """Epoch-based param schedulers with their epochs scaled by ``factor``.

    ``begin``, ``end``, ``T_max``, ``step_size``, ``milestones`` and
    ``periods`` of every scheduler with ``by_epoch=True`` (mmengine's
    default) are scaled: exactly for ``convert_to_iter_based`` ones (they
    become iterations), else rounded to whole epochs, at least 1 (``begin``
    at least 0), with ``end`` after ``begin``; an open ``end`` (mmengine's
    INF) stays. Iteration-based ones (warm-ups of N iterations) are kept.
    Accepts what the Runner accepts (a dict, a list, or a dict of those per
    optimizer) and returns the same shape, new.
    """
    if schedulers is None:
        return None
    if per_optimizer(schedulers):
        return {k: scale_schedule(v, factor) for k, v in schedulers.items()}
    if isinstance(schedulers, dict):
        return scale_schedule([schedulers], factor)[0]
    out = []
    for s in schedulers:
        s = copy.deepcopy(dict(s))
        if s.get('by_epoch', True):
            exact = s.get('convert_to_iter_based', False)

            def scale(v, low):
                v = v * factor
                return v if exact else max(low, int(v + 0.5))
            for key in EPOCH_KEYS:
                value = s.get(key)
                if isinstance(value, (int, float)) and \
                        not isinstance(value, bool) and \
                        not (key == 'end' and value >= OPEN_END):
                    s[key] = scale(value, 0 if key == 'begin' else 1)
            for key in EPOCH_LIST_KEYS:
                if isinstance(s.get(key), (list, tuple)):
                    s[key] = [scale(v, 1) for v in s[key]]
            if 'end' in s and s['end'] <= s.get('begin', 0):
                s['end'] = s.get('begin', 0) + (1 if not exact else factor)
        out.append(s)
    return out
