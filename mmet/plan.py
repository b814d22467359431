"""The plan of a run and its stage clock.

A :class:`TrainPlan` says which stage trains when, and how. It is made in
one place from:

- the curriculum: its stages' shares of the epochs (EfficientTrain), or of
  the compute budget E (EfficientTrain++, :meth:`Curriculum.plan`);
- the run's length: ``max_epochs``, or a budget (``budget=E`` or
  ``speedup=`` against ``baseline_epochs``);
- what :class:`~mmet.driver.StageDriver` found: the full size, and whether
  a staged transform runs in the data workers (a switch then needs fresh
  workers, so stages switch at whole epochs) or all of them in the data
  preprocessor (stages may switch at any iteration);
- the train loader (:class:`LoaderFacts`: its batch, its iterations per
  epoch at any batch, the gradient accumulation), where the data is built;
- the per-stage micro-batch and the replay settings.

It holds, per stage (:class:`StagePlan`), B and m, the epochs, iterations,
loader batch and gradient accumulation, the replay factor and the compute
of one iteration; the budget check; and the one stage clock,
:meth:`TrainPlan.stage_at`, a pure function from (epoch, iteration) to the
stage. :class:`~mmet.loops.EfficientTrainLoop` and
:class:`~mmet.hooks.EfficientTrainHook` read it; so do
``tools/analyze_curriculum.py``, ``tools/check_configs.py``,
``tools/search_curriculum.py`` and the benchmarks, through
:func:`plan_from_config`. A resume re-plans it in one place
(:meth:`StageClock.extend_from`, from :mod:`mmet.resume`).
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .config import (backbone_type, curriculum_hook, curriculum_loop,
                     scheduler_configs)
from .curriculum import (BACKBONE_FAMILIES, BASELINE_EPOCHS, ETPP_REPLAY,
                         BudgetPlan, Curriculum, CurriculumError, StageState,
                         budget_for_speedup, infer_family)
from .sizes import MIN_PIXELS, Size, at_bandwidth, describe, hw, pixel_cost

REPLAY_PRESETS = {'efficienttrain++': ETPP_REPLAY}
# MiB of replay buffer contents a checkpoint holds by default; a larger
# buffer is saved without them (its random state only) and refills
REPLAY_CHECKPOINT_MB = 1024
# a re-plan that gives every stage a whole epoch may spend this much more
# than the budget (warned); beyond it the budget is refused
MAX_REPLAN_OVERRUN = 1.0
# a stage's micro-batch may hold this much more than the full size's pixels
# ("about the same"): 2x at 160 of 224 px (1.96x fewer pixels), as the
# official EfficientTrain code doubles its batch there
MICRO_BATCH_SLACK = 1.1


# the clock -------------------------------------------------------------------
class StageClock:
    """When each stage of a curriculum trains: epochs, or iterations.

    Args:
        curriculum (Curriculum): The stages, with their shares of the ticks.
        max_epochs (int): Epochs of the run.
        full_size (int | tuple, optional): The full size (B in pixels).
        epoch_length (int, optional): Iterations per epoch: given, stages
            switch at iterations (each gets its share to within one);
            else at whole epochs.
        edges (list[int], optional): First tick (epoch, or iteration) of
            each stage, then the end: a plan a checkpoint recorded.
            Defaults to the curriculum's boundaries.
    """

    def __init__(self, curriculum: Curriculum, max_epochs: int,
                 full_size: Optional[Size] = None,
                 epoch_length: Optional[int] = None,
                 edges: Optional[List[int]] = None):
        self.curriculum, self.max_epochs = curriculum, max_epochs
        self.full_size, self.epoch_length = full_size, epoch_length
        ticks = max_epochs * epoch_length if epoch_length else max_epochs
        self.edges = list(edges) if edges is not None else \
            curriculum.boundaries(ticks)

    @property
    def by_iter(self) -> bool:
        return bool(self.epoch_length)

    def index_at(self, tick: int) -> int:
        """Stage index of an epoch (or, by iteration, a global iteration)."""
        for i in range(len(self.curriculum) - 1, -1, -1):
            if self.edges[i] <= tick:
                return i
        return 0

    def extend_from(self, tick: int, index: int,
                    past: Optional[List[int]] = None) -> None:
        """Re-plan from ``tick`` on without going back before stage
        ``index``: each later tick trains the later of its own stage and
        stage ``index``; before ``tick`` the stages up to ``index`` keep
        their edges in ``past`` (the plan trained so far; default: this)."""
        past = self.edges if past is None else past
        self.edges = [min(p, tick) if i <= index else max(e, tick)
                      for i, (p, e) in enumerate(zip(past, self.edges))]

    def stage_ticks(self) -> List[int]:
        """Epochs (or iterations) of each stage."""
        return [b - a for a, b in zip(self.edges, self.edges[1:])]

    def state(self, index: int) -> StageState:
        stage = self.curriculum.stages[index]
        a, b = self.edges[index:index + 2]
        if self.by_iter:
            first, last = a // self.epoch_length + 1, \
                -(-b // self.epoch_length)
        else:
            first, last = a + 1, b
        size = None if self.full_size is None else \
            at_bandwidth(stage.bandwidth, self.full_size)
        return StageState(
            index=index, num_stages=len(self.curriculum), size=size,
            bandwidth=stage.bandwidth, magnitude=stage.magnitude,
            first_epoch=first, last_epoch=last, max_epochs=self.max_epochs)

    def states(self) -> List[StageState]:
        """The states of the stages that train (have a tick)."""
        return [self.state(i) for i, n in enumerate(self.stage_ticks())
                if n > 0]


# settings --------------------------------------------------------------------
def replay_settings(replay: Union[None, bool, str, dict],
                    num_stages: int) -> Optional[dict]:
    """The checked replay settings of ``replay`` (a preset name or a dict)
    for ``num_stages`` stages; None without replay.

    Raises:
        ValueError: an unknown preset or settings that do not fit.
    """
    if replay is None or replay is False:
        return None
    if isinstance(replay, str):
        if replay.lower() not in REPLAY_PRESETS:
            raise ValueError(
                f'train_cfg.replay: Unknown replay preset {replay!r}; valid: '
                f'{sorted(REPLAY_PRESETS)}, or dict(times=[...], '
                'buffer_size=[...]).')
        replay = REPLAY_PRESETS[replay.lower()]
    if not isinstance(replay, dict):
        raise ValueError(f'replay must be a preset name or a dict, got '
                         f'{replay!r}.')
    cfg = dict(split=32, fp16=True, checkpoint_mb=REPLAY_CHECKPOINT_MB)
    cfg.update(replay)
    unknown = set(cfg) - {'times', 'buffer_size', 'split', 'fp16',
                          'checkpoint_mb'}
    if unknown or 'times' not in cfg or 'buffer_size' not in cfg:
        raise ValueError(
            f'replay takes times, buffer_size, split, fp16 and '
            f'checkpoint_mb; got {sorted(replay)}.')
    times = [int(r) for r in cfg['times']]
    sizes = [int(s) for s in cfg['buffer_size']]
    if len(times) != num_stages or len(sizes) != num_stages:
        raise ValueError(
            f'replay needs one R and one buffer size per stage '
            f'({num_stages} stages); got times={times}, '
            f'buffer_size={sizes}.')
    for i, (r, s) in enumerate(zip(times, sizes)):
        if r < 1 or s < 0 or (r > 1 and s < 1):
            raise ValueError(
                f'Stage {i + 1}: replay times={r}, buffer_size={s}; R '
                'must be >= 1 and a stage with R > 1 needs a buffer of '
                'at least 1 loaded batch.')
    cfg['times'], cfg['buffer_size'] = tuple(times), tuple(sizes)
    return cfg


def resolve_curriculum(spec: Union[str, Sequence, Curriculum],
                       family: Optional[str] = None,
                       backbone: Optional[str] = None) -> Curriculum:
    """The curriculum of ``spec``; a per-family preset
    (``'efficienttrain++'``) takes ``family``, else the family of the
    ``backbone`` type (:func:`~mmet.curriculum.infer_family`).

    Raises:
        CurriculumError: a family that cannot be inferred, naming the fix.
    """
    if family is None and isinstance(spec, str) and \
            spec.lower() in ('efficienttrain++', 'et++'):
        family = infer_family(backbone or '')
        if family is None:
            raise CurriculumError(
                f'EfficientTrainLoop cannot infer the ET++ model family of '
                f'the backbone {backbone}; give train_cfg family= one of '
                f'{sorted(BACKBONE_FAMILIES)} (the bandwidths of the '
                'nearest kind of model: resnet for ConvNets, deit for '
                'ViTs), or stages of your own as curriculum=.')
    return Curriculum.build(spec, family=family)


def check_budget_value(budget=None, speedup=None,
                       baseline_epochs=BASELINE_EPOCHS) -> float:
    """The budget E of exactly one of ``budget`` and ``speedup``.

    Raises:
        ValueError: neither or both, or a value that is no finite positive
            number, naming the fix.
    """
    if (budget is None) == (speedup is None):
        raise ValueError(
            'Give exactly one of budget=E (full-size-equivalent epochs, e.g. '
            f'200) or speedup= (against baseline_epochs={baseline_epochs:g},'
            f' e.g. 1.5, 2 or 3); got budget={budget}, speedup={speedup}.')
    name, value = ('budget', budget) if budget is not None else \
        ('speedup', speedup)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        what = ('full-size-equivalent epochs of compute' if name == 'budget'
                else f'times less compute than baseline_epochs='
                f'{baseline_epochs:g} full-size epochs')
        raise ValueError(
            f'{name}={value!r} is not a positive finite number: it is the '
            f'{what}. Give e.g. {name}='
            f'{200 if name == "budget" else 1.5}.')
    return float(budget) if budget is not None else \
        budget_for_speedup(speedup, baseline_epochs)


# the plan ----------------------------------------------------------------------
@dataclass(frozen=True)
class LoaderFacts:
    """What the plan needs of the train loader.

    Attributes:
        batch_size (int): The loader batch the config sets (per GPU).
        epoch_length (Callable[[int], int]): Iterations of an epoch at a
            loader batch size (``len(loader)`` with that batch).
        accumulation (int): The configured gradient accumulation
            (``optim_wrapper.accumulative_counts``).
    """
    batch_size: int
    epoch_length: Callable[[int], int]
    accumulation: int = 1


@dataclass(frozen=True)
class StagePlan:
    """One stage of a :class:`TrainPlan`.

    Attributes:
        index (int): From 0.
        bandwidth (float), magnitude (float): The stage's B (relative) and m.
        size (int | tuple, optional): B in pixels.
        epochs (float): Real epochs (passes over the data); a fraction where
            stages switch at iterations.
        iters (int, optional): Iterations (None without a loader).
        batch (int, optional): Loader batch (per GPU).
        accumulation (int): Gradient accumulation.
        replay (int): Replay factor R (1: none).
        cost (float): Compute of one iteration against a full-size one of
            the configured batch: the pixel ratio times the images trained
            per iteration over the configured batch.
    """
    index: int
    bandwidth: float
    magnitude: float
    size: Optional[Size]
    epochs: float
    iters: Optional[int]
    batch: Optional[int]
    accumulation: int
    replay: int
    cost: float


class TrainPlan:
    """Which stage trains when, and how: see the module docstring.

    Args:
        curriculum (Curriculum): The stages: shares of the epochs
            (``max_epochs``), or of the compute (``budget``).
        full_size (int | tuple, optional): The full input size.
        max_epochs (int, optional): The epochs of an EfficientTrain run.
        budget (float, optional): Instead: E, the compute in full-size
            epochs (EfficientTrain++).
        baseline_epochs (float): The full-size run a budget's speedup is
            measured against. Defaults to 300.
        switch_by_iter (bool): The staged transforms all run in the data
            preprocessor, so stages may switch at iterations (used where
            the loader batch is the same in every stage).
        loader (LoaderFacts, optional): The train loader, where it is built.
        micro_batch (str | int, optional): The per-stage micro-batch:
            ``'auto'`` gives each stage below full size the largest
            micro-batch of about its full-size pixels (a divisor of the
            gradient accumulation, which it divides, so each optimizer step
            sees the configured global batch); an int is that factor for
            every stage below full size. None: the configured batch.
        max_micro_batch (int, optional): A cap, in images per micro-batch.
        replay (str | dict, optional): Replay settings
            (:func:`replay_settings`).
        param_schedulers (optional): The ``param_scheduler`` config a budget
            plan runs on the compute clock, for the budget check.

    Raises:
        ValueError: settings that do not fit (the message names the fix).
        CurriculumError: a stage below the bandwidth floor.
    """

    def __init__(self, curriculum: Curriculum, *,
                 full_size: Optional[Size] = None,
                 max_epochs: Optional[int] = None,
                 budget: Optional[float] = None,
                 baseline_epochs: float = BASELINE_EPOCHS,
                 switch_by_iter: bool = False,
                 loader: Optional[LoaderFacts] = None,
                 micro_batch: Union[None, str, int] = None,
                 max_micro_batch: Optional[int] = None,
                 replay: Union[None, str, dict] = None,
                 param_schedulers=None):
        if (max_epochs is None) == (budget is None):
            raise ValueError('A plan needs max_epochs or a budget.')
        self.base_curriculum = curriculum
        self.full_size = full_size
        self.budget = budget
        self.baseline_epochs = float(
            baseline_epochs if budget is not None else max_epochs)
        self.loader = loader
        self.replay = replay_settings(replay, len(curriculum))
        if self.replay and micro_batch:
            raise ValueError(
                'micro_batch and replay both change the loader batch of the '
                'low-resolution stages; use one of them.')
        self._check_floor(curriculum)
        self.factors, self.notes = self._micro_batches(
            curriculum, micro_batch, max_micro_batch)
        times = self.replay['times'] if self.replay else None
        # without a loader (tools), a plan switching by iteration gives
        # each stage its share of the epochs as a fraction
        self.switch = 'iteration' if (
            switch_by_iter and not self.replay and
            all(k == 1 for k in self.factors)) else 'epoch'
        self.budget_plan: Optional[BudgetPlan] = None
        self.replanned_from: Optional[BudgetPlan] = None
        if budget is not None:
            plan = curriculum.plan(budget, times)
            if self.switch == 'epoch':
                replanned = curriculum.plan(budget, times, every_stage=True)
                if replanned.replanned:
                    self.replanned_from = plan
                plan = replanned
            self.budget_plan = plan
            real, max_epochs = plan.curriculum, plan.max_epochs
        else:
            real = curriculum
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(
                f'max_epochs must be a positive int, got {max_epochs!r}.')
        self.max_epochs = max_epochs
        self.clock = StageClock(
            real, max_epochs, full_size,
            loader.epoch_length(loader.batch_size)
            if self.switch == 'iteration' and loader is not None else None)
        self._check_replay_batches()
        self.stages = self._stage_plans()
        if budget is not None:
            self._check_budget(param_schedulers)

    # what was decided -------------------------------------------------------
    @property
    def curriculum(self) -> Curriculum:
        """The stages with their shares of the real epochs (or iterations):
        what the clock follows."""
        return self.clock.curriculum

    @property
    def by_budget(self) -> bool:
        return self.budget is not None

    @property
    def epoch_length(self) -> Optional[int]:
        """Iterations of an epoch at the configured batch."""
        return self.loader.epoch_length(self.loader.batch_size) \
            if self.loader else None

    @property
    def max_iters(self) -> Optional[int]:
        """Iterations of the whole run (None without a loader)."""
        if self.loader is None:
            return None
        return sum(s.iters for s in self.stages)

    @property
    def replanned(self) -> bool:
        """Whether whole epochs made a budget plan give stages that rounding
        left without an epoch one of their own (beyond the budget)."""
        return self.replanned_from is not None

    # the clock --------------------------------------------------------------
    def stage_at(self, epoch: int, iteration: int) -> int:
        """The index of the stage that trains ``iteration`` of ``epoch``
        (both counted from 0, ``iteration`` over the whole run)."""
        return self.clock.index_at(
            iteration if self.clock.by_iter else epoch)

    def state(self, index: int) -> StageState:
        return self.clock.state(index)

    def epoch_batches(self, epoch: int) -> int:
        """Iterations of ``epoch``: its stage's loader batch decides."""
        if self.clock.by_iter:
            return self.epoch_length
        stage = self.stages[self.clock.index_at(epoch)]
        return self.loader.epoch_length(stage.batch)

    def iters_before(self, epoch: int) -> int:
        """Iterations of the epochs before ``epoch``."""
        if self.clock.by_iter:
            return epoch * self.epoch_length
        return sum(self.epoch_batches(e) for e in range(epoch))

    # cost -------------------------------------------------------------------
    def compute_epochs(self) -> float:
        """Compute of the run in full-size epochs of the configured batch."""
        if self.loader is not None:
            return sum(s.iters * s.cost for s in self.stages) / \
                self.epoch_length
        return sum(s.epochs * pixel_cost(s.bandwidth, self.full_size) *
                   s.replay for s in self.stages)

    def predicted_speedup(self) -> float:
        """FLOPs speedup against ``baseline_epochs`` full-size epochs
        (``max_epochs`` for an EfficientTrain plan)."""
        return self.baseline_epochs / self.compute_epochs()

    def clock_stages(self) -> List[Tuple[int, float]]:
        """(iterations, weight) of each stage for
        :class:`~mmet.schedulers.ComputeClockScheduler`: the compute of an
        iteration on a budget, else the configured batches it trains."""
        if self.by_budget:
            return [(s.iters, s.cost) for s in self.stages]
        return [(s.iters, s.batch / self.loader.batch_size)
                for s in self.stages]

    @property
    def needs_clock(self) -> bool:
        """Whether ``param_scheduler`` must run on a clock of its own: on a
        budget (the compute clock), or where stages train other batches
        than configured (their iterations differ from the configured
        run's)."""
        return self.by_budget or any(k != 1 for k in self.factors)

    # text ---------------------------------------------------------------------
    def table(self) -> List[Dict]:
        """One row per stage, for reports (``tools/analyze_curriculum.py``).
        """
        rows = []
        start = 0.0
        for s in self.stages:
            cost = pixel_cost(s.bandwidth, self.full_size) * s.replay
            rows.append(dict(
                stage=s.index + 1, start_epoch=start,
                end_epoch=start + s.epochs, epochs=s.epochs,
                size=s.size, bandwidth=s.bandwidth, magnitude=s.magnitude,
                replay=s.replay, iters=s.iters, batch=s.batch,
                accumulation=s.accumulation, relative_cost=cost,
                compute=s.epochs * cost / self.max_epochs))
            start += s.epochs
        return rows

    def summary(self) -> str:
        """The plan in one paragraph, for the log."""
        parts = []
        for s in self.stages:
            size = describe(s.size) if s.size is not None else \
                f'{s.bandwidth:.3g}'
            text = f'B={size} m={s.magnitude:g} x{s.epochs:.3g}'
            if s.replay > 1:
                text += f' R={s.replay}'
            if s.batch is not None and self.loader and \
                    s.batch != self.loader.batch_size:
                text += f' batch {s.batch}/{s.accumulation}'
            parts.append(text)
        if self.by_budget:
            head = (f'budget E={self.budget:g} full-size epochs -> '
                    f'{self.max_epochs} real epochs')
        else:
            head = f'{self.max_epochs} epochs'
        if self.max_iters is not None:
            head += f', {self.max_iters} iterations'
        head += (f'; {self.compute_epochs():.4g} full-size epochs of compute,'
                 f' {self.predicted_speedup():.2f}x vs '
                 f'{self.baseline_epochs:g} epochs; stages switch at '
                 f'{self.switch}s')
        text = head + '. Stages (B, m, epochs): ' + ', '.join(parts)
        return ' '.join([text] + self.notes)

    def warnings(self) -> List[str]:
        """What the log must warn of: a re-plan beyond the budget, a budget
        above its baseline's compute."""
        out = []
        if self.replanned:
            before, compute = self.replanned_from, self.compute_epochs()
            out.append(
                f'whole epochs leave ET++ stages without an epoch '
                f'({before.epochs()} epochs per stage over '
                f'{before.max_epochs}), so every stage gets one: '
                f'{self.budget_plan.epochs()} over {self.max_epochs}, '
                f'{compute / self.budget - 1:+.1%} compute ({compute:.3g} '
                f'full-size epochs for a budget of {self.budget:g}). The '
                'batched path (DeviceAugmentPreprocessor) switches stages '
                'by iteration and needs no re-plan.')
        if self.by_budget and self.budget > self.baseline_epochs:
            speedup = self.baseline_epochs / self.budget
            out.append(
                f'speedup={speedup:.3g} is below 1: the budget '
                f'E={self.budget:g} full-size epochs costs more than the '
                f'baseline_epochs={self.baseline_epochs:g} it is measured '
                f'against ({1 / speedup:.3g}x its compute).')
        return out

    # building -----------------------------------------------------------------
    def _check_floor(self, curriculum: Curriculum) -> None:
        """Refuse a stage whose B is below :data:`~mmet.sizes.MIN_PIXELS`."""
        if self.full_size is None:
            return
        for i, s in enumerate(curriculum.stages):
            h, w = hw(at_bandwidth(s.bandwidth, self.full_size))
            full = min(hw(self.full_size))
            if s.bandwidth < 1 and min(h, w) < min(MIN_PIXELS, full):
                floor = MIN_PIXELS / full
                raise CurriculumError(
                    f'Stage {i + 1} has bandwidth {s.bandwidth:.4g}: '
                    f'B={describe((h, w))} px of the full size '
                    f'{describe(self.full_size)}, below the floor of '
                    f'{MIN_PIXELS} px, where the low-pass keeps too little '
                    'of an image to learn from. Give bandwidths of at least '
                    f'{floor:.3g} ({MIN_PIXELS} px).')

    def _check_replay_batches(self) -> None:
        if not self.replay or self.loader is None:
            return
        bs = self.loader.batch_size
        for i, r in enumerate(self.replay['times']):
            if bs % r:
                raise ValueError(
                    f'Stage {i + 1} replays R={r} times, so it loads batches '
                    f'of batch_size / R; batch_size={bs} is not divisible by '
                    'it.')

    def _micro_batches(self, curriculum: Curriculum, micro_batch,
                       cap: Optional[int]) -> Tuple[List[int], List[str]]:
        """The micro-batch factor of each stage, and notes for the log."""
        n = len(curriculum)
        if not micro_batch:
            return [1] * n, []
        if micro_batch != 'auto' and (isinstance(micro_batch, bool) or
                                      not isinstance(micro_batch, int) or
                                      micro_batch < 1):
            raise ValueError(
                f"micro_batch must be None, 'auto' or an integer >= 1, got "
                f'{micro_batch!r}.')
        if self.loader is None or self.full_size is None:
            return [1] * n, []
        a, b = self.loader.accumulation, self.loader.batch_size
        if micro_batch != 'auto' and a % micro_batch:
            raise ValueError(
                f'micro_batch={micro_batch} multiplies the batch of the '
                'stages below full size and divides their gradient '
                f'accumulation by {micro_batch}, but optim_wrapper.'
                f'accumulative_counts={a} is not divisible by it. Set '
                f'accumulative_counts={micro_batch * a} and divide '
                f'train_dataloader.batch_size by {micro_batch} to keep the '
                'global batch.')
        factors, notes = [], []
        for s in curriculum.stages:
            if s.bandwidth >= 1:
                factors.append(1)
                continue
            room = 1 / pixel_cost(s.bandwidth, self.full_size)
            if micro_batch == 'auto':
                k = max(d for d in range(1, a + 1) if a % d == 0 and
                        d <= room * MICRO_BATCH_SLACK and
                        (cap is None or b * d <= cap))
            else:
                k = micro_batch
            factors.append(k)
        below = [i for i, s in enumerate(curriculum.stages)
                 if s.bandwidth < 1]
        if below and all(factors[i] == 1 for i in below):
            why = (f'accumulative_counts={a}' if a == 1 else
                   f'no divisor of accumulative_counts={a} fits'
                   + (f' max_micro_batch={cap}' if cap else ''))
            notes.append(
                f'micro_batch: the stages below full size keep the '
                f'configured batch {b}: the global batch leaves no room '
                f'({why}). Train with a smaller train_dataloader.batch_size '
                'and a larger accumulative_counts (the same global batch) '
                'to let them run larger micro-batches.')
        return factors, notes

    def _stage_plans(self) -> List[StagePlan]:
        clock, loader = self.clock, self.loader
        ticks = clock.stage_ticks()
        out = []
        for i, s in enumerate(clock.curriculum.stages):
            r = self.replay['times'][i] if self.replay else 1
            k = self.factors[i]
            batch = acc = None
            if loader is not None:
                batch = loader.batch_size // r if r > 1 else \
                    loader.batch_size * k
                acc = loader.accumulation // k
            if clock.by_iter:
                iters = ticks[i]
                epochs = ticks[i] / clock.epoch_length
            elif self.switch == 'iteration':
                iters, epochs = None, s.share * self.max_epochs
            else:
                epochs = ticks[i]
                iters = ticks[i] * loader.epoch_length(batch) \
                    if loader is not None else None
            # an iteration trains R loaded batches (replay) or a k times
            # larger one
            trained = (batch * r / loader.batch_size) if loader else 1
            out.append(StagePlan(
                index=i, bandwidth=s.bandwidth, magnitude=s.magnitude,
                size=at_bandwidth(s.bandwidth, self.full_size)
                if self.full_size is not None else None,
                epochs=epochs, iters=iters, batch=batch,
                accumulation=acc if acc is not None else 1, replay=r,
                cost=trained * pixel_cost(s.bandwidth, self.full_size)))
        return out

    def _check_budget(self, param_schedulers) -> None:
        """Refuse a budget too small for the plan, with the smallest that
        works: one that leaves stages without an iteration (switching by
        iteration), one whose re-plan to whole epochs overruns it by more
        than :data:`MAX_REPLAN_OVERRUN`, or one in which a
        ``param_scheduler`` on the compute clock gets no iteration (e.g.
        the cosine after a warm-up longer than E)."""
        problems, floors = [], []
        if self.clock.by_iter:
            empty = [i + 1 for i, n in enumerate(self.clock.stage_ticks())
                     if not n]
            if empty:
                problems.append(
                    f'its {self.max_iters} iterations cannot give every '
                    f'stage one (stages {empty} of {len(self.stages)} get '
                    'none)')
                floors.append(self._budget_for_every_stage(
                    self.clock.epoch_length))
        elif self.replanned:
            overrun = self.compute_epochs() / self.budget - 1
            if overrun > MAX_REPLAN_OVERRUN:
                problems.append(
                    f'whole epochs give every stage one only by training '
                    f'{self.compute_epochs():.3g} full-size epochs of '
                    f'compute, {overrun:+.0%} over the budget (stages switch'
                    ' at whole epochs where a staged transform runs in the '
                    'data workers, or a stage loads another batch)')
                floors.append(self._budget_for_every_stage(1))
        L = self.epoch_length
        late = []
        for cfg in scheduler_configs(param_schedulers) if L else []:
            if 'end' in cfg:
                continue
            start, fits = _fits_budget(cfg, self.budget, L)
            if not fits:
                unit = 'epoch' if cfg.get('by_epoch', True) else 'iteration'
                late.append(f"{cfg.get('type')} (from {unit} "
                            f"{cfg.get('begin', 0)})")
                floors.append((math.floor(start) + 1) / L)
        if late:
            problems.append(
                'param_scheduler runs on the compute clock as a full-size run '
                f'of E epochs ({self.budget * L:g} iterations of {L}), in '
                f'which {" and ".join(late)} '
                f'{"gets" if len(late) == 1 else "get"} no iteration (a '
                'warm-up longer than E leaves none to what follows it)')
        if not problems:
            return
        smallest = _round_sig(max(floors), up=True)
        raise ValueError(
            f'The budget E={self.budget:g} full-size epochs (speedup '
            f'{self.baseline_epochs / self.budget:.4g} against '
            f'baseline_epochs={self.baseline_epochs:g}) is too small: '
            f'{"; ".join(problems)}. The smallest workable budget is '
            f'budget={smallest:g} (speedup='
            f'{_round_sig(self.baseline_epochs / smallest, up=False):g}).')

    def _budget_for_every_stage(self, ticks_per_epoch: int) -> float:
        """The smallest budget that works: whose iterations give every stage
        one (``ticks_per_epoch`` iterations an epoch), or, at whole epochs
        (``ticks_per_epoch=1``), whose re-plan overruns it by at most
        :data:`MAX_REPLAN_OVERRUN`."""
        base = self.base_curriculum
        times = self.replay['times'] if self.replay else None
        if ticks_per_epoch > 1:  # E / relative compute real epochs
            epochs = self.max_epochs
            while min(self.curriculum.epochs(epochs * ticks_per_epoch)) < 1:
                epochs += 1
            # Curriculum.plan rounds from half an epoch below
            return (epochs - 0.5) * base.relative_compute()
        budget = self.budget
        while base.plan(budget, times, every_stage=True).compute_epochs(
                self.full_size) > (1 + MAX_REPLAN_OVERRUN) * budget:
            budget *= 1.01
        return budget


