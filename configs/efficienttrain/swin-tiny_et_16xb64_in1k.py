# Swin-T, 300 epochs, EfficientTrain (paper: 81.3 -> 81.4 top-1, 1.49x).
# The curriculum sets the window to B / 32 in each stage (5 at 160, 6 at
# 192, 7 at 224) by itself, as the official code does, so no feature map is
# padded; the bias tables keep their 7x7 shape and the checkpoints are stock
# Swin's.
_base_ = [
    'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
    '../_base_/efficienttrain.py',
]

train_dataloader = dict(dataset=dict(pipeline=_base_.et_train_pipeline))
optim_wrapper = _base_.et_fast_step
train_cfg = dict(
    _base_.et_loop, _delete_=True, max_epochs=_base_.train_cfg.max_epochs)
default_hooks = dict(checkpoint=_base_.et_checkpoint)
