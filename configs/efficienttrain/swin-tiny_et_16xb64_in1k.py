# Swin-T, 300 epochs, EfficientTrain (paper: 81.3 -> 81.4 top-1, 1.49x).
# EfficientTrainHook sets the window to B / 32 in each stage (5 at 160, 6
# at 192, 7 at 224) by itself, as the official code does, so no feature map
# is padded;
# the bias tables keep their 7x7 shape and the checkpoints are stock Swin's.
_base_ = [
    'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
    '../_base_/efficienttrain.py',
]

train_dataloader = dict(dataset=dict(pipeline=_base_.et_train_pipeline))
custom_hooks = [_base_.et_hook]
