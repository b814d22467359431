# Fine-tune the tiny ViT that fmnist_mae_vit_et.py pre-trained, with
# mmpretrain's fine-tuning structure: VisionTransformer initialised from the
# MAE checkpoint's encoder (prefix 'backbone.'), average-pooled patch tokens
# through a new norm (ln2), a linear head. The data, loaders and evaluation
# are the demo baseline's. Set the checkpoint with --cfg-options
#   model.backbone.init_cfg.checkpoint=work_dirs/fmnist_mae_vit_et/epoch_10.pth
_base_ = ['./fmnist_resnet_baseline.py']

tiny_vit = dict(embed_dims=64, num_layers=4, num_heads=4,
                feedforward_channels=128)
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=tiny_vit,
        img_size=28,
        patch_size=4,
        patch_cfg=dict(in_channels=1),
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/fmnist_mae_vit_et/epoch_10.pth',
            prefix='backbone.')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))
# no curriculum in fine-tuning: RandAugment at its final magnitude, full size
custom_hooks = []
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
