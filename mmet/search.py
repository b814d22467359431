"""Sequential, compute-constrained search for a curriculum: the pure logic.

EfficientTrain++ designs its schedules with a "computational-constrained
sequential searching" algorithm that is not in the released code. This is our
reading of it (see docs/method.md §2, "EfficientTrain++"):

* Training is split into stages (five equal shares, as in EfficientTrain);
  the last stage always trains at full size.
* A *reference* proxy run trains every stage at full size and full
  RandAugment strength. Its validation score is the bar.
* Stage 1, 2, ... are searched one after another. Stage ``k`` tries each
  candidate bandwidth ``B`` (and RandAugment magnitude ``m``) with stages
  ``1..k-1`` fixed at their chosen values and the later stages at full size,
  and keeps the *cheapest* candidate whose proxy score stays within
  ``tolerance`` of the reference. Candidates are tried cheapest first, so a
  stage stops at the first bandwidth that passes: the same choice as trying
  all of them, for less search cost.
* The search stops when the schedule reaches the compute budget
  (``max_relative_compute``), when the search's own budget is spent
  (``max_trials``, ``max_search_cost``), or when a stage cannot be made
  cheaper.

Nothing here trains: :func:`sequential_search` calls an ``evaluate`` function
that the caller provides (``tools/search_curriculum.py`` runs a shortened
mmengine training). Plain Python only, so it is unit-testable without torch.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .curriculum import MAX_MAGNITUDE, Curriculum, CurriculumError, Stage
from .sizes import REFERENCE_SIZE, Size, at_bandwidth, pixel_cost


#: Candidate bandwidths of the official code, in pixels of a 224 px input.
DEFAULT_BANDWIDTHS_224: Tuple[int, ...] = (64, 96, 128, 160, 192, 224)

# why the search ended
STOP_DONE = 'searched every stage'
STOP_BUDGET = 'reached the compute budget'
STOP_TRIALS = 'reached --max-trials'
STOP_SEARCH_COST = 'reached --max-search-cost'
STOP_NO_GAIN = 'a stage found no cheaper candidate within tolerance'


class SearchError(ValueError):
    """Search settings that make no sense; the message says what to change."""


def _check_size(full_size: Size) -> Size:
    if isinstance(full_size, bool):
        raise SearchError(f'Bad full size {full_size!r}.')
    if isinstance(full_size, int):
        ok = full_size >= 2
    else:
        full_size = tuple(full_size)
        ok = len(full_size) == 2 and all(
            isinstance(v, int) and v >= 2 for v in full_size)
    if not ok:
        raise SearchError(
            f'The full input size must be an int or (h, w) of at least 2 px, '
            f'got {full_size!r} (the FourierCrop size of the train '
            'pipeline).')
    return full_size


def candidate_bandwidths(pixels: Sequence[float] = DEFAULT_BANDWIDTHS_224,
                         full_size: Size = REFERENCE_SIZE,
                         reference_size: float = REFERENCE_SIZE
                         ) -> List[float]:
    """Relative bandwidths of candidate sizes, scaled to ``full_size``.

    Each candidate ``p`` (pixels of a ``reference_size`` input, as the
    paper's 64...224 of 224) is scaled to ``p / reference_size`` of
    ``full_size`` and rounded to even pixels as FourierCrop does. Candidates
    that round to the same pixel size are merged, so 28 px Fashion-MNIST
    gets 8, 12, 16, 20, 24, 28 from the default set.

    Returns:
        list[float]: Ascending bandwidths in (0, 1]. For a square size each
        is exactly ``pixels / full_size``, so it maps back to the same size.

    Raises:
        SearchError: if no candidate is given or one lies outside
            (0, reference_size].
    """
    full_size = _check_size(full_size)
    if not pixels:
        raise SearchError(
            'No candidate bandwidths: give at least one, e.g. '
            f'--bandwidths {" ".join(map(str, DEFAULT_BANDWIDTHS_224))}.')
    if not reference_size > 0:
        raise SearchError(
            f'reference_size must be positive, got {reference_size!r}.')
    out: Dict[Size, float] = {}
    for p in pixels:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or \
                not 0 < p <= reference_size:
            raise SearchError(
                f'Candidate bandwidth {p!r} is not in (0, {reference_size:g}]'
                f'; give sizes in pixels of a {reference_size:g} px input.')
        rel = min(1.0, p / reference_size)
        px = at_bandwidth(rel, full_size)
        if isinstance(full_size, int):
            rel = 1.0 if rel >= 1 else px / full_size
            # an even size that rounds up to the full size is the full size
            rel = min(rel, 1.0)
            px = at_bandwidth(rel, full_size)
        out.setdefault(px, rel)
    return sorted(set(out.values()))


def equal_shares(num_stages: int) -> List[float]:
    """``num_stages`` equal shares of the training epochs."""
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or \
            num_stages < 1:
        raise SearchError(
            f'--stages must be a positive int, got {num_stages!r}.')
    return [1.0 / num_stages] * num_stages


def default_magnitudes(num_stages: int,
                       final_magnitude: float) -> List[List[float]]:
    """Per searched stage: the EfficientTrain ramp value and no ramp.

    EfficientTrain ramps m as 1, 3, 5, 7, 9 over five stages, i.e. stage
    ``k`` (0-based) of ``n`` gets ``final * (2k + 1) / (2n - 1)``. Each
    searched stage (all but the last) tries that value, rounded, and the
    final magnitude itself, so the search may also keep full augmentation.
    """
    _check_magnitude(final_magnitude, 'The final magnitude')
    n = num_stages
    out = []
    for k in range(n - 1):
        ramp = float(round(final_magnitude * (2 * k + 1) / (2 * n - 1)))
        out.append(sorted({ramp, float(final_magnitude)}))
    return out


def _check_magnitude(m: float, what: str = 'Magnitude') -> None:
    if isinstance(m, bool) or not isinstance(m, (int, float)) or \
            not 0 <= m <= MAX_MAGNITUDE:
        raise SearchError(
            f'{what} {m!r} is not in [0, {MAX_MAGNITUDE:g}] '
            "(mmpretrain's RandAugment scale).")


def schedule_compute(schedule: Sequence[Stage], full_size: Size) -> float:
    """Relative training compute of a schedule: sum of share x pixel ratio.

    Exact shares, not whole epochs; see
    :meth:`~mmet.curriculum.Curriculum.relative_compute` for the epoch-rounded
    figure of a given ``max_epochs``.
    """
    return sum(s.share * pixel_cost(s.bandwidth, full_size) for s in schedule)


@dataclass(frozen=True)
class SearchSpace:
    """What the search may choose from.

    Args:
        shares (Sequence[float]): Epoch share of each stage; they sum to 1.
            The last stage always trains at full size.
        bandwidths (Sequence[float]): Candidate relative bandwidths in
            (0, 1], e.g. from :func:`candidate_bandwidths`.
        magnitudes (Sequence[Sequence[float]]): Candidate RandAugment
            magnitudes, one list per searched stage (all but the last), or a
            single list for all of them.
        final_magnitude (float): RandAugment magnitude of the reference, of
            the last stage and of stages left at full size.
        full_size (int | tuple[int, int]): The full input size (FourierCrop
            size), to round bandwidths to pixels and to cost them.
    """
    shares: Tuple[float, ...]
    bandwidths: Tuple[float, ...]
    magnitudes: Tuple[Tuple[float, ...], ...]
    final_magnitude: float
    full_size: Size

    def __init__(self, shares, bandwidths, magnitudes, final_magnitude,
                 full_size):
        set_ = object.__setattr__  # frozen: validate, then store
        full_size = _check_size(full_size)
        shares = tuple(float(s) for s in shares)
        if len(shares) < 2:
            raise SearchError(
                f'The search needs at least 2 stages (got {len(shares)}): the '
                'last stage always trains at full size, so one stage leaves '
                'nothing to search.')
        if any(not s > 0 for s in shares) or \
                abs(sum(shares) - 1) > 1e-6:
            raise SearchError(
                f'Stage shares {list(shares)} must be positive and sum to 1.')
        bandwidths = tuple(sorted({float(b) for b in bandwidths}))
        if not bandwidths:
            raise SearchError('No candidate bandwidths to search.')
        if any(not 0 < b <= 1 for b in bandwidths):
            raise SearchError(
                f'Candidate bandwidths {list(bandwidths)} must lie in (0, 1] '
                '(relative to the full size).')
        if not any(pixel_cost(b, full_size) < 1 for b in bandwidths):
            raise SearchError(
                f'Every candidate bandwidth {list(bandwidths)} is full size '
                f'at {full_size} px, so no stage can get cheaper; give '
                'smaller candidates.')
        _check_magnitude(final_magnitude, 'The final magnitude')
        searched = len(shares) - 1
        mags = [list(m) for m in magnitudes] if magnitudes and all(
            isinstance(m, (list, tuple)) for m in magnitudes) else \
            [list(magnitudes)] * searched
        if len(mags) != searched:
            raise SearchError(
                f'Give one magnitude list per searched stage ({searched}), '
                f'or one list for all; got {len(mags)}.')
        for i, ms in enumerate(mags):
            if not ms:
                raise SearchError(
                    f'Stage {i + 1} has no candidate magnitude; give at '
                    'least one value on 0-10, e.g. --magnitudes 1 5 9.')
            for m in ms:
                _check_magnitude(m, f'Stage {i + 1} magnitude')
        set_(self, 'shares', shares)
        set_(self, 'bandwidths', bandwidths)
        set_(self, 'magnitudes',
             tuple(tuple(sorted({float(m) for m in ms})) for ms in mags))
        set_(self, 'final_magnitude', float(final_magnitude))
        set_(self, 'full_size', full_size)

    @property
    def num_stages(self) -> int:
        return len(self.shares)

    def reference(self) -> Tuple[Stage, ...]:
        """Every stage at full size and final magnitude."""
        return tuple(Stage(share=s, bandwidth=1.0,
                           magnitude=self.final_magnitude)
                     for s in self.shares)

    def min_compute(self) -> float:
        """The cheapest schedule this space can express."""
        low = pixel_cost(self.bandwidths[0], self.full_size)
        return sum(self.shares[:-1]) * low + self.shares[-1]

    def max_trials(self) -> int:
        """Trials of an exhaustive search (the reference included)."""
        return 1 + len(self.bandwidths) * sum(len(m) for m in self.magnitudes)


@dataclass(frozen=True)
class Budget:
    """Limits of the search.

    Args:
        max_relative_compute (float, optional): Stop once the searched
            schedule costs at most this much of the full-size run
            (``1 / target_speedup``).
        max_trials (int, optional): At most this many proxy trainings, the
            reference included. Trials whose schedule was already evaluated
            are free and not counted.
        max_search_cost (float, optional): At most this much proxy compute,
            in full-size proxy runs (the reference costs 1).
    """
    max_relative_compute: Optional[float] = None
    max_trials: Optional[int] = None
    max_search_cost: Optional[float] = None

    def __post_init__(self):
        c = self.max_relative_compute
        if c is not None and not (isinstance(c, (int, float)) and 0 < c < 1):
            raise SearchError(
                f'The compute budget must lie in (0, 1) of the full-size run '
                f'(target speedup > 1), got {c!r}.')
        t = self.max_trials
        if t is not None and (isinstance(t, bool) or not isinstance(t, int)
                              or t < 1):
            raise SearchError(
                f'--max-trials must be a positive int, got {t!r}; the '
                'reference run alone is one trial.')
        s = self.max_search_cost
        if s is not None and not (isinstance(s, (int, float)) and s >= 1):
            raise SearchError(
                f'--max-search-cost must be >= 1 full-size proxy run (the '
                f'reference alone costs 1), got {s!r}.')

    @classmethod
    def from_speedup(cls, target_speedup: Optional[float] = None,
                     max_relative_compute: Optional[float] = None,
                     **kwargs) -> 'Budget':
        """Build from a target speedup or a relative compute (not both)."""
        if target_speedup is not None and max_relative_compute is not None:
            raise SearchError(
                'Give either --target-speedup or --max-relative-compute, '
                'not both.')
        if target_speedup is not None:
            if isinstance(target_speedup, bool) or not isinstance(
                    target_speedup, (int, float)) or not target_speedup > 1:
                raise SearchError(
                    f'--target-speedup must be > 1, got {target_speedup!r}.')
            max_relative_compute = 1.0 / target_speedup
        return cls(max_relative_compute=max_relative_compute, **kwargs)


@dataclass
class Trial:
    """One evaluated schedule.

    ``stage`` is 0 for the reference and ``k >= 1`` for a candidate of
    stage ``k`` (1-based); ``bandwidth`` / ``magnitude`` are that
    candidate's. ``reused`` marks a schedule evaluated before in this search
    (no new training). ``info`` holds what ``evaluate`` returned besides the
    score (wall time, cache state).
    """
    index: int
    stage: int
    bandwidth: float
    magnitude: float
    schedule: Tuple[Stage, ...]
    relative_compute: float
    score: float
    passed: Optional[bool] = None
    chosen: bool = False
    reused: bool = False
    info: Dict = field(default_factory=dict)

    def to_dict(self, full_size: Size) -> Dict:
        size = at_bandwidth(self.bandwidth, full_size)
        return dict(
            index=self.index, stage=self.stage, size=size,
            bandwidth=self.bandwidth, magnitude=self.magnitude,
            relative_compute=self.relative_compute, score=self.score,
            passed=self.passed, chosen=self.chosen, reused=self.reused,
            schedule=schedule_to_list(self.schedule), **self.info)


@dataclass
class SearchResult:
    """The searched schedule, every trial, and why the search stopped."""
    schedule: Tuple[Stage, ...]
    reference_score: float
    trials: List[Trial]
    stop_reason: str
    stopped_at_stage: Optional[int]
    relative_compute: float
    budget_met: Optional[bool]
    trials_run: int
    search_cost: float
    messages: List[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return 1.0 / self.relative_compute

    def curriculum(self) -> Curriculum:
        """The schedule as a validated :class:`Curriculum`."""
        return Curriculum(self.schedule)


def schedule_to_list(schedule: Sequence[Stage]) -> List[Dict[str, float]]:
    """Stage dicts as :class:`~mmet.hooks.EfficientTrainHook` takes them."""
    return [dict(share=s.share, bandwidth=s.bandwidth, magnitude=s.magnitude)
            for s in schedule]


def passes(score: float, reference: float, tolerance: float) -> bool:
    """Whether ``score`` is within ``tolerance`` below the reference."""
    return score >= reference - tolerance - 1e-12


def choose(trials: Sequence[Trial], reference: float,
           tolerance: float) -> Optional[Trial]:
    """The cheapest trial within ``tolerance`` of the reference score.

    Ties in compute (the same B with different m) go to the higher score,
    then to the weaker augmentation. ``None`` if no trial passes.
    """
    _check_tolerance(tolerance)
    ok = [t for t in trials if passes(t.score, reference, tolerance)]
    if not ok:
        return None
    return min(ok, key=lambda t: (round(t.relative_compute, 12), -t.score,
                                  t.magnitude))


def _check_tolerance(tolerance: float) -> None:
    if isinstance(tolerance, bool) or not isinstance(
            tolerance, (int, float)) or not tolerance >= 0 or \
            math.isinf(tolerance):
        raise SearchError(
            f'--tolerance must be a finite number >= 0 (in the metric\'s '
            f'units, e.g. 0.5 top-1 points), got {tolerance!r}.')


def check_budget(space: SearchSpace, budget: Budget) -> None:
    """Refuse a compute budget that no schedule of ``space`` can meet."""
    if budget.max_relative_compute is not None and \
            budget.max_relative_compute < space.min_compute() - 1e-12:
        raise SearchError(
            f'The compute budget {budget.max_relative_compute:.4g} '
            f'({1 / budget.max_relative_compute:.2f}x) is out of reach: the '
            f'cheapest schedule these candidates allow costs '
            f'{space.min_compute():.4g} ({1 / space.min_compute():.2f}x). '
            'Lower the target speedup, add smaller bandwidths, or use more '
            'stages.')


Evaluate = Callable[[Tuple[Stage, ...]], Union[float, Tuple[float, Dict]]]


def sequential_search(space: SearchSpace,
                      evaluate: Evaluate,
                      tolerance: float,
                      budget: Budget = Budget(),
                      log: Optional[Callable[[str], None]] = None
                      ) -> SearchResult:
    """Search the stages one at a time; see the module docstring.

    Args:
        space (SearchSpace): Stages and candidates.
        evaluate (callable): Takes a schedule (tuple of :class:`Stage`) and
            returns its proxy score (higher is better), or ``(score, info)``
            with a dict of extra facts to keep with the trial. It is called
            once per distinct schedule.
        tolerance (float): How far below the reference score a candidate
            may fall, in the score's units.
        budget (Budget): When to stop.
        log (callable, optional): Receives one line per event.

    Returns:
        SearchResult: The schedule (a valid curriculum) and every trial.
    """
    _check_tolerance(tolerance)
    check_budget(space, budget)
    say = log or (lambda msg: None)
    full = space.full_size
    trials: List[Trial] = []
    seen: Dict[Tuple[Stage, ...], Trial] = {}
    counters = dict(run=0, cost=0.0)

    def out_of_budget(schedule) -> Optional[str]:
        if schedule in seen:
            return None  # free: no new training
        if budget.max_trials is not None and \
                counters['run'] + 1 > budget.max_trials:
            return STOP_TRIALS
        cost = schedule_compute(schedule, full)
        if budget.max_search_cost is not None and \
                counters['cost'] + cost > budget.max_search_cost + 1e-9:
            return STOP_SEARCH_COST
        return None

    def run(stage: int, index: int, schedule) -> Trial:
        s = schedule[index]
        prev = seen.get(schedule)
        if prev is not None:
            score, info, reused = prev.score, dict(prev.info), True
        else:
            out = evaluate(schedule)
            score, info = out if isinstance(out, tuple) else (out, {})
            score, reused = float(score), False
            counters['run'] += 1
            counters['cost'] += schedule_compute(schedule, full)
        t = Trial(index=len(trials), stage=stage, bandwidth=s.bandwidth,
                  magnitude=s.magnitude, schedule=schedule,
                  relative_compute=schedule_compute(schedule, full),
                  score=score, reused=reused, info=dict(info))
        trials.append(t)
        seen.setdefault(schedule, t)
        return t

    current = list(space.reference())
    if out_of_budget(tuple(current)):
        raise SearchError('The search budget does not cover the reference '
                          'run.')
    ref = run(0, space.num_stages - 1, tuple(current))
    ref.passed, ref.chosen = True, True
    say(f'reference (all stages full size, m={space.final_magnitude:g}): '
        f'score {ref.score:.4g}')

    stop, stop_stage, messages = STOP_DONE, None, []
    for k in range(space.num_stages - 1):
        low = current[k - 1].bandwidth if k else 0.0
        # cheapest first; B below the previous stage would break the
        # curriculum's non-decreasing bandwidths
        groups = [b for b in space.bandwidths if b >= low]
        chosen, halted = None, None
        for b in groups:
            group = []
            for m in space.magnitudes[k]:
                schedule = list(current)
                schedule[k] = Stage(current[k].share, b, m)
                schedule = tuple(schedule)
                halted = out_of_budget(schedule)
                if halted:
                    break
                t = run(k + 1, k, schedule)
                t.passed = passes(t.score, ref.score, tolerance)
                group.append(t)
                say(f'stage {k + 1}: B={at_bandwidth(b, full)} '
                    f'm={m:g} compute {t.relative_compute:.3f} score '
                    f'{t.score:.4g} ({"pass" if t.passed else "fail"}'
                    f'{", reused" if t.reused else ""})')
            chosen = choose(group, ref.score, tolerance)
            if chosen is not None or halted:
                break
        if chosen is not None:
            chosen.chosen = True
            current[k] = chosen.schedule[k]
            say(f'stage {k + 1}: chose B='
                f'{at_bandwidth(chosen.bandwidth, full)} '
                f'm={chosen.magnitude:g}')
        if halted:
            stop, stop_stage = halted, k + 1
            messages.append(
                f'Stopped in stage {k + 1}: {halted}; stages '
                f'{k + 1 + (chosen is not None)}..{space.num_stages} stay at '
                'full size.')
            break
        if chosen is None or pixel_cost(current[k].bandwidth, full) >= 1:
            # full size here forces full size in all later stages
            stop, stop_stage = STOP_NO_GAIN, k + 1
            messages.append(
                f'Stage {k + 1} found no candidate cheaper than full size '
                f'within tolerance {tolerance:g}; stages {k + 1}.. '
                f'{space.num_stages} stay at full size.')
            break
        compute = schedule_compute(current, full)
        if budget.max_relative_compute is not None and \
                compute <= budget.max_relative_compute + 1e-12:
            stop, stop_stage = STOP_BUDGET, k + 1
            if k + 2 < space.num_stages:
                messages.append(
                    f'The schedule reached the compute budget '
                    f'{budget.max_relative_compute:.4g} after stage {k + 1}; '
                    f'stages {k + 2}..{space.num_stages} stay at full size.')
            break

    schedule = tuple(current)
    compute = schedule_compute(schedule, full)
    met = None
    if budget.max_relative_compute is not None:
        met = compute <= budget.max_relative_compute + 1e-12
        if not met:
            messages.append(
                f'The compute budget {budget.max_relative_compute:.4g} '
                f'({1 / budget.max_relative_compute:.2f}x) was NOT met within '
                f'tolerance {tolerance:g}: the best schedule found costs '
                f'{compute:.4g} ({1 / compute:.2f}x). Raise --tolerance, '
                'lower the target, or use longer proxy runs.')
    try:
        Curriculum(schedule)
    except CurriculumError as e:  # a bug here, not a user error
        raise AssertionError(f'search produced an invalid curriculum: {e}')
    for m in messages:
        say(m)
    return SearchResult(
        schedule=schedule, reference_score=ref.score, trials=trials,
        stop_reason=stop, stopped_at_stage=stop_stage,
        relative_compute=compute, budget_met=met,
        trials_run=counters['run'], search_cost=counters['cost'],
        messages=messages)
