# Cascade Mask R-CNN, ResNet-50 + FPN, 3x with multi-scale training
# (640-800), COCO; the backbone comes from an mmet/mmpretrain ImageNet
# checkpoint (tools/extract_backbone.py). The 1x config of this folder with
# mmdet's ms-3x recipe (mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_
# coco.py): the 12-epoch schedule over 3 repeats of the data with steps at 9
# and 11, multi-scale training, and, as there, box AP only (add
# metric=['bbox', 'segm'] to the evaluators for mask AP). Reference box/mask
# AP with the torchvision ResNet-50: 44.3/38.5.
#
#   python tools/train.py configs/det/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=BACKBONE.pth
_base_ = ['./cascade-mask-rcnn_r50_fpn_1x_coco.py']

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomResize', scale=[(1333, 640), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=3,
        dataset=dict(_base_.train_dataloader.dataset,
                     pipeline=train_pipeline)))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[9, 11],
        gamma=0.1)
]
val_evaluator = dict(metric='bbox')
test_evaluator = dict(metric='bbox')
