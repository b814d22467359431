# Cascade Mask R-CNN, Swin-T + FPN, 3x (36 epochs), COCO; the backbone comes
# from an mmet/mmpretrain ImageNet checkpoint (tools/extract_backbone.py).
# The Swin authors' 3x recipe: the 1x config of this folder with 36 epochs
# and LR steps at 27 and 33.
# The Swin authors trained with mixed precision: add --amp on GPUs.
#
#   python tools/train.py configs/det/<this file> --amp \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
_base_ = [
    './cascade-mask-rcnn_swin-t-p4-w7_fpn_4conv1fc-giou_ms-crop-1x_coco.py',
    './_base_/crop_3x_schedule.py'
]

max_epochs = _base_.crop_3x_epochs
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = _base_.crop_3x_param_scheduler
