"""The EfficientTrain curriculum as pure data and arithmetic.

A curriculum is an ordered list of :class:`Stage`. Each stage trains for a
share of the epochs at a bandwidth ``B`` (given relative to the final input
size, so one preset serves 224 px ImageNet and 28 px Fashion-MNIST alike) and
a RandAugment magnitude ``m`` on mmpretrain's 0-10 scale.

Everything here is plain Python: no torch, no mmengine. :mod:`mmet.plan`
turns a curriculum into the plan of a run (its stage clock);
:mod:`mmet.sizes` turns bandwidths into pixels and costs.
"""
import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .config import type_name
from .sizes import REFERENCE_SIZE, Size, at_bandwidth, describe, pixel_cost

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
    """One stage of a run: what it trains and when.

    Attributes:
        index (int): 0-based; messages number stages from 1.
        num_stages (int): Stages of the curriculum.
        size (int | tuple, optional): B in pixels (None before full size is
            known).
        bandwidth (float): B relative to the full size.
        magnitude (float): RandAugment m.
        first_epoch (int, optional): First epoch of the stage, from 1.
        last_epoch (int, optional): Last epoch of the stage, from 1; below
            ``first_epoch`` for a stage without epochs.
        max_epochs (int, optional): Epochs of the run.
    """
    index: int
    num_stages: int
    size: Optional[Size]
    bandwidth: float
    magnitude: float
    first_epoch: Optional[int] = None
    last_epoch: Optional[int] = None
    max_epochs: Optional[int] = None

    @property
    def number(self) -> int:
        """The stage's number in messages, from 1."""
        return self.index + 1

    def describe(self, span: bool = True) -> str:
        """``'stage 4/5 (B=28, m=7, epochs 7-8 of 10)'``; without ``span``
        (or without a run length), ``'stage 4/5 (B=28, m=7)'``."""
        size = describe(self.size) if self.size is not None else \
            f'{self.bandwidth:.3g}'
        text = f'stage {self.number}/{self.num_stages} (B={size}, ' \
            f'm={self.magnitude:g}'
        if span and self.max_epochs:
            first, last = self.first_epoch, self.last_epoch
            when = f'epoch {last}' if first >= last else \
                f'epochs {first}-{last}'
            text += f', {when} of {self.max_epochs}'
        return text + ')'

    def __str__(self) -> str:
        return self.describe()


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
                f'Stage {i + 1} is a {type(stage).__name__}; each stage must be a '
                'dict(share=..., bandwidth=..., magnitude=...).')
        unknown = set(stage) - {'share', 'bandwidth', 'magnitude'}
        missing = {'share', 'bandwidth', 'magnitude'} - set(stage)
        if unknown or missing:
            raise CurriculumError(
                f'Stage {i + 1} has unknown keys {sorted(unknown)} and lacks '
                f'{sorted(missing)}; each stage takes exactly share, '
                'bandwidth and magnitude.')
        try:
            return Stage(**{k: float(v) for k, v in stage.items()})
        except (TypeError, ValueError):
            raise CurriculumError(
                f'Stage {i + 1} = {stage!r}: share, bandwidth and magnitude must '
                'be numbers.') from None

    def _validate(self) -> None:
        for i, s in enumerate(self.stages):
            if not s.share > 0:
                raise CurriculumError(
                    f'Stage {i + 1} has share {s.share}; every share must be > 0. '
                    'Remove the stage instead of giving it no epochs.')
            if not 0 < s.bandwidth <= 1:
                raise CurriculumError(
                    f'Stage {i + 1} has bandwidth {s.bandwidth}; bandwidth is '
                    'relative to the final input size and must lie in (0, 1] '
                    '(e.g. 160/224 for B=160 at 224 px).')
            if not 0 <= s.magnitude <= MAX_MAGNITUDE:
                raise CurriculumError(
                    f'Stage {i + 1} has magnitude {s.magnitude}; RandAugment '
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
                    f'Bandwidth falls from {a.bandwidth:.4g} in stage {i + 1} to '
                    f'{b.bandwidth:.4g} in stage {i + 2}; a curriculum goes '
                    'from low to high frequencies, so bandwidths must not '
                    'decrease.')

    # construction ---------------------------------------------------------
    @classmethod
    def build(cls, spec: Union[str, Sequence, 'Curriculum'],
              family: str = None) -> 'Curriculum':
        """Build from a preset name, a list of stages, or a Curriculum.

        ``family`` picks the model family of a per-family preset:
        ``build('efficienttrain++', family='deit')`` is the preset
        ``'efficienttrain++deit'``.
        """
        if isinstance(spec, Curriculum):
            return spec
        if isinstance(spec, str):
            key = _family_preset(spec.lower(), family)
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

    # cost -----------------------------------------------------------------
    def relative_compute(self, max_epochs: int = None,
                         full_size: Size = None
                         ) -> float:
        """Training compute relative to the full-size baseline.

        ``sum(share * (B / full)^2)``, taking FLOPs proportional to pixels.
        Given ``max_epochs`` and ``full_size``, the shares and bandwidths are
        the ones actually trained: whole epochs and even pixel sizes.
        """
        if max_epochs is None or full_size is None:
            return sum(s.share * s.bandwidth**2 for s in self.stages)
        return sum(n * pixel_cost(s.bandwidth, full_size) for s, n in zip(
            self.stages, self.epochs(max_epochs))) / max_epochs

    def speedup(self, max_epochs: int = None,
                full_size: Size = None) -> float:
        """Predicted speedup against the full-size baseline (FLOPs)."""
        return 1.0 / self.relative_compute(max_epochs, full_size)

    def table(self, max_epochs: int,
              full_size: Size) -> List[Dict]:
        """One row per stage: epochs, pixel size, magnitude, compute share."""
        edges = self.boundaries(max_epochs)
        rows = []
        for i, s in enumerate(self.stages):
            cost = pixel_cost(s.bandwidth, full_size)
            n = edges[i + 1] - edges[i]
            rows.append(
                dict(
                    stage=i + 1,
                    start_epoch=edges[i],
                    end_epoch=edges[i + 1],
                    epochs=n,
                    size=at_bandwidth(s.bandwidth, full_size),
                    bandwidth=s.bandwidth,
                    magnitude=s.magnitude,
                    relative_cost=cost,
                    compute=n * cost / max_epochs))
        return rows

    # EfficientTrain++: equal compute and budgets ---------------------------
    @classmethod
    def equal_compute(cls, bandwidths: Sequence[float],
                      magnitudes: Sequence[float]) -> 'Curriculum':
        """Stages of equal compute: epoch shares proportional to ``1 / B^2``.

        Args:
            bandwidths (Sequence[float]): Per stage, relative to the final
                size (in (0, 1]) or in pixels of a 224 px final size (96).
            magnitudes (Sequence[float]): RandAugment magnitude per stage.
        """
        if len(bandwidths) != len(magnitudes) or not len(bandwidths):
            raise CurriculumError(
                f'equal_compute needs one magnitude per bandwidth, got '
                f'{len(bandwidths)} bandwidths and {len(magnitudes)} '
                'magnitudes.')
        rel = [b / REFERENCE_SIZE if b > 1 else float(b) for b in bandwidths]
        if any(not b > 0 for b in rel):
            raise CurriculumError(
                f'Bandwidths must be positive, got {list(bandwidths)}.')
        weights = [1 / b**2 for b in rel]
        total = sum(weights)
        return cls([
            Stage(share=w / total, bandwidth=b, magnitude=float(m))
            for w, b, m in zip(weights, rel, magnitudes)
        ])

    def epochs_for_budget(self, budget: float) -> float:
        """Real epochs that spend ``budget`` full-size-equivalent epochs.

        ``budget / relative_compute()``, not rounded: ET++ at E=200 on
        ResNet-50 runs 200 * (2 (224/96)^2 + 4 (224/160)^2 + 4) / 10 = 454.6.
        """
        if isinstance(budget, bool) or not (
                isinstance(budget, (int, float)) and budget > 0):
            raise CurriculumError(
                'The budget E must be a positive number of '
                f'full-size-equivalent epochs, got {budget!r}.')
        return budget / self.relative_compute()

    def plan(self, budget: float,
             replay_times: Sequence[int] = None,
             every_stage: bool = False) -> 'BudgetPlan':
        """Whole real epochs, per stage, that spend ``budget``.

        Each stage keeps its share of the compute. With replay factors R, a
        stage makes R-fold fewer passes over the data, each of R-fold more
        optimizer steps. The plan's curriculum holds the resulting shares
        of the real epochs: the one the hook follows.

        With few epochs, rounding the stage edges to whole epochs can leave
        a stage without any. ``every_stage=True`` then re-plans: each stage
        gets the whole epochs nearest its passes, at least one (largest
        remainders first, keeping the total where it can), which costs
        compute beyond the budget; :meth:`BudgetPlan.compute_epochs` says
        how much. A plan that gives every stage an epoch is kept as it is.
        """
        real = self.epochs_for_budget(budget)
        times = tuple(int(r) for r in (replay_times or (1, ) * len(self)))
        if len(times) != len(self):
            raise CurriculumError(
                f'Give one replay factor per stage: {len(self)} stages, '
                f'{len(times)} factors ({list(times)}).')
        if any(r < 1 for r in times):
            raise CurriculumError(
                f'Replay factors must be integers >= 1, got {list(times)}.')
        passes = [s.share * real / r for s, r in zip(self.stages, times)]
        total = sum(passes)
        curriculum = Curriculum([
            Stage(share=p / total, bandwidth=s.bandwidth,
                  magnitude=s.magnitude)
            for p, s in zip(passes, self.stages)
        ])
        plan = BudgetPlan(
            curriculum=curriculum,
            budget=float(budget),
            max_epochs=max(1, int(math.floor(total + 0.5))),
            replay_times=times)
        if not every_stage or min(plan.epochs()) > 0:
            return plan
        epochs = [max(1, int(math.floor(p))) for p in passes]
        while sum(epochs) < plan.max_epochs:
            i = max(range(len(epochs)), key=lambda k: passes[k] - epochs[k])
            epochs[i] += 1
        n = sum(epochs)
        return BudgetPlan(
            curriculum=Curriculum([
                Stage(share=e / n, bandwidth=s.bandwidth,
                      magnitude=s.magnitude)
                for e, s in zip(epochs, self.stages)]),
            budget=float(budget), max_epochs=n, replay_times=times,
            replanned=True)


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
    # MAE pre-training has no RandAugment: ET's bandwidths at a constant m
    'efficienttrain-mae': tuple(
        Stage(share=s.share, bandwidth=s.bandwidth, magnitude=0)
        for s in EFFICIENTTRAIN),
}


