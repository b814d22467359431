"""MAE pre-training with the curriculum, then mmpretrain fine-tuning."""
import os.path as osp

import pytest
import torch
from conftest import ROOT, tiny_cfg
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

from mmet.curriculum import Curriculum

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

PRETRAIN = osp.join(ROOT, 'configs/demo/fmnist_mae_vit_et.py')
FINETUNE = osp.join(ROOT, 'configs/demo/fmnist_vit_ft.py')
TINY = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def tiny_mae(elastic=True):
    prefix = 'Elastic' if elastic else ''
    return dict(
        type='MAE',
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor', mean=[128] * 3, std=[64] * 3),
        backbone=dict(type=f'{prefix}MAEViT', arch=TINY, img_size=32,
                      patch_size=4, mask_ratio=0.75),
        neck=dict(type=f'{prefix}MAEPretrainDecoder', num_patches=64,
                  patch_size=4, embed_dim=32, decoder_embed_dim=16,
                  decoder_depth=1, decoder_num_heads=2),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=4,
                  loss=dict(type='PixelReconstructionLoss',
                            criterion='L2')))


def test_full_size_is_stock_mae_and_visible_patches_follow_b():
    torch.manual_seed(0)
    elastic = MODELS.build(tiny_mae())
    stock = MODELS.build(tiny_mae(elastic=False))
    stock.load_state_dict(elastic.state_dict())  # same parameters
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    a = elastic.backbone(x)
    torch.manual_seed(1)
    b = stock.backbone(x)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    torch.testing.assert_close(elastic.neck(a[0], a[2]),
                               stock.neck(b[0], b[2]))
    for size in (16, 20, 24, 32):
        grid = size // 4
        latent, mask, ids = elastic.backbone(torch.randn(2, 3, size, size))
        visible = int(grid * grid * 0.25)
        assert latent.shape[1] == 1 + visible  # cls token + visible patches
        assert mask.shape == (2, grid * grid)
        assert (mask == 0).sum(1).tolist() == [visible] * 2
        pred = elastic.neck(latent, ids)
        assert pred.shape == (2, grid * grid, 4 * 4 * 3)
        loss = elastic.loss(torch.randn(2, 3, size, size), [])['loss']
        assert torch.isfinite(loss)


def test_position_codes_are_interpolated_over_the_same_field_of_view():
    model = MODELS.build(tiny_mae())
    model.init_weights()
    seen = {}
    model.backbone.patch_embed.register_forward_hook(
        lambda m, i, o: seen.setdefault('tokens', o[0]))
    # no masking: every patch visible, in order
    model.backbone.mask_ratio = 0.0
    x = torch.zeros(1, 3, 16, 16)
    model.backbone.layers = torch.nn.ModuleList()  # only the embedding
    model.backbone.ln1 = torch.nn.Identity()
    latent, _, ids = model.backbone(x)
    # unshuffle the kept tokens, take the patch embedding off
    pos = (latent[0, 1:][ids[0]] - seen['tokens'][0]).reshape(4, 4, -1)
    full = model.backbone.pos_embed[0, 1:].reshape(8, 8, -1)
    # a 4x4 grid over the same image: each code is closest to one of the
    # four full-grid codes it covers, not to the 4x4 corner of the full grid
    flat = torch.nn.functional.normalize(full.reshape(64, -1), dim=1)
    for r in range(4):
        for c in range(4):
            code = torch.nn.functional.normalize(pos[r, c], dim=0)
            nearest = int(torch.argmax(flat @ code))
            assert (nearest // 8) // 2 == r and (nearest % 8) // 2 == c, \
                (r, c, divmod(nearest, 8))


def test_sizes_that_are_not_multiples_of_the_patch_are_refused():
    model = MODELS.build(tiny_mae())
    with pytest.raises(ValueError, match=r'18x18 input.*multiple of the 4x4'):
        model.backbone(torch.randn(1, 3, 18, 18))


def test_hook_refuses_a_stock_mae_below_full_size(tmp_path):
    cfg = tiny_cfg(tmp_path, model=tiny_mae(elastic=False),
                   custom_hooks=[dict(type='EfficientTrainHook',
                                      curriculum='efficienttrain-mae')],
                   max_epochs=1)
    cfg['train_dataloader']['dataset']['pipeline'] = [
        dict(type='FourierCrop', size=32), dict(type='PackInputs')]
    runner = Runner.from_cfg(Config(cfg))
    with pytest.raises(RuntimeError,
                       match=r"MAEPretrainDecoder and MAEViT.*"
                             r"type='ElasticMAEViT'"):
        runner.train()


def test_mae_presets_change_only_b_in_patch_multiples():
    for curriculum in (Curriculum.build('efficienttrain-mae'),
                       Curriculum.build('efficienttrain++', family='mae')):
        assert {s.magnitude for s in curriculum.stages} == {0}
        assert all(round(s.bandwidth * 224) % 16 == 0
                   for s in curriculum.stages)
        assert curriculum.stages[-1].bandwidth == 1


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory, ):
    """Pre-train the demo's tiny MAE for 2 epochs, across a stage switch."""
    work = tmp_path_factory.mktemp('mae')
    cfg = Config.fromfile(PRETRAIN)
    cfg.work_dir = str(work)
    cfg.train_dataloader.dataset.indices = 512
    cfg.train_cfg.max_epochs = 2
    cfg.custom_hooks = [dict(
        type='EfficientTrainHook',
        curriculum=[dict(share=0.5, bandwidth=20 / 28, magnitude=0),
                    dict(share=0.5, bandwidth=1.0, magnitude=0)])]
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    visible, inputs = {}, {}
    runner.model.backbone.register_forward_hook(
        lambda m, i, o: visible.setdefault(runner.epoch, set()).add(
            o[0].shape[1] - 1))
    runner.model.backbone.register_forward_pre_hook(
        lambda m, i: inputs.setdefault(runner.epoch, set()).add(
            tuple(i[0].shape[-2:])))
    runner.train()
    return dict(work=work, visible=visible, inputs=inputs,
                model=runner.model, runner=runner)


