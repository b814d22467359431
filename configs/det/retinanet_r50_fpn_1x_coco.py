# RetinaNet, ResNet-50 + FPN, 1x (12 epochs), COCO; the backbone comes from
# an mmet/mmpretrain ImageNet checkpoint (tools/extract_backbone.py).
# mmdet's recipe (SGD 0.01, 8x2 images); reference box AP with the
# torchvision ResNet-50: 36.5 (mmdet metafile).
#
#   python tools/train.py configs/det/retinanet_r50_fpn_1x_coco.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
checkpoint = 'work_dirs/backbones/resnet50.pth'  # noqa

_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']

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
