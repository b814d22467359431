"""Whether a resumed run continues the plan its checkpoint trained.

A checkpoint records the plan it trained (:func:`plan_record`, under
``meta['efficienttrain']``): the curriculum, ``max_epochs``,
``epoch_length`` where stages switch by iteration, the stage ``edges``, the
epochs or iterations ``trained`` and the full size. :func:`check_resume`
compares it with the plan of the resumed run. A resume that would change
the stage of an epoch (or iteration) already trained, or move B or m back
from the last trained stage, is refused, naming the cause and the fixes;
so is resuming a checkpoint trained without a curriculum (at full size)
into a stage below it. ``allow_curriculum_change=True`` continues on the
new plan with a warning; ``'extend'`` re-plans without going back
(:meth:`~mmet.plan.StageClock.extend_from`) and logs the new spans.

Only a resume is checked: loading weights (``load_from`` without
``resume``, ``tools/test.py``) starts a fresh plan.

A resumed run also continues the trainer's random state
(:func:`random_state`, :func:`restore_random_state`): mmengine reseeds at a
resume, so Mixup, CutMix, dropout and the batched augmentation would draw
otherwise than the uninterrupted run. The data workers reseed per epoch
(:class:`~mmet.driver.StagedPipeline`).
"""
import math
import random
from typing import Callable, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch

from .curriculum import Curriculum
from .plan import StageClock


class ResumeChange(NamedTuple):
    """A resume that moves the plan.

    Attributes:
        cause (str): What moves, in words.
        fix (str): The first fix: resume as the run was.
        floor (int, optional): The stage ``'extend'`` does not go below;
            None where none can keep B and m.
        past (list[int], optional): The edges trained so far (None: the
            resumed plan's).
    """
    cause: str
    fix: str
    floor: Optional[int]
    past: Optional[List[int]]


def plan_record(clock: StageClock, trained: int) -> dict:
    """The record of the plan a checkpoint trained, in plain types (so that
    ``weights_only`` loading reads it).

    Args:
        clock (StageClock): The stage clock of the run.
        trained (int): Epochs (or, by iteration, iterations) trained.
    """
    full = clock.full_size
    return dict(
        curriculum=clock.curriculum.to_list(), max_epochs=clock.max_epochs,
        epoch_length=clock.epoch_length, edges=list(clock.edges),
        trained=trained,
        full_size=list(full) if isinstance(full, tuple) else full)


def check_resume(clock: StageClock, record: Optional[dict], tick: int,
                 mode: Union[bool, str] = False,
                 info: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print) -> None:
    """Hold a resume at ``tick`` to the plan of its checkpoint.

    Args:
        clock (StageClock): The resumed run's plan; re-planned in
            place where the record carries a re-plan or ``mode`` is
            ``'extend'``.
        record (dict, optional): The checkpoint's ``plan_record``; None for
            a checkpoint trained without the curriculum.
        tick (int): The epoch (or, by iteration, iteration) it resumes at.
        mode (bool | str): ``allow_curriculum_change``: False refuses, True
            warns, ``'extend'`` re-plans without going back.
        info, warn (Callable): Where the messages go.

    Raises:
        RuntimeError: a resume that moves the plan, with ``mode`` False (or
            ``'extend'`` where no stage keeps B and m).
    """
    change = _baseline_change(clock, tick) if record is None else \
        _recorded_change(clock, record, tick, info)
    if change is None:
        return
    when = _ticks(tick, tick + 1, clock.by_iter)
    if mode is True:
        warn(f'Resuming although {change.cause}; allowed by '
             'allow_curriculum_change=True: the new plan goes on from '
             f'{when}.')
        return
    if mode == 'extend' and change.floor is not None:
        clock.extend_from(tick, change.floor, change.past)
        spans = [clock.state(i).describe()
                 for i in range(len(clock.curriculum))
                 if clock.edges[i + 1] > max(clock.edges[i], tick)]
        warn(f'Resuming although {change.cause}; allow_curriculum_change='
             f"'extend' re-plans from {when} without going back: "
             f"{', '.join(spans)}.")
        return
    fixes = [change.fix]
    if change.floor is not None:
        unit = 'iterations' if clock.by_iter else 'epochs'
        fixes.append(
            "set allow_curriculum_change='extend' on EfficientTrainHook to "
            f're-plan the remaining {unit} without going back (each trains '
            'the later of its new stage and '
            f'{clock.state(change.floor).describe(span=False)})')
    fixes.append('set allow_curriculum_change=True to continue on the new '
                 'plan as it is')
    raise RuntimeError(f'Cannot resume: {change.cause}. ' +
                       ', or '.join(fixes) + '.')


