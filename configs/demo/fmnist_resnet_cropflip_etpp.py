# The demo's EfficientTrain++ run: fmnist_resnet_cropflip_baseline.py with
# ET++'s ten stages of equal compute at ResNet's bandwidths, 96, 160 and 224
# of 224 (12, 20, 28 px): a stage at B gets a share of the epochs in 1 / B^2.
# As in the ET run, the recipe has no RandAugment and m stays 0.
#
# ET++ trains for a compute budget, not for max_epochs: speedup=1.5 against
# the baseline's 10 epochs gives E = 6.67 full-size-equivalent epochs, and
# the loop derives the real epochs from it. Nothing staged runs in the data
# workers (the low-pass is batched in the trainer), so the loop switches
# stages at iteration granularity: every stage gets its compute share.
_base_ = ['./fmnist_resnet_cropflip_baseline.py']

etpp_bandwidths = (96, ) * 2 + (160, ) * 4 + (224, ) * 4
train_cfg = dict(
    _delete_=True,
    type='EfficientTrainLoop',
    curriculum=[
        dict(share=b**-2 / sum(c**-2 for c in etpp_bandwidths),
             bandwidth=b / 224, magnitude=0) for b in etpp_bandwidths
    ],
    speedup=1.5,
    baseline_epochs=10,
    val_interval=5)
# The inherited param_scheduler (one warm-up epoch, then cosine) runs on the
# compute clock, over a full-size run of E epochs: the cosine ends with the
# budget.
