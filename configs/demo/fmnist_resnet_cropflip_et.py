# The demo's EfficientTrain run: fmnist_resnet_cropflip_baseline.py with ET's
# five equal stages of bandwidth B = 160, 160, 160, 192, 224 of 224 (20, 20,
# 20, 24, 28 px). The recipe has no RandAugment, so ET's magnitude ramp has
# nothing to act on and m stays 0: the curriculum is ET's low-pass schedule.
_base_ = ['./fmnist_resnet_cropflip_baseline.py']

custom_hooks = [
    dict(
        type='EfficientTrainHook',
        curriculum=[
            dict(share=0.2, bandwidth=b / 224, magnitude=0)
            for b in (160, 160, 160, 192, 224)
        ])
]
