# ConvNeXt-T, 300 epochs, EfficientTrain (paper: 82.1 -> 82.2 top-1, 1.49x).
# mmpretrain's recipe is the paper's Table 14 one (AdamW 4e-3 @ 4096, EMA).
_base_ = [
    'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
    '../_base_/efficienttrain.py',
]

train_dataloader = dict(dataset=dict(pipeline=_base_.et_train_pipeline))
custom_hooks = [
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
optim_wrapper = _base_.et_fast_step
train_cfg = dict(
    _base_.et_loop, _delete_=True, max_epochs=_base_.train_cfg.max_epochs)
default_hooks = dict(checkpoint=_base_.et_checkpoint)