def _baseline_change(plan: StageClock,
                     tick: int) -> Optional[ResumeChange]:
    """A checkpoint without a record: trained at full size, final m."""
    final = plan.curriculum.stages[-1].magnitude
    now = plan.state(plan.index_at(tick))
    if now.bandwidth >= 1 and now.magnitude >= final:
        return None
    # a checkpoint by iteration in the first epoch trained part of it
    trained = _ticks(0, max(tick, 1), plan.by_iter)
    return ResumeChange(
        cause=f'the checkpoint has no EfficientTrain record: it trained '
        f'{trained} at full size without a curriculum, and '
        f'{_ticks(tick, tick + 1, plan.by_iter)} would train '
        f'{now.describe(span=False)}',
        fix='Resume it without EfficientTrainHook (the full-size run it was)',
        floor=_not_below(plan.curriculum, 1.0, final),
        past=[0] * len(plan.edges))


def _recorded_change(plan: StageClock, record: dict, tick: int,
                     info: Callable[[str], None]) -> Optional[ResumeChange]:
    """Compare the recorded plan with ``plan``; None if they agree (then
    ``plan`` continues the recorded one, re-plans included)."""
    before = Curriculum(record['curriculum'])
    known = 'edges' in record
    if known:
        length = record['epoch_length']
        edges = _retick(record['edges'], length, plan.epoch_length)
        trained = max(tick, _retick([record['trained']], length,
                                    plan.epoch_length)[0])
        full = record['full_size']
    else:
        info('The checkpoint does not record its stage boundaries (saved by '
             'an older mmet): only its curriculum is checked, and its epochs '
             'are taken to have trained the current plan.')
        edges, trained, full = None, tick, plan.full_size
    history = StageClock(
        before, plan.max_epochs,
        tuple(full) if isinstance(full, list) else full, plan.epoch_length,
        edges)
    last, now = history.index_at(max(trained - 1, 0)), plan.index_at(tick)
    was, will = history.state(last), plan.state(now)
    back = f'{_ticks(tick, tick + 1, plan.by_iter)} would go back to ' \
        f'{will.describe(span=False)} after {was.describe(span=False)}'

    if before != plan.curriculum:
        cause = 'the checkpoint was trained with a different curriculum: ' \
            f'{_describe_change(before, plan.curriculum)}'
        if will.bandwidth < was.bandwidth or will.magnitude < was.magnitude:
            cause += f', and {back}'
        floor = _not_below(plan.curriculum, was.bandwidth, was.magnitude)
        if floor is None:
            cause += ' (no stage of the new curriculum keeps B and m at ' \
                f'{was.describe(span=False)} or above)'
        return ResumeChange(cause, 'Resume with the curriculum you started '
                            'with', floor, None)

    settings, fix = _settings_change(record, plan) if known else ('', '')
    if not settings:
        plan.extend_from(tick, last, history.edges)
        return None
    changed = _differences(history, plan, trained)
    if not changed and now >= last:
        return None
    parts = []
    if changed:
        a, b, old, new = changed[-1]
        parts.append(
            f'{_ticks(changed[0][0], b, plan.by_iter)}, already trained, '
            f'would change stage ({_ticks(a, b, plan.by_iter)} trained '
            f'{history.state(old).describe(span=False)}, now '
            f'{plan.state(new).describe(span=False)})')
    if now < last:
        parts.append(back)
    return ResumeChange(f'{settings}: ' + ', and '.join(parts), fix, last,
                        history.edges)


