# The demo baseline with its augmentation batched in the trainer: the data
# workers only pack the 28 px images (one stacked tensor per batch), and
# DeviceAugmentPreprocessor pads and crops, flips, runs RandAugment and the
# Fourier crop on whole batches of the model's device (the CPU here), with
# the same per-sample distribution as the baseline's CPU pipeline.
# On 2 CPU cores the per-sample pipeline costs a third of the model's time
# and does not shrink with B; batched, it costs a few percent, so a low-B
# stage runs at the model's pace (tools/benchmark_curriculum.py).
_base_ = ['./fmnist_resnet_baseline.py']

data_preprocessor = dict(
    _delete_=True,
    type='DeviceAugmentPreprocessor',
    crop_size=_base_.full_size,
    crop_padding=2,
    flip_prob=0.5,
    randaug={k: v
             for k, v in _base_.train_pipeline[2].items() if k != 'type'},
    num_classes=10,
    mean=[72.94],
    std=[90.0])

# packing costs ~75 us a sample: one worker stays 5x ahead of the model
train_dataloader = dict(
    num_workers=1,
    collate_fn=dict(type='default_collate'),
    dataset=dict(pipeline=[dict(type='PackInputs')]))
