# The demo baseline: a small CIFAR-style ResNet-18 on Fashion-MNIST (28 px
# grayscale, from Debian's dataset-fashion-mnist; tools/setup_env.sh fetches
# it), trained on the CPU. fmnist_resnet_et.py adds the EfficientTrain
# curriculum and changes nothing else.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmet'], allow_failed_imports=False)

data_root = 'data/fashion-mnist'
full_size = 28

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        in_channels=1,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))

data_preprocessor = dict(num_classes=10, mean=[72.94], std=[90.0])

# RandAugment on mmpretrain's 0-10 scale; the curriculum ramps it to 9
demo_randaug = dict(
    type='StagedRandAug',
    magnitude_level=9,
    magnitude_std=0.5,
    policies=[
        dict(type='Rotate', magnitude_range=(0, 30)),
        dict(type='Shear', magnitude_range=(0, 0.3), direction='horizontal'),
        dict(type='Shear', magnitude_range=(0, 0.3), direction='vertical'),
        dict(type='Translate', magnitude_range=(0, 0.45),
             direction='horizontal'),
        dict(type='Translate', magnitude_range=(0, 0.45),
             direction='vertical'),
        dict(type='Brightness', magnitude_range=(0, 0.9)),
        dict(type='Sharpness', magnitude_range=(0, 0.9)),
        dict(type='Posterize', magnitude_range=(4, 0)),
        dict(type='Solarize', magnitude_range=(256, 0)),
    ],
    hparams=dict(pad_val=0))
train_pipeline = [
    dict(type='RandomCrop', crop_size=full_size, padding=2),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    demo_randaug,
    # full size: a no-op until the curriculum lowers it
    dict(type='FourierCrop', size=full_size),
    dict(type='PackInputs'),
]
# The same augmentation batched in the trainer (the *_batchaug.py and
# *_cropflip_*.py configs): the workers only pack the images, and
# DeviceAugmentPreprocessor pads and crops, flips, runs RandAugment and the
# Fourier crop on whole batches.
batchaug_preprocessor = dict(
    type='DeviceAugmentPreprocessor',
    crop_size=full_size,
    crop_padding=2,
    flip_prob=0.5,
    randaug={k: v for k, v in demo_randaug.items() if k != 'type'})
# packing costs ~75 us a sample: one worker stays 5x ahead of the model
batchaug_train_loader = dict(
    num_workers=1,
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=[dict(type='PackInputs')]))
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='FashionMNIST',
        data_root=data_root,
        split='train',
        download=False,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=500,
    num_workers=0,  # packing 28 px images is cheaper than forking a worker
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='FashionMNIST',
        data_root=data_root,
        split='test',
        test_mode=True,  # mmpretrain's MNIST picks its files by test_mode
        download=False,
        pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# the fast training step (mmet/fast_step.py), for every run of the demo
optim_wrapper = dict(
    constructor='FastStepConstructor',
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True))
max_epochs = 10
# one warm-up epoch, then a cosine to the end of training (T_max = max_epochs
# - 1; an ET++ loop runs the same over its budget, on the compute clock)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
