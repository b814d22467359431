# MAE pre-training of ViT-B/16 with the EfficientTrain curriculum: five equal
# stages at B = 160, 160, 160, 192, 224 px (preset 'efficienttrain-mae').
# MAE has no RandAugment, so only B changes; mmpretrain's recipe is otherwise
# untouched (300 epochs, AdamW, 40 warm-up epochs, mask ratio 0.75).
#
# - FourierCrop takes each random-resized crop down to B, after the flip.
# - ElasticMAEViT / ElasticMAEPretrainDecoder are mmpretrain's MAEViT and
#   MAEPretrainDecoder with their (fixed, sine-cosine) position embeddings
#   interpolated to the B/16 x B/16 patch grid; the mask ratio stays, so the
#   visible patches follow B: 25, 25, 25, 36, 49 of 100, 100, 100, 144, 196.
#   Parameters and checkpoints are a stock MAE's.
# - Fine-tune with mmpretrain's recipe:
#   vit-base-p16_ft-from-et_8xb128-coslr-100e_in1k.py
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
custom_imports = dict(imports=['mmet'], allow_failed_imports=False)

model = dict(
    backbone=dict(type='ElasticMAEViT'),
    neck=dict(type='ElasticMAEPretrainDecoder'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='FourierCrop', size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='EfficientTrainHook', curriculum='efficienttrain-mae')
]
