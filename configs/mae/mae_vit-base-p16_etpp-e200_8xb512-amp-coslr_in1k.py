# MAE pre-training of ViT-B/16 with EfficientTrain++ at E=200 (1.5x fewer
# FLOPs than mmpretrain's 300-epoch recipe). Ten stages of equal compute at
# B = 96 (2), 160 (4), 192 (2), 224 (2) px, the ViT bandwidths of ET++, all
# multiples of the 16 px patch (preset family 'mae': m stays 0, MAE has no
# RandAugment). The loop derives max_epochs and runs the schedule below on
# the compute clock: 40 warm-up epochs' worth of compute, then cosine to E.
_base_ = './mae_vit-base-p16_et_8xb512-amp-coslr-300e_in1k.py'

budget = 200  # E, full-size-equivalent epochs
train_cfg = dict(
    _delete_=True,
    type='EfficientTrainLoop',
    curriculum='efficienttrain++',
    family='mae',
    budget=budget,
    baseline_epochs=300)
# the loop registers EfficientTrainHook with its stages
custom_hooks = []
# mmpretrain's MAE schedule, written for a full-size run of E epochs
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.0001,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=budget - 40,
        by_epoch=True,
        begin=40,
        end=budget,
        convert_to_iter_based=True)
]