def _fits_budget(cfg: dict, budget: float,
                 epoch_length: int) -> Tuple[float, bool]:
    """Where a scheduler without an ``end`` begins on the compute clock's
    full-size timeline (in iterations), and whether it fits in it: its end
    defaults to the end of the budget, which must come after its begin once
    converted as :class:`~mmet.schedulers.ComputeClockScheduler` and
    mmengine convert them."""
    begin = cfg.get('begin', 0)
    if not cfg.get('by_epoch', True):
        return begin, max(1, round(budget * epoch_length)) > begin
    if cfg.get('convert_to_iter_based', False):
        start = int(begin * epoch_length)
        return start, int(budget * epoch_length) > start
    return begin * epoch_length, budget > begin


def _round_sig(x: float, up: bool, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits, rounded up or down, so that a
    budget (or speedup) in a message is on the side that works."""
    scale = 10.0**(math.floor(math.log10(x)) - digits + 1)
    q = round(x / scale, 9)
    return (math.ceil(q) if up else math.floor(q)) * scale


# from a config ---------------------------------------------------------------
def plan_from_config(cfg, curriculum: Optional[Curriculum] = None,
                     loader: Optional[LoaderFacts] = None) -> TrainPlan:
    """The plan a config trains, as the loop (or the hook) makes it.

    Builds the train pipelines and a ``DeviceAugmentPreprocessor`` (not the
    datasets or the model) through :meth:`StageDriver.from_config` for the
    full size and where the staged transforms run. Without ``loader``, the
    plan has epochs but no iterations.

    Args:
        cfg (Config): A config with an ``EfficientTrainLoop`` as
            ``train_cfg`` or an ``EfficientTrainHook`` in ``custom_hooks``.
        curriculum (Curriculum, optional): Instead of the config's.
        loader (LoaderFacts, optional): The train loader's facts.

    Raises:
        ValueError: a config without a curriculum, or one whose settings
            the loop would refuse (the same message).
    """
    from .driver import StageDriver
    loop, hook = curriculum_loop(cfg), curriculum_hook(cfg)
    if loop is None and hook is None:
        raise ValueError(
            'The config has no curriculum: give train_cfg=dict(type='
            "'EfficientTrainLoop', ...) or custom_hooks=[dict(type="
            "'EfficientTrainHook')] (or train it with --curriculum).")
    settings = loop if loop is not None else hook
    if curriculum is None:
        default = 'efficienttrain' if loop is None or \
            loop.get('max_epochs') is not None else 'efficienttrain++'
        curriculum = resolve_curriculum(
            settings.get('curriculum') or default, settings.get('family'),
            backbone_type(cfg))
    driver = StageDriver.from_config(cfg, curriculum,
                                     settings.get('low_pass', 'fourier'))
    if loop is None:
        max_epochs = (cfg.get('train_cfg') or {}).get('max_epochs')
        if max_epochs is None:
            raise ValueError('train_cfg has no max_epochs; the curriculum '
                             'needs an epoch-based loop.')
        return TrainPlan(curriculum, full_size=driver.full_size,
                         max_epochs=max_epochs, loader=loader)
    return plan_from_loop_args(
        curriculum, driver, loader=loader,
        param_schedulers=cfg.get('param_scheduler'),
        **{k: v for k, v in loop.items()
           if k in ('max_epochs', 'budget', 'speedup', 'baseline_epochs',
                    'replay', 'micro_batch', 'max_micro_batch')})


def plan_from_loop_args(curriculum: Curriculum, driver, *,
                        loader: Optional[LoaderFacts] = None,
                        max_epochs: Optional[int] = None,
                        budget: Optional[float] = None,
                        speedup: Optional[float] = None,
                        baseline_epochs: float = BASELINE_EPOCHS,
                        replay=None, micro_batch=None,
                        max_micro_batch: Optional[int] = None,
                        param_schedulers=None) -> TrainPlan:
    """The plan of an ``EfficientTrainLoop``'s arguments, with the facts of
    a bound :class:`~mmet.driver.StageDriver`.

    Raises:
        ValueError: ``max_epochs`` with a budget, or neither; a budget that
            is no positive number.
    """
    if max_epochs is not None:
        if budget is not None or speedup is not None:
            raise ValueError(
                f'EfficientTrainLoop got max_epochs={max_epochs} and a '
                f'budget (budget={budget}, speedup={speedup}): an '
                'EfficientTrain run gives max_epochs, an EfficientTrain++ '
                'run a budget, from which it derives its epochs. Give one '
                '(use train_cfg=dict(_delete_=True, ...) when inheriting a '
                'config).')
        e = None
    else:
        e = check_budget_value(budget, speedup, baseline_epochs)
    return TrainPlan(
        curriculum, full_size=driver.full_size, max_epochs=max_epochs,
        budget=e, baseline_epochs=baseline_epochs,
        switch_by_iter=driver.preprocessor is not None and
        not driver.in_pipeline, loader=loader, micro_batch=micro_batch,
        max_micro_batch=max_micro_batch, replay=replay,
        param_schedulers=param_schedulers)