# EfficientTrain++ (TPAMI 2024) ---------------------------------------------
#
# Ten stages of equal compute with RandAugment m = 0, 1, ..., 9. The official
# _ET_pp_main_*.py scripts (LeapLabTHU/EfficientTrain @2b9011c) give each
# model family its own bandwidths, all over a 224 px final size.

ETPP_BANDWIDTHS: Dict[str, Tuple[int, ...]] = {
    'resnet': (96, ) * 2 + (160, ) * 4 + (224, ) * 4,
    'swin': (96, ) * 2 + (160, ) * 4 + (224, ) * 4,
    'cswin': (96, ) * 2 + (160, ) * 4 + (224, ) * 4,
    'deit': (96, ) * 2 + (160, ) * 4 + (192, ) * 2 + (224, ) * 2,
    'convnext': (160, ) * 6 + (224, ) * 4,
    # MAE pre-training of a ViT (not in the official code): DeiT's
    # bandwidths, all multiples of the 16 px patch
    'mae': (96, ) * 2 + (160, ) * 4 + (192, ) * 2 + (224, ) * 2,
}
ETPP_MAGNITUDES: Tuple[int, ...] = tuple(range(10))
# MAE pre-training has no RandAugment: m stays constant
_FAMILY_MAGNITUDES: Dict[str, Tuple[int, ...]] = {'mae': (0, ) * 10}

