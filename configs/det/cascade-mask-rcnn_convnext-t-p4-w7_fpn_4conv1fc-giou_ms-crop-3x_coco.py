# Cascade Mask R-CNN, ConvNeXt-T + FPN, 3x (36 epochs), COCO; the backbone
# comes from an mmet/mmpretrain ImageNet checkpoint
# (tools/extract_backbone.py). mmdet's 3x config unchanged but for the
# backbone checkpoint and fp32 by default (reference box/mask AP with the
# ImageNet ConvNeXt-T: 50.3/43.6, trained with mixed precision: add --amp on
# GPUs): the 1x config of this folder with mmdet's 36 epochs and LR steps at
# 27 and 33.
#
#   python tools/train.py configs/det/<this file> --amp \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
_base_ = [
    './cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_ms-crop-1x_coco.py',
    './_base_/crop_3x_schedule.py'
]

max_epochs = _base_.crop_3x_epochs
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = _base_.crop_3x_param_scheduler
