# The 3x schedule of mmdet's ConvNeXt and Swin "ms-crop" Cascade Mask R-CNN
# configs (and the Swin authors'): 36 epochs, a linear warm-up over the first
# 1000 iterations, LR steps at epochs 27 and 33. Names of their own, so a 3x
# config can inherit its 1x config and this fragment together.
crop_3x_epochs = 36
crop_3x_param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=crop_3x_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
