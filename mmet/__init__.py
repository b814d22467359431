"""mmet: EfficientTrain curricula for MMEngine, mmpretrain and mmdet.

``import mmet`` (or ``custom_imports=dict(imports=['mmet'])``) registers
mmet's transforms, batch transforms, data preprocessor, hooks, loop,
scheduler, optimizer wrapper and constructor, file backend and model
wrappers, and changes nothing else: the stacks' fixes mmet's tools apply
are named functions (:mod:`mmet.checkpoint`, :mod:`mmet.distributed`).
"""
import contextlib
import sys

from .curriculum import (PRESETS, BudgetPlan, Curriculum, CurriculumError,
                         Stage, budget_for_speedup)
from .version import __version__

__all__ = ['Curriculum', 'CurriculumError', 'Stage', 'PRESETS', '__version__',
           'BudgetPlan', 'budget_for_speedup']

try:  # the OpenMMLab parts need torch, mmengine, mmcv and mmpretrain
    # onedl-mmpretrain prints a note ('Could not import OneDL') on stdout,
    # where the tools write their JSON, when its datasets are first
    # imported (mmet's modules import them): it goes to stderr
    with contextlib.redirect_stdout(sys.stderr):
        import mmpretrain.datasets  # noqa: F401
except ModuleNotFoundError as e:  # pure-schedule use, e.g. analysis tools
    if e.name != 'mmpretrain':
        raise
else:
    from .batch_randaug import BatchRandAugment
    from .batch_transforms import BatchFourierCrop, fourier_crop_batch
    from .checkpoint import SafeCheckpointHook, safe_loading
    from .device_pipeline import DeviceAugmentPreprocessor, LoadImageBytes
    from .distributed import CPUDistributedDataParallel
    from .driver import PipelineStageError, StageDriver
    from .fast_step import BF16OptimWrapper, FastStepConstructor
    from .hooks import EfficientTrainHook
    from .loops import EfficientTrainLoop
    from .mae import ElasticMAEPretrainDecoder, ElasticMAEViT
    from .curriculum import StageState
    from .plan import TrainPlan, plan_from_config
    from .replay import ReplayBuffer
    from .schedulers import ComputeClockScheduler
    from .staged import StagedTransform
    from .swin import SwinWindowHook
    from .transforms import (FourierCrop, StagedRandAug,
                             StagedRandomResizedCrop, fourier_crop,
                             lanczos_resize)
    __all__ += [
        'BatchRandAugment', 'BatchFourierCrop', 'fourier_crop_batch',
        'SafeCheckpointHook', 'safe_loading', 'DeviceAugmentPreprocessor',
        'LoadImageBytes', 'CPUDistributedDataParallel', 'PipelineStageError',
        'StageDriver', 'BF16OptimWrapper', 'FastStepConstructor',
        'EfficientTrainHook', 'EfficientTrainLoop', 'ElasticMAEViT',
        'ElasticMAEPretrainDecoder', 'StageState', 'TrainPlan',
        'plan_from_config', 'ReplayBuffer', 'ComputeClockScheduler',
        'StagedTransform', 'SwinWindowHook', 'FourierCrop', 'StagedRandAug',
        'StagedRandomResizedCrop', 'fourier_crop', 'lanczos_resize']