def _ticks(a: int, b: int, by_iter: bool) -> str:
    """Epochs (or iterations) ``[a, b)``, from 1: ``'epoch 4'``,
    ``'epochs 2-4'``, ``'iterations 121-160'``."""
    unit = 'iteration' if by_iter else 'epoch'
    return f'{unit} {b}' if b - a == 1 else f'{unit}s {a + 1}-{b}'


def _retick(ticks: List[int], before: Optional[int],
            now: Optional[int]) -> List[int]:
    """Ticks of one clock on another; a clock is its iterations per epoch
    (None: it counts epochs)."""
    if before == now:
        return list(ticks)
    scale = (now or 1) / (before or 1)
    return [int(math.floor(t * scale + 0.5)) for t in ticks]


def _settings_change(record: dict, plan: StageClock) -> Tuple[str, str]:
    """What moved the stage boundaries since ``record``, and the fix; empty
    strings if nothing did."""
    changes, fixes = [], []
    if record['max_epochs'] != plan.max_epochs:
        changes.append(f"max_epochs was {record['max_epochs']}, now "
                       f'{plan.max_epochs}')
        fixes.append(f"max_epochs={record['max_epochs']}")
    before, now = record['epoch_length'], plan.epoch_length
    if before != now:
        changes.append(f'stages switched {_clock(before)} before, '
                       f'{_clock(now)} now')
        fixes.append('the train loader and pipeline the run trained with')
    return ' and '.join(changes), 'Resume with ' + ' and '.join(fixes)


def _clock(epoch_length: Optional[int]) -> str:
    return f'by iteration ({epoch_length} an epoch)' if epoch_length else \
        'by epoch'


def _differences(before: StageClock, after: StageClock,
                 end: int) -> List[Tuple[int, int, int, int]]:
    """``(a, b, index before, index after)`` of each span ``[a, b)`` of the
    ticks ``[0, end)`` whose stage differs."""
    cuts = sorted({0, end} | {e for e in before.edges + after.edges
                              if 0 < e < end})
    spans = [(a, b, before.index_at(a), after.index_at(a))
             for a, b in zip(cuts, cuts[1:])]
    return [span for span in spans if span[2] != span[3]]


def _not_below(curriculum: Curriculum, bandwidth: float,
               magnitude: float) -> Optional[int]:
    """The first stage from which on every stage has at least this B and
    m; None if the last one has not."""
    stages = curriculum.stages
    return next((i for i in range(len(stages))
                 if all(s.bandwidth >= bandwidth and s.magnitude >= magnitude
                        for s in stages[i:])), None)


def _describe_change(old: Curriculum, new: Curriculum) -> str:
    """A short, human-readable difference between two curricula."""
    if len(old) != len(new):
        return f'{len(old)} stages before, {len(new)} now ({new!r})'
    diffs = []
    for i, (a, b) in enumerate(zip(old.stages, new.stages)):
        for field in ('share', 'bandwidth', 'magnitude'):
            x, y = getattr(a, field), getattr(b, field)
            if x != y:
                diffs.append(f'stage {i + 1} {field} {x:.4g} -> {y:.4g}')
    return ', '.join(diffs)


def random_state() -> dict:
    """The trainer's random state (``random``, numpy, torch and CUDA), in
    types that ``weights_only`` loading reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(
        python=random.getstate(), torch=torch.get_rng_state(),
        numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss),
                   gauss=float(gauss)))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: Optional[dict]) -> None:
    """Restore :func:`random_state` (a checkpoint of an older mmet has none:
    nothing changes)."""
    if not state:
        return
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state['torch'].cpu())
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32),
                         n['pos'], n['has_gauss'], n['gauss']))
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available() and \
            len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
