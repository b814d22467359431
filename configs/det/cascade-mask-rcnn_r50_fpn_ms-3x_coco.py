# Cascade Mask R-CNN, ResNet-50 + FPN, 3x with multi-scale training
# (640-800), COCO; the backbone comes from an mmet/mmpretrain ImageNet
# checkpoint (tools/extract_backbone.py). mmdet's recipe (SGD 0.02, 8x2
# images, RepeatDataset x3 over 12 epochs); reference box/mask AP with the
# torchvision ResNet-50: 44.3/38.5.
#
#   python tools/train.py configs/det/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
checkpoint = 'work_dirs/backbones/resnet50.pth'  # noqa

_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py']

custom_imports = dict(
    imports=['mmpretrain.models', 'mmet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))
