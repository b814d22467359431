"""The EfficientTrain curriculum as pure data and arithmetic.

A curriculum is an ordered list of :class:`Stage`. Each stage trains for a
share of the epochs at a bandwidth ``B`` (given relative to the final input
size, so one preset serves 224 px ImageNet and 28 px Fashion-MNIST alike) and
a RandAugment magnitude ``m`` on mmpretrain's 0-10 scale.

Everything here is plain Python: no torch, no mmengine. The hook in
:mod:`mmet.hooks` is a thin wrapper that applies :meth:`Curriculum.at` to the
runner's data pipeline once per epoch.
"""
import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple, Union

# mmpretrain's RandAugment scale: magnitude_level in [0, total_level=10].
MAX_MAGNITUDE = 10.0

_SHARE_TOLERANCE = 1e-6


class CurriculumError(ValueError):
    """A curriculum that makes no sense; the message says what to change."""


@dataclass(frozen=True)
class Stage:
    """One stage of a curriculum.

    Args:
        share (float): Fraction of the training epochs spent in this stage.
        bandwidth (float): Fourier-crop bandwidth relative to the final input
            size, in (0, 1]. ``160 / 224`` keeps the central 160x160 block of
            a 224x224 spectrum.
        magnitude (float): RandAugment magnitude level, 0-10. ``0`` disables
            RandAugment in that stage.
    """
    share: float
    bandwidth: float
    magnitude: float


@dataclass(frozen=True)
class StageState:
    """What the curriculum asks for at one epoch.

    ``size`` is the bandwidth in pixels for a given final size: an int for a
    square final size, else ``(h, w)``.
    """
    index: int
    num_stages: int
    size: Union[int, Tuple[int, int]]
    bandwidth: float
    magnitude: float


def _even(x: float) -> int:
    """Round to the nearest even number of pixels (at least 2)."""
    return max(2, 2 * int(math.floor(x / 2 + 0.5)))


def bandwidth_pixels(bandwidth: float,
                     full_size: Union[int, Sequence[int]]
                     ) -> Union[int, Tuple[int, int]]:
    """Bandwidth in pixels for a final input size, rounded to even.

    The full-size stage (``bandwidth == 1``) returns ``full_size`` unchanged,
    even if it is odd.
    """
    if isinstance(full_size, int):
        return full_size if bandwidth >= 1 else _even(bandwidth * full_size)
    h, w = full_size
    if bandwidth >= 1:
        return (h, w)
    return (_even(bandwidth * h), _even(bandwidth * w))


