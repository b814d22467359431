# The demo baseline with its augmentation batched in the trainer: the data
# workers only pack the 28 px images (one stacked tensor per batch), and
# DeviceAugmentPreprocessor pads and crops, flips, runs RandAugment and the
# Fourier crop on whole batches of the model's device (the CPU here), with
# the same per-sample distribution as the baseline's CPU pipeline.
# On 2 CPU cores the per-sample pipeline costs a third of the model's time
# and does not shrink with B; batched, it costs a few percent, so a low-B
# stage runs at the model's pace (tools/benchmark_curriculum.py).
_base_ = ['./fmnist_resnet_baseline.py']

data_preprocessor = _base_.batchaug_preprocessor
train_dataloader = _base_.batchaug_train_loader
