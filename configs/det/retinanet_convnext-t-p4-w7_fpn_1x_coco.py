# RetinaNet, ConvNeXt-T + FPN, 1x (12 epochs), COCO; the backbone comes from
# an mmet/mmpretrain ImageNet checkpoint (tools/extract_backbone.py).
# mmdet has no ConvNeXt RetinaNet; this takes mmdet's RetinaNet with the
# ConvNeXt authors' 1x detection optimizer (AdamW 1e-4, wd 0.05, layer-wise
# LR decay 0.95 over 6 layers, drop path 0.4), 8 GPUs x 2 images.
#
#   python tools/train.py configs/det/retinanet_convnext-t-p4-w7_fpn_1x_coco.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
checkpoint = 'work_dirs/backbones/convnext-tiny.pth'  # noqa

_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']

custom_imports = dict(
    imports=['mmpretrain.models', 'mmet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ConvNeXt',
        arch='tiny',
        out_indices=[1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg={
        'decay_rate': 0.95,
        'decay_type': 'layer_wise',
        'num_layers': 6
    },
    optimizer=dict(
        type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05))
