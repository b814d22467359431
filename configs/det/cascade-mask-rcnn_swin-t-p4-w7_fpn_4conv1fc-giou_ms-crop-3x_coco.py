# Cascade Mask R-CNN, Swin-T + FPN, 3x (36 epochs), COCO; the backbone comes
# from an mmet/mmpretrain ImageNet checkpoint (tools/extract_backbone.py).
# The Swin authors' 3x recipe: the 1x config of this folder with 36 epochs
# and LR steps at 27 and 33.
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

# 36 epochs with steps at 27 and 33 come from the base config
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
