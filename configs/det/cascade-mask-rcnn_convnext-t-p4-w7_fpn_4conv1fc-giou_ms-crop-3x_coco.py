# Cascade Mask R-CNN, ConvNeXt-T + FPN, 3x (36 epochs), COCO; the backbone
# comes from an mmet/mmpretrain ImageNet checkpoint
# (tools/extract_backbone.py). mmdet's config unchanged but for the backbone
# checkpoint and fp32 by default (reference box/mask AP with the ImageNet
# ConvNeXt-T: 50.3/43.6, trained with mixed precision: add --amp on GPUs).
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

# mmdet's AdamW 2e-4 with layer-wise LR decay 0.7 is kept; --amp restores
# the AmpOptimWrapper of the reference run
optim_wrapper = dict(type='OptimWrapper')
