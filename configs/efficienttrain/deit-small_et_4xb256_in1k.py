# DeiT-S, 300 epochs, EfficientTrain (paper: 80.3 -> 80.4 top-1, 1.51x).
# mmpretrain's VisionTransformer resizes pos_embed on the fly, so B = 160 and
# 192 (10x10 and 12x12 patches) need no model change.
_base_ = [
    'mmpretrain::deit/deit-small_4xb256_in1k.py',
    '../_base_/efficienttrain.py',
]

train_dataloader = dict(dataset=dict(pipeline=_base_.et_train_pipeline))
optim_wrapper = _base_.et_fast_step
train_cfg = dict(
    _base_.et_loop, _delete_=True, max_epochs=_base_.train_cfg.max_epochs)
default_hooks = dict(checkpoint=_base_.et_checkpoint)