def test_pretraining_switches_stage_in_workers_and_visible_patches_follow(
        pretrained):
    runner = pretrained['runner']
    assert runner.train_dataloader.num_workers == 2
    assert runner.train_dataloader.persistent_workers
    # stage 1 at B=20 (5x5 patches), stage 2 at 28 (7x7), mask ratio 0.75
    assert pretrained['inputs'] == {0: {(20, 20)}, 1: {(28, 28)}}
    assert pretrained['visible'] == {0: {6}, 1: {12}}
    ckpt = torch.load(osp.join(pretrained['work'], 'epoch_2.pth'),
                      map_location='cpu', weights_only=False)
    assert ckpt['meta']['efficienttrain']['curriculum'][0]['bandwidth'] == \
        pytest.approx(20 / 28)
    # a stock MAE checkpoint: the full-size position table
    assert ckpt['state_dict']['backbone.pos_embed'].shape == (1, 50, 64)


def test_checkpoint_loads_into_finetuning_with_every_encoder_key(
        pretrained, fmnist, tmp_path):
    ckpt = osp.join(pretrained['work'], 'epoch_2.pth')
    cfg = Config.fromfile(FINETUNE)
    cfg.work_dir = str(tmp_path)
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    cfg.train_dataloader.dataset.indices = 256
    cfg.val_dataloader.dataset.indices = 200
    cfg.train_cfg.max_epochs = 2  # warm-up epoch + cosine epoch
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()  # the config's init_cfg: Pretrained
    encoder = {
        k[len('backbone.'):]: v
        for k, v in torch.load(ckpt, map_location='cpu',
                               weights_only=False)['state_dict'].items()
        if k.startswith('backbone.')
    }
    backbone = runner.model.backbone.state_dict()
    # ln2 is the fine-tuning's new norm before pooling, as in mmpretrain's
    # MAE recipe; ln1 is pre-training's final norm, unused there
    assert sorted(set(backbone) - set(encoder)) == ['ln2.bias', 'ln2.weight']
    assert sorted(set(encoder) - set(backbone)) == ['ln1.bias', 'ln1.weight']
    for key in set(backbone) & set(encoder):
        torch.testing.assert_close(backbone[key], encoder[key], msg=key)
    runner.train()
    assert runner.epoch == 2
    assert 0 <= runner.message_hub.get_scalar(
        'val/accuracy/top1').current() <= 100


def test_vit_b_configs_inherit_mmpretrain_mae():
    et = Config.fromfile(osp.join(
        ROOT, 'configs/mae/mae_vit-base-p16_et_8xb512-amp-coslr-300e_in1k.py'))
    assert (et.model.backbone.type, et.model.neck.type) == \
        ('ElasticMAEViT', 'ElasticMAEPretrainDecoder')
    assert et.model.backbone.arch == 'b' and et.model.backbone.mask_ratio \
        == 0.75  # mmpretrain's, inherited
    assert [t.type for t in et.train_dataloader.dataset.pipeline][-2:] == \
        ['FourierCrop', 'PackInputs']
    assert et.custom_hooks == [dict(type='EfficientTrainHook',
                                    curriculum='efficienttrain-mae')]
    assert et.train_cfg.max_epochs == 300
    pp = Config.fromfile(osp.join(
        ROOT, 'configs/mae/mae_vit-base-p16_etpp-e200_8xb512-amp-coslr_in1k.py'))
    assert (pp.train_cfg.type, pp.train_cfg.family, pp.train_cfg.budget) == \
        ('EfficientTrainLoop', 'mae', 200)
    assert pp.param_scheduler[1].end == 200 and pp.custom_hooks == []
    plan = Curriculum.build('efficienttrain++', family='mae').plan(200)
    assert 300 / plan.compute_epochs(224) == pytest.approx(1.5, abs=0.01)
    ft = Config.fromfile(osp.join(
        ROOT, 'configs/mae/vit-base-p16_ft-from-et_8xb128-coslr-100e_in1k.py'))
    assert ft.model.backbone.type == 'VisionTransformer'
    assert ft.model.backbone.init_cfg.prefix == 'backbone.'
    assert ft.train_cfg.max_epochs == 100  # mmpretrain's recipe, unchanged
    # the real ViT-B/16 MAE pre-trains at the preset's lowest B
    model = MODELS.build(et.model)
    loss = model.loss(torch.randn(1, 3, 160, 160), [])['loss']
    assert torch.isfinite(loss)
    latent, _, _ = model.backbone(torch.randn(1, 3, 96, 96))
    assert latent.shape[1] == 1 + 9  # 36 patches at 96 px, 25% visible
