# EfficientTrain++ (TPAMI 2024) on top of an EfficientTrain ImageNet config.
#
# ET++ replaces ET's 5 stages over max_epochs by 10 stages of equal compute
# (m = 0..9) over a budget of E full-size-equivalent epochs. A child config
# inherits configs/efficienttrain/<model>.py and this file, then sets:
#
#   budget = 200                     # E; 300 / E = the speedup vs 300 epochs
#   train_cfg = dict(_delete_=True, type='EfficientTrainLoop',
#                    curriculum='efficienttrain++', family='resnet',
#                    budget=budget, val_interval=1)
#   custom_hooks = []                # the loop registers EfficientTrainHook
#   model = dict(backbone=dict(drop_path_rate=<rate at E=200> * budget / 200))
#
# - max_epochs is derived by the loop: a stage at B runs (E/10)(224/B)^2 real
#   epochs (ResNet-50 at E=200: 455 epochs, 1.50x fewer FLOPs than 300
#   full-size epochs). `python tools/analyze_curriculum.py CONFIG` shows it.
# - param_scheduler (warm-up, cosine, weight decay) is inherited unchanged:
#   the loop runs it on the compute clock, as a full-size run of E epochs,
#   so the 20 warm-up epochs are 20 epochs' worth of compute.
# - drop_path scales with E/200 as in the official _ET_pp_main_*.py.
# - Replay buffer (for loaders that cannot keep up at low B): add
#   replay='efficienttrain++' to train_cfg (R = 4,4,2,2,2,2,1,1,1,1; buffers
#   of 1920, 256, 0 loaded batches).
# - Low-pass: the inherited pipeline keeps the exact Fourier crop, which costs
#   about what Lanczos costs on the CPU (tools/benchmark_lowpass.py). For the
#   official ET++ Lanczos resize use
#   train_dataloader = dict(
#       dataset=dict(pipeline=_base_.etpp_lanczos_pipeline))
#
# (mmengine refuses keys defined in two bases, so this file only adds etpp_*
# names.)

_mean = [103.53, 116.28, 123.675]
_std = [57.375, 57.12, 58.395]

# configs/_base_/efficienttrain.py's et_train_pipeline with the official
# EfficientTrain++ down-sampling: Lanczos after the full-size augmentation.
etpp_lanczos_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='StagedRandAug',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in _mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=_mean,
        fill_std=_std),
    dict(type='FourierCrop', size=224, mode='lanczos'),
    dict(type='PackInputs'),
]
