"""Walking built datasets and pipelines: the one walker mmet has.

- :func:`leaf_datasets`: every dataset with a pipeline, through dataset
  wrappers (``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset``,
  mmdet's ``MultiImageMixDataset``);
- :func:`walk_transforms`: every transform of a pipeline, with the ones
  nested in ``RandomApply``, ``RandomChoice``, ``MultiView`` and the like,
  each with the wrapper it sits in and the list that holds it (so that a
  nested transform can be replaced in place). Augmentation policies
  (RandAugment's, AutoAugment's) and staged transforms are leaves: their
  parts are not pipeline steps.
"""
from typing import Iterator, List, NamedTuple, Optional

from mmengine.model import is_model_wrapper

from .staged import StagedTransform

# augmentations whose strength is fixed by their policies: nothing to stage
FIXED_STRENGTH = ('AutoAugment', 'TrivialAugmentWide', 'TrivialAugment',
                  'AugMix')
LEAVES = ('RandAugment', ) + FIXED_STRENGTH


def transform_name(t) -> str:
    """The registry name of a built transform (``torchvision/Resize`` for
    mmpretrain's torchvision wrappers)."""
    inner = getattr(t, 't', None)
    if type(t).__name__ == 'TorchVisonTransformWrapper' and inner is not None:
        return f'torchvision/{type(inner).__name__}'
    return type(t).__name__


def is_leaf(t) -> bool:
    """Whether ``t``'s parts are no pipeline steps."""
    return isinstance(t, StagedTransform) or any(
        c.__name__ in LEAVES for c in type(t).__mro__)


class Step(NamedTuple):
    """A transform of a pipeline, where it sits.

    Attributes:
        transform: The transform.
        parent (str, optional): The outermost wrapper it is nested in
            (``'RandomApply'``); None at the top level.
        owner (list): The list that holds it (``owner[index] is
            transform``).
        index (int): Its place in ``owner``.
    """
    transform: object
    parent: Optional[str]
    owner: list
    index: int


def _lists(node) -> List[list]:
    """The transform lists a wrapper runs: its ``transforms`` (a list, a
    Compose, or a list of Composes) or ``pipelines``."""
    subs = getattr(node, 'transforms', None)
    if subs is None:
        subs = getattr(node, 'pipelines', None)
    if subs is None:
        return []
    inner = getattr(subs, 'transforms', None)  # a Compose
    if isinstance(inner, list):
        return [inner]
    if not isinstance(subs, (list, tuple)):
        return []
    if all(isinstance(getattr(s, 'transforms', None), list) for s in subs) \
            and subs and all(type(s).__name__ == 'Compose' for s in subs):
        return [s.transforms for s in subs]  # RandomChoice, MultiView
    return [subs] if isinstance(subs, list) else [list(subs)]


def walk_transforms(pipeline) -> Iterator[Step]:
    """Every transform of ``pipeline`` (a Compose, a list, or a pipeline
    wrapper with ``transforms``), nested ones too, outer before inner."""
    seen = set()
    top = pipeline if isinstance(pipeline, list) else \
        getattr(pipeline, 'transforms', None)
    if isinstance(pipeline, tuple):
        top = list(pipeline)

    def walk(owner: list, parent: Optional[str]):
        for i, t in enumerate(owner):
            if id(t) in seen:  # MultiView repeats a pipeline per view
                continue
            seen.add(id(t))
            yield Step(t, parent, owner, i)
            if not is_leaf(t):
                for sub in _lists(t):
                    yield from walk(sub, parent or transform_name(t))

    if isinstance(top, list):
        yield from walk(top, None)


def leaf_datasets(dataset) -> Iterator:
    """Every dataset with a pipeline, through dataset wrappers."""
    seen = set()

    def walk(ds):
        if ds is None or id(ds) in seen:
            return
        seen.add(id(ds))
        if getattr(ds, 'pipeline', None) is not None:
            yield ds
        yield from walk(getattr(ds, 'dataset', None))
        for sub in getattr(ds, 'datasets', None) or ():
            yield from walk(sub)

    yield from walk(dataset)


def unwrap_model(model):
    """The model inside DDP and other wrappers."""
    return model.module if is_model_wrapper(model) else model
