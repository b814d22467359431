# Cascade Mask R-CNN, ConvNeXt-T + FPN, 1x (12 epochs), COCO; the backbone
# comes from an mmet/mmpretrain ImageNet checkpoint
# (tools/extract_backbone.py). mmdet's ConvNeXt-T 3x recipe (4conv1fc GIoU
# heads, multi-scale 480-800 with DETR-style crops, AdamW 2e-4, layer-wise
# LR decay 0.7, drop path 0.4, 8 GPUs x 2 images) shortened to 12 epochs.
# mmdet's reference run used mixed precision: add --amp on GPUs.
#
#   python tools/train.py configs/det/<this file> --amp \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
checkpoint = 'work_dirs/backbones/convnext-tiny.pth'  # noqa

_base_ = [
    'mmdet::convnext/'
    'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]

custom_imports = dict(
    imports=['mmpretrain.models', 'mmet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

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

optim_wrapper = dict(type='OptimWrapper')