# The replay buffer of the official _ET_pp_wReplay_main_{res50,deitS}.py:
# per stage, the loader yields batches of bs / R; ``buffer_size`` counts
# such loaded batches, each kept as ``split`` chunks.
ETPP_REPLAY = dict(
    times=(4, ) * 2 + (2, ) * 4 + (1, ) * 4,
    buffer_size=(1920, ) * 2 + (256, ) * 4 + (0, ) * 4,
    split=32)

# The budget E of the paper's speedups against a 300-epoch baseline.
BASELINE_EPOCHS = 300


def budget_for_speedup(speedup: float,
                       baseline_epochs: float = BASELINE_EPOCHS) -> float:
    """The budget E (full-size-equivalent epochs) of a target speedup.

    ``E = baseline_epochs / speedup``: 1.5x, 2x and 3x against 300 epochs
    give E = 200, 150 and 100, the paper's settings.
    """
    if not (isinstance(speedup, (int, float)) and speedup > 0):
        raise CurriculumError(
            f'speedup must be a positive number, got {speedup!r} (e.g. 1.5, '
            '2 or 3 against a 300-epoch baseline).')
    if not (isinstance(baseline_epochs, (int, float)) and baseline_epochs > 0):
        raise CurriculumError(
            f'baseline_epochs must be a positive number, got '
            f'{baseline_epochs!r}.')
    return baseline_epochs / speedup


