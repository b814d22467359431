# The demo with the EfficientTrain curriculum: five equal stages,
# B = 20, 20, 20, 24, 28 px (160/192/224 of 224, scaled to 28) and
# RandAugment m = 1, 3, 5, 7, 9. Everything else is the baseline's.
_base_ = ['./fmnist_resnet_baseline.py']

custom_hooks = [dict(type='EfficientTrainHook', curriculum='efficienttrain')]
