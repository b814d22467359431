"""mmet: EfficientTrain curricula for MMEngine, mmpretrain and mmdet."""
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
    from . import compat  # noqa: F401  (patches applied on import)
    from .stages import (PipelineStageError, StageDriver, StageSchedule,
                         StageState, config_full_size)
    from .checks import preflight_model
    from .hooks import EfficientTrainHook
    from .transforms import (FourierCrop, StagedRandAug,
                             StagedRandomResizedCrop, fourier_crop,
                             lanczos_resize)
    from .loops import EfficientTrainLoop
    from .replay import ReplayBuffer
    from .schedulers import ComputeClockScheduler
    from .swin import SwinWindowHook, set_swin_window
    from .mae import ElasticMAEPretrainDecoder, ElasticMAEViT
    from .batch_randaug import BatchRandAugment
    from .batch_transforms import fourier_crop_batch
    from .device_pipeline import DeviceAugmentPreprocessor, LoadImageBytes
    __all__ += ['StageDriver', 'StageSchedule', 'StageState',
                'PipelineStageError', 'config_full_size', 'preflight_model',
                'EfficientTrainHook', 'FourierCrop', 'StagedRandAug',
                'StagedRandomResizedCrop',
                'fourier_crop', 'lanczos_resize', 'EfficientTrainLoop',
                'ReplayBuffer', 'ComputeClockScheduler', 'SwinWindowHook',
                'set_swin_window', 'ElasticMAEViT',
                'ElasticMAEPretrainDecoder', 'BatchRandAugment',
                'DeviceAugmentPreprocessor', 'LoadImageBytes',
                'fourier_crop_batch']
