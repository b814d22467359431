"""The staged-transform protocol: what the curriculum drives.

A staged transform declares what it follows and takes a stage:

- ``full_size``: the size the curriculum's bandwidths are relative to (its
  configured output size), or None if it does not follow B;
- ``full_magnitude``: its configured RandAugment magnitude, or None if it
  does not follow m;
- ``set_stage(stage)``: set itself to a :class:`~mmet.curriculum.Stage`
  (its relative bandwidth B and its magnitude m), refusing with a
  ``ValueError`` that names the fix a stage it cannot train.

:class:`~mmet.driver.StageDriver` finds, by this protocol, every staged
transform of the train pipelines (also inside ``RandomApply`` and the other
wrappers) and a data preprocessor that is one. mmet's own are
:class:`~mmet.transforms.FourierCrop`,
:class:`~mmet.transforms.StagedRandomResizedCrop`,
:class:`~mmet.transforms.StagedRandAug`, the batch transforms
:class:`~mmet.batch_transforms.BatchFourierCrop` and
:class:`~mmet.batch_randaug.BatchRandAugment`, and
:class:`~mmet.device_pipeline.DeviceAugmentPreprocessor`; a new one needs
nothing but these three members (and a registry entry to build it from a
config).
"""
from typing import Optional, Protocol, runtime_checkable

from .curriculum import Stage
from .sizes import Size


@runtime_checkable
class StagedTransform(Protocol):
    """A transform (or batch transform, or data preprocessor) that the
    curriculum drives: see the module docstring."""

    full_size: Optional[Size]
    full_magnitude: Optional[float]

    def set_stage(self, stage: Stage) -> None:
        ...


def follows_bandwidth(t: StagedTransform) -> bool:
    return t.full_size is not None


def follows_magnitude(t: StagedTransform) -> bool:
    return t.full_magnitude is not None


def check_magnitude(transform: object, magnitude: float,
                    total_level: float) -> None:
    """Refuse a stage's RandAugment m outside ``[0, total_level]``.

    The policies map ``m / total_level`` onto their ranges: above 1 they
    would go past them (or the level be clipped).

    Raises:
        ValueError: naming the transform, its scale and the fix.
    """
    if 0 <= magnitude <= total_level:
        return
    raise ValueError(
        f'The curriculum sets the RandAugment magnitude to m={magnitude:g}, '
        f'but {type(transform).__name__} has total_level={total_level:g}, so '
        'that m lies outside its scale. Set total_level=10 (mmpretrain\'s '
        'scale, which the presets use) or give stages magnitudes of at most '
        f'{total_level:g}.')