class Curriculum:
    """An ordered, validated list of stages.

    Args:
        stages (Sequence[Stage | dict]): The stages in training order. Dicts
            take the :class:`Stage` fields as keys.

    Raises:
        CurriculumError: if the stages do not form a usable curriculum.
    """

    def __init__(self, stages: Sequence[Union[Stage, Dict]]):
        if not stages:
            raise CurriculumError(
                'The curriculum has no stages. Give at least one stage, e.g. '
                "[dict(share=1.0, bandwidth=1.0, magnitude=9)], or a preset "
                f'name from {sorted(PRESETS)}.')
        self.stages: Tuple[Stage, ...] = tuple(
            self._to_stage(i, s) for i, s in enumerate(stages))
        self._validate()

    @staticmethod
    def _to_stage(i: int, stage: Union[Stage, Dict]) -> Stage:
        if isinstance(stage, Stage):
            return stage
        if not isinstance(stage, dict):
            raise CurriculumError(
                f'Stage {i} is a {type(stage).__name__}; each stage must be a '
                'dict(share=..., bandwidth=..., magnitude=...).')
        unknown = set(stage) - {'share', 'bandwidth', 'magnitude'}
        missing = {'share', 'bandwidth', 'magnitude'} - set(stage)
        if unknown or missing:
            raise CurriculumError(
                f'Stage {i} has unknown keys {sorted(unknown)} and lacks '
                f'{sorted(missing)}; each stage takes exactly share, '
                'bandwidth and magnitude.')
        try:
            return Stage(**{k: float(v) for k, v in stage.items()})
        except (TypeError, ValueError):
            raise CurriculumError(
                f'Stage {i} = {stage!r}: share, bandwidth and magnitude must '
                'be numbers.') from None

    def _validate(self) -> None:
        for i, s in enumerate(self.stages):
            if not s.share > 0:
                raise CurriculumError(
                    f'Stage {i} has share {s.share}; every share must be > 0. '
                    'Remove the stage instead of giving it no epochs.')
            if not 0 < s.bandwidth <= 1:
                raise CurriculumError(
                    f'Stage {i} has bandwidth {s.bandwidth}; bandwidth is '
                    'relative to the final input size and must lie in (0, 1] '
                    '(e.g. 160/224 for B=160 at 224 px).')
            if not 0 <= s.magnitude <= MAX_MAGNITUDE:
                raise CurriculumError(
                    f'Stage {i} has magnitude {s.magnitude}; RandAugment '
                    f'magnitude must lie in [0, {MAX_MAGNITUDE:g}] '
                    "(mmpretrain's scale).")
        total = sum(s.share for s in self.stages)
        if abs(total - 1) > _SHARE_TOLERANCE:
            raise CurriculumError(
                f'Stage shares sum to {total:.6g}, not 1. Scale them so they '
                'sum to 1 (they are fractions of the training epochs).')
        if self.stages[-1].bandwidth != 1:
            raise CurriculumError(
                f'The last stage has bandwidth {self.stages[-1].bandwidth:.4g}'
                '; it must train at full size (bandwidth=1.0), or the model '
                'is never trained on the resolution it is evaluated at.')
        for i, (a, b) in enumerate(zip(self.stages, self.stages[1:])):
            if b.bandwidth < a.bandwidth:
                raise CurriculumError(
                    f'Bandwidth falls from {a.bandwidth:.4g} in stage {i} to '
                    f'{b.bandwidth:.4g} in stage {i + 1}; a curriculum goes '
                    'from low to high frequencies, so bandwidths must not '
                    'decrease.')

    # construction ---------------------------------------------------------
    @classmethod
    def build(cls, spec: Union[str, Sequence, 'Curriculum']) -> 'Curriculum':
        """Build from a preset name, a list of stages, or a Curriculum."""
        if isinstance(spec, Curriculum):
            return spec
        if isinstance(spec, str):
            key = spec.lower()
            if key not in PRESETS:
                raise CurriculumError(
                    f'Unknown curriculum preset {spec!r}. Valid presets: '
                    f'{sorted(PRESETS)}; or give a list of '
                    'dict(share=..., bandwidth=..., magnitude=...).')
            return cls(PRESETS[key])
        if isinstance(spec, (list, tuple)):
            return cls(spec)
        raise CurriculumError(
            f'Cannot build a curriculum from {type(spec).__name__}; give a '
            f'preset name from {sorted(PRESETS)} or a list of stage dicts.')

    def to_list(self) -> List[Dict[str, float]]:
        """The stages as plain dicts (for configs and checkpoint meta)."""
        return [asdict(s) for s in self.stages]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Curriculum) and self.stages == other.stages

    def __len__(self) -> int:
        return len(self.stages)

    def __repr__(self) -> str:
        body = ', '.join(f'({s.share:.3g}, B={s.bandwidth:.4g}, '
                         f'm={s.magnitude:g})' for s in self.stages)
        return f'Curriculum([{body}])'

    # epochs ---------------------------------------------------------------
    def boundaries(self, max_epochs: int) -> List[int]:
        """Start epoch of each stage, plus ``max_epochs`` at the end.

        Cumulative shares are rounded to whole epochs, so e.g. 5 equal stages
        over 300 epochs start at 0, 60, 120, 180, 240. With fewer epochs than
        stages, some stages get no epoch; the final stage always gets at
        least one.
        """
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise CurriculumError(
                f'max_epochs must be a positive int, got {max_epochs!r}.')
        edges, cum = [0], 0.0
        for s in self.stages[:-1]:
            cum += s.share
            edges.append(min(int(math.floor(cum * max_epochs + 0.5)),
                             max_epochs - 1))
        edges.append(max_epochs)
        return edges

    def epochs(self, max_epochs: int) -> List[int]:
        """Number of epochs in each stage."""
        edges = self.boundaries(max_epochs)
        return [b - a for a, b in zip(edges, edges[1:])]

    def stage_index(self, epoch: int, max_epochs: int) -> int:
        """Index of the stage that trains ``epoch`` (0-based)."""
        if not 0 <= epoch < max_epochs:
            raise CurriculumError(
                f'epoch {epoch} is outside training [0, {max_epochs}).')
        edges = self.boundaries(max_epochs)
        for i in range(len(self.stages) - 1, -1, -1):
            if edges[i] <= epoch:
                return i
        return 0  # unreachable: edges[0] == 0

    def at(self, epoch: int, max_epochs: int,
           full_size: Union[int, Sequence[int]]) -> StageState:
        """The stage, pixel bandwidth and magnitude for ``epoch``."""
        i = self.stage_index(epoch, max_epochs)
        s = self.stages[i]
        return StageState(
            index=i,
            num_stages=len(self.stages),
            size=bandwidth_pixels(s.bandwidth, full_size),
            bandwidth=s.bandwidth,
            magnitude=s.magnitude)

    # cost -----------------------------------------------------------------
    def relative_compute(self, max_epochs: int = None,
                         full_size: Union[int, Sequence[int]] = None
                         ) -> float:
        """Training compute relative to the full-size baseline.

        ``sum(share * (B / full)^2)``, taking FLOPs proportional to pixels.
        Given ``max_epochs`` and ``full_size``, the shares and bandwidths are
        the ones actually trained: whole epochs and even pixel sizes.
        """
        if max_epochs is None or full_size is None:
            return sum(s.share * s.bandwidth**2 for s in self.stages)
        full_h, full_w = _hw(full_size)
        total = 0.0
        for s, n in zip(self.stages, self.epochs(max_epochs)):
            h, w = _hw(bandwidth_pixels(s.bandwidth, full_size))
            total += n * (h * w) / (full_h * full_w)
        return total / max_epochs

    def speedup(self, max_epochs: int = None,
                full_size: Union[int, Sequence[int]] = None) -> float:
        """Predicted speedup against the full-size baseline (FLOPs)."""
        return 1.0 / self.relative_compute(max_epochs, full_size)

    def table(self, max_epochs: int,
              full_size: Union[int, Sequence[int]]) -> List[Dict]:
        """One row per stage: epochs, pixel size, magnitude, compute share."""
        edges = self.boundaries(max_epochs)
        full_h, full_w = _hw(full_size)
        rows = []
        for i, s in enumerate(self.stages):
            size = bandwidth_pixels(s.bandwidth, full_size)
            h, w = _hw(size)
            n = edges[i + 1] - edges[i]
            rows.append(
                dict(
                    stage=i + 1,
                    start_epoch=edges[i],
                    end_epoch=edges[i + 1],
                    epochs=n,
                    size=size,
                    bandwidth=s.bandwidth,
                    magnitude=s.magnitude,
                    relative_cost=(h * w) / (full_h * full_w),
                    compute=n * (h * w) / (full_h * full_w) / max_epochs))
        return rows


def _hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[1])


# EfficientTrain (ICCV 2023), official ET_training.py: 5 equal stages,
# B = 160, 160, 160, 192, 224 (of 224) and RandAugment m = 1, 3, 5, 7, 9.
EFFICIENTTRAIN = tuple(
    Stage(share=0.2, bandwidth=b / 224, magnitude=m)
    for b, m in zip((160, 160, 160, 192, 224), (1, 3, 5, 7, 9)))

PRESETS: Dict[str, Tuple[Stage, ...]] = {
    'efficienttrain': EFFICIENTTRAIN,
    'et': EFFICIENTTRAIN,
    # the full-size baseline as a one-stage curriculum (m=9), handy for
    # side-by-side runs that share every other setting
    'baseline': (Stage(share=1.0, bandwidth=1.0, magnitude=9),),
}
