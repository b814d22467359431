# fmnist_resnet_et.py with the batched augmentation of
# fmnist_resnet_baseline_batchaug.py: the hook drives B and m in the
# DeviceAugmentPreprocessor instead of the workers' pipeline.
_base_ = ['./fmnist_resnet_baseline_batchaug.py']

custom_hooks = [dict(type='EfficientTrainHook', curriculum='efficienttrain')]
