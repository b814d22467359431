# Cascade Mask R-CNN, Swin-T + FPN, 1x (12 epochs), COCO; the backbone comes
# from an mmet/mmpretrain ImageNet checkpoint (tools/extract_backbone.py).
# The EfficientTrain paper reports box/mask AP 48.1/41.5 (baseline) ->
# 48.2/41.8 (ET) -> 48.4/41.9 (ET++). The recipe is the Swin authors' 1x
# one for Cascade Mask R-CNN: 4conv1fc GIoU box heads, multi-scale 480-800
# with DETR-style crops, AdamW 1e-4, wd 0.05, drop path 0.2, 8 GPUs x 2.
# Heads and pipeline come from mmdet's ConvNeXt Cascade Mask R-CNN config.
# The Swin authors trained with mixed precision: add --amp on GPUs.
#
#   python tools/train.py configs/det/<this file> --amp \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
checkpoint = 'work_dirs/backbones/swin-tiny.pth'  # noqa

_base_ = [
    'mmdet::convnext/'
    'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]

custom_imports = dict(
    imports=['mmpretrain.models', 'mmet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch='tiny',
        img_size=224,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        # pad feature maps smaller than the 7x7 window, as detection Swin does
        pad_small_map=True,
        with_cp=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
