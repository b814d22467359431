# MAE pre-training of a tiny ViT (patch 4, 7 x 7 patches at 28 px) on
# Fashion-MNIST with the EfficientTrain curriculum: B = 20, 20, 20, 24, 28 px
# (the efficienttrain-mae preset scaled to 28 px; every B a multiple of the
# patch), mask ratio 0.75, so 6, 6, 6, 9, 12 visible patches. The same
# classes as configs/mae/ for ViT-B; fmnist_vit_ft.py fine-tunes the result.
# Data and runtime are the demo baseline's; MAE has no evaluation.
_base_ = ['./fmnist_resnet_baseline.py']

full_size = 28
patch_size = 4
tiny_vit = dict(embed_dims=64, num_layers=4, num_heads=4,
                feedforward_channels=128)

model = dict(
    _delete_=True,
    type='MAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor', mean=[72.94], std=[90.0]),
    backbone=dict(
        type='ElasticMAEViT',
        arch=tiny_vit,
        img_size=full_size,
        patch_size=patch_size,
        patch_cfg=dict(in_channels=1),
        mask_ratio=0.75),
    neck=dict(
        type='ElasticMAEPretrainDecoder',
        num_patches=(full_size // patch_size)**2,
        patch_size=patch_size,
        in_chans=1,
        embed_dim=64,
        decoder_embed_dim=32,
        decoder_depth=1,
        decoder_num_heads=4,
        mlp_ratio=2.),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=patch_size,
        in_channels=1,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

train_pipeline = [
    dict(type='RandomResizedCrop', scale=full_size,
         crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='FourierCrop', size=full_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                   weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
max_epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop',
                 max_epochs=max_epochs)

custom_hooks = [
    dict(type='EfficientTrainHook', curriculum='efficienttrain-mae')
]
