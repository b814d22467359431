# Adds the EfficientTrain curriculum to an mmpretrain ImageNet config.
#
# Use it as a second base and then set the pipeline, the loop, the fast
# training step and the safe checkpoints:
#
#   _base_ = ['mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
#             '../_base_/efficienttrain.py']
#   train_dataloader = dict(dataset=dict(pipeline=_base_.et_train_pipeline))
#   train_cfg = dict(_base_.et_loop, _delete_=True, max_epochs=300)
#   optim_wrapper = _base_.et_fast_step
#   default_hooks = dict(checkpoint=_base_.et_checkpoint)
#
# (mmengine refuses keys defined in two bases, so this file only adds new
# names; the two assignments above are made in the child config.)
custom_imports = dict(imports=['mmet'], allow_failed_imports=False)

et_bgr_mean = [103.53, 116.28, 123.675]
et_bgr_std = [57.375, 57.12, 58.395]

# The named steps of the ImageNet train pipelines below: mmpretrain's
# imagenet_bs64_swin_224 recipe (RandAugment(9, 0.5), random erasing 0.25)
# with RandAugment made stage-driven, and the low-pass to B.
et_crop = dict(
    type='RandomResizedCrop',
    scale=224,
    backend='pillow',
    interpolation='bicubic')
et_flip = dict(type='RandomFlip', prob=0.5, direction='horizontal')
et_randaug = dict(
    type='StagedRandAug',
    policies='timm_increasing',
    num_policies=2,
    total_level=10,
    magnitude_level=9,
    magnitude_std=0.5,
    hparams=dict(
        pad_val=[round(x) for x in et_bgr_mean], interpolation='bicubic'))
et_erasing = dict(
    type='RandomErasing',
    erase_prob=0.25,
    mode='rand',
    min_area_ratio=0.02,
    max_area_ratio=1 / 3,
    fill_color=et_bgr_mean,
    fill_std=et_bgr_std)
# the exact low-frequency crop to B (the hook sets B; 224 is the full size)
et_low_pass = dict(type='FourierCrop', size=224)

# The paper's order: the low-frequency crop last, after every full-size
# augmentation, as in the official code.
et_train_pipeline = [
    dict(type='LoadImageFromFile'),
    et_crop,
    et_flip,
    et_randaug,
    et_erasing,
    et_low_pass,
    dict(type='PackInputs'),
]

# The same with the official EfficientTrain++ down-sampling: Lanczos after
# the full-size augmentation (configs/_base_/efficienttrain_pp.py).
etpp_lanczos_pipeline = [
    dict(type='LoadImageFromFile'),
    et_crop,
    et_flip,
    et_randaug,
    et_erasing,
    dict(et_low_pass, mode='lanczos'),
    dict(type='PackInputs'),
]

# 5 equal stages: B = 160, 160, 160, 192, 224 and m = 1, 3, 5, 7, 9, over
# the config's max_epochs; each stage below 224 runs the micro-batch of about
# 224 px's pixels where the gradient accumulation leaves room (mmet/plan.py)
et_loop = dict(
    type='EfficientTrainLoop', curriculum='efficienttrain',
    micro_batch='auto', val_interval=1)
# EfficientTrain++: ten equal-compute stages, m = 0..9, over a budget that
# the child config gives (configs/_base_/efficienttrain_pp.py)
etpp_loop = dict(et_loop, curriculum='efficienttrain++')
# the hook alone, for a config that keeps mmengine's EpochBasedTrainLoop
et_hook = dict(type='EfficientTrainHook', curriculum='efficienttrain')
# merged param groups, bf16 without a GradScaler, channels_last for ConvNets
# on CUDA (mmet/fast_step.py); merged into the config's optim_wrapper
et_fast_step = dict(constructor='FastStepConstructor')
# checkpoints that a kill during a save leaves whole (mmet/checkpoint.py)
et_checkpoint = dict(type='SafeCheckpointHook')

# The cheap data path (tools/benchmark_datapath.py): the random crop is
# resized straight to B with an antialiased (PIL) filter, and flip,
# RandAugment and erasing then run on B x B pixels. A stage at B costs the
# loader less per sample than the full-size stage. Deviation from the paper:
# the low-pass is PIL's bicubic down-sampling of the crop (as ET++ uses
# Lanczos) and precedes the augmentations, which are scale-equivariant
# (geometry as fractions of the size, colour per pixel) except Sharpness's
# 3x3 kernel. Use it with
#   train_dataloader = dict(
#       dataset=dict(pipeline=_base_.et_fast_train_pipeline))
et_fast_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(et_crop, type='StagedRandomResizedCrop'),
    et_flip,
    et_randaug,
    et_erasing,
    dict(type='PackInputs'),
]

# The device pipeline (mmet/device_pipeline.py): the data workers only read
# the JPEG bytes; DeviceAugmentPreprocessor decodes them on the model's device
# (nvjpeg on a GPU) and runs et_train_pipeline's steps on whole batches:
# random-resized crop (mmpretrain's box distribution), flip, RandAugment
# (9, 0.5), random erasing 0.25, then the Fourier crop to B. Colours are RGB,
# the decoder's order. The hook drives B and m there as in the pipeline.
# Mixup/CutMix (model.train_cfg.augments) apply as with ClsDataPreprocessor.
# Use it with
#   train_dataloader = dict(collate_fn=dict(type='pseudo_collate'),
#                           dataset=dict(pipeline=_base_.et_device_pipeline))
#   data_preprocessor = _base_.et_device_preprocessor
et_device_pipeline = [
    dict(type='LoadImageBytes'),
    dict(type='PackInputs', input_key='img_bytes'),
]
et_device_preprocessor = dict(
    type='DeviceAugmentPreprocessor',
    crop_size=224,
    # et_randaug and et_erasing, with RGB colours
    randaug=dict(
        {k: v for k, v in et_randaug.items() if k != 'type'},
        hparams=dict(
            pad_val=[round(x) for x in et_bgr_mean[::-1]],
            interpolation='bicubic')),
    erasing=dict(
        {k: v for k, v in et_erasing.items() if k not in ('type', 'mode')},
        fill_color=et_bgr_mean[::-1],
        fill_std=et_bgr_std[::-1]),
    mean=et_bgr_mean[::-1],
    std=et_bgr_std[::-1],
    to_rgb=True)
