# RetinaNet, Swin-T + FPN, 1x (12 epochs), COCO; the backbone comes from an
# mmet/mmpretrain ImageNet checkpoint (tools/extract_backbone.py).
# The EfficientTrain paper reports 41.7 -> 41.8 box AP (baseline -> ET).
# mmdet's own Swin-T RetinaNet keeps RetinaNet's SGD; here the optimizer is
# the usual one for transformer backbones at 1x (AdamW 1e-4, wd 0.05, no
# decay on norms and position tables), 8 GPUs x 2 images.
#
#   python tools/train.py configs/det/retinanet_swin-t-p4-w7_fpn_1x_coco.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
checkpoint = 'work_dirs/backbones/swin-tiny.pth'  # noqa

_base_ = ['mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py']

custom_imports = dict(
    imports=['mmpretrain.models', 'mmet'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch='tiny',
        img_size=224,
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        # pad feature maps smaller than the 7x7 window, as detection Swin does
        pad_small_map=True,
        with_cp=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
