# The demo with EfficientTrain++: ten stages of equal compute, RandAugment
# m = 0..9, and B = 96, 160, 224 of 224 scaled to 28 px: 12 px (2 stages),
# 20 px (4 stages), 28 px (4 stages). Model, data and optimizer are the
# baseline's.
#
# ET++ trains for a compute budget, not for max_epochs: speedup=1.5 against
# the baseline's 10 epochs gives E = 6.67 full-size-equivalent epochs, about
# what the ET run costs (1.53x), and the loop derives 15 real epochs from it.
# tools/demo.py sets baseline_epochs to its --epochs.
_base_ = ['./fmnist_resnet_baseline.py']

train_cfg = dict(
    _delete_=True,
    type='EfficientTrainLoop',
    curriculum='efficienttrain++',
    family='resnet',
    speedup=1.5,
    baseline_epochs=10,
    val_interval=1)
# The inherited param_scheduler (one warm-up epoch, then cosine) runs on the
# compute clock, over a full-size run of E epochs: the cosine ends with the
# budget.
