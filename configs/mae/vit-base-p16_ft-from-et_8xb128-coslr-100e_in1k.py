# Fine-tune a ViT-B/16 pre-trained by MAE with the curriculum, with
# mmpretrain's standard MAE fine-tuning recipe (100 epochs, layer-wise lr
# decay, RandAugment, mixup/cutmix), unchanged. The pre-training checkpoint
# is a stock MAE checkpoint: give it as
#   --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<run>/epoch_300.pth
# Its encoder loads with no missing key; only ln2, the fine-tuning's new
# norm before the average pooling, starts fresh, as in the stock recipe.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/mae_vit-base-p16_et_8xb512-amp-coslr-300e_in1k/epoch_300.pth',  # noqa: E501
            prefix='backbone.')))
