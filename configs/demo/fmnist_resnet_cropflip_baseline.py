# The demo's default baseline: the model, data, optimizer and schedule of
# fmnist_resnet_baseline.py with the recipe of a plain Fashion-MNIST
# training, random crop (2 px padding) and flip, and no RandAugment, batched
# in the trainer (DeviceAugmentPreprocessor; the workers only pack images).
# RandAugment at m=9 costs this short CPU training 4-7 points of top-1
# (README, Evidence); without it the baseline matches a bare PyTorch loop of
# the same work. tools/demo.py trains it on 16000 images for 10 epochs.
_base_ = ['./fmnist_resnet_baseline.py']

data_preprocessor = dict(_base_.batchaug_preprocessor, randaug=None)
train_dataloader = _base_.batchaug_train_loader
max_epochs = 10
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