@dataclass(frozen=True)
class BudgetPlan:
    """How a curriculum spends a compute budget, in whole epochs.

    Attributes:
        curriculum (Curriculum): The stages with their shares of the *real*
            epochs: the curriculum that :class:`~mmet.hooks.EfficientTrainHook`
            follows, epoch by epoch.
        budget (float): E, in full-size-equivalent epochs.
        max_epochs (int): Real epochs (passes over the data).
        replay_times (tuple[int]): Replay factor R of each stage (1: none).
            A stage with R > 1 loads batches of bs / R, so it makes R-fold
            fewer passes, each of R-fold more optimizer steps.
        replanned (bool): Whether :meth:`Curriculum.plan` gave stages that
            rounding left without an epoch one of their own.
    """
    curriculum: 'Curriculum'
    budget: float
    max_epochs: int
    replay_times: Tuple[int, ...]
    replanned: bool = False

    def epochs(self) -> List[int]:
        """Real epochs of each stage."""
        return self.curriculum.epochs(self.max_epochs)

    def compute_epochs(self, full_size: Size = None
                       ) -> float:
        """The compute actually planned, in full-size epochs.

        Whole epochs make it differ slightly from :attr:`budget`. Given
        ``full_size``, bandwidths are the even pixel sizes really trained.
        """
        total = 0.0
        for s, n, r in zip(self.curriculum.stages, self.epochs(),
                           self.replay_times):
            total += n * r * pixel_cost(s.bandwidth, full_size)
        return total

    def speedup(self, baseline_epochs: float = BASELINE_EPOCHS,
                full_size: Size = None) -> float:
        """Predicted speedup (FLOPs) against a full-size baseline run."""
        return baseline_epochs / self.compute_epochs(full_size)

    def table(self, full_size: Size) -> List[Dict]:
        """One row per stage, as :meth:`Curriculum.table`, plus ``replay``.

        ``relative_cost`` is the compute of one real epoch against a
        full-size one (R times the pixel ratio with replay: R-fold more
        steps per pass) and ``compute`` the stage's compute in full-size
        epochs divided by :attr:`max_epochs`, as in
        :meth:`Curriculum.table`, so ``compute / sum(compute)`` is the
        stage's share of the compute.
        """
        rows = self.curriculum.table(self.max_epochs, full_size)
        for row, r in zip(rows, self.replay_times):
            row['replay'] = r
            row['relative_cost'] *= r
            row['compute'] *= r
        return rows


# Backbone types (mmpretrain registry names) of each ET++ model family. The
# official code covers ResNet, Swin, CSWin, DeiT and ConvNeXt; the other
# ResNet-style ConvNets take ResNet's bandwidths, ViT variants DeiT's.
BACKBONE_FAMILIES: Dict[str, Tuple[str, ...]] = {
    'resnet': ('ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNet_CIFAR', 'ResNeXt',
               'SEResNet', 'SEResNeXt', 'RegNet', 'Res2Net', 'ResNeSt'),
    'swin': ('SwinTransformer', 'SwinTransformerV2'),
    'deit': ('VisionTransformer', 'DistilledVisionTransformer', 'DeiT3'),
    'convnext': ('ConvNeXt', ),
    'mae': ('MAEViT', 'ElasticMAEViT'),
}


def infer_family(backbone_type: str) -> Optional[str]:
    """The ET++ model family of a backbone type, or None if it has none.

    ``backbone_type`` is a registry name such as ``'ResNet'`` or
    ``'mmpretrain.SwinTransformer'`` (a scope prefix is ignored).
    """
    name = type_name(backbone_type)
    for family, types in BACKBONE_FAMILIES.items():
        if name in types:
            return family
    return None


def _family_preset(key: str, family: str = None) -> str:
    """The preset name for a per-family preset and a model family."""
    families = sorted(ETPP_BANDWIDTHS)
    if key in ('efficienttrain++', 'et++'):
        if family is None:
            raise CurriculumError(
                f'The {key!r} curriculum depends on the model family; give '
                f'family= one of {families}, or a preset name from '
                f'{sorted(k for k in PRESETS if "++" in k)}.')
        if str(family).lower() not in ETPP_BANDWIDTHS:
            raise CurriculumError(
                f'Unknown model family {family!r} for {key!r}; valid '
                f'families: {families}.')
        return f'efficienttrain++{str(family).lower()}'
    if family is not None and key in PRESETS and '++' not in key:
        raise CurriculumError(
            f'family={family!r} only applies to the efficienttrain++ '
            f'curriculum, not to {key!r}.')
    if family is not None and '++' in key and not key.endswith(
            str(family).lower()):
        raise CurriculumError(
            f'Preset {key!r} contradicts family={family!r}.')
    return key


def _etpp_presets() -> Dict[str, Tuple[Stage, ...]]:
    return {
        f'efficienttrain++{family}': Curriculum.equal_compute(
            bandwidths, _FAMILY_MAGNITUDES.get(family,
                                               ETPP_MAGNITUDES)).stages
        for family, bandwidths in ETPP_BANDWIDTHS.items()
    }


PRESETS.update(_etpp_presets())
