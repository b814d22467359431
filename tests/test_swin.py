"""Swin windows that follow B: the driver's SwinWindows and set_swin_window;
SwinWindowHook is a deprecated no-op."""
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import build_runner, tiny_cfg, tiny_pipeline
from mmengine.hooks import Hook
from mmpretrain.models import SwinTransformer
from mmpretrain.models.utils import ShiftWindowMSA, WindowMSA
from mmpretrain.registry import HOOKS

from mmet.swin import ElasticWindowMSA, set_swin_window

ARCH = dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2])


def tiny_swin(img_size=224, window=7):
    torch.manual_seed(0)
    model = SwinTransformer(arch=ARCH, img_size=img_size, window_size=window,
                            pad_small_map=True)
    model.init_weights()
    model.eval()  # mmpretrain's Swin.train() returns None
    return model


def feature_maps(model, x):
    """(H, W) seen by every window attention layer in a forward pass."""
    seen = []
    hooks = [m.register_forward_hook(
        lambda mod, args, out: seen.append((tuple(args[1]), mod.window_size)))
        for m in model.modules() if isinstance(m, ShiftWindowMSA)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def test_small_window_fits_the_maps_and_full_window_is_stock():
    model, stock = tiny_swin(), tiny_swin()
    x160, x224 = torch.randn(2, 3, 160, 160), torch.randn(2, 3, 224, 224)

    assert set_swin_window(model, 5) == 5  # five attention layers
    # window = B / 32: every map is a whole number of windows, no padding
    for (h, w), win in feature_maps(model, x160):
        assert win == 5 and h % 5 == 0 and w % 5 == 0
    # the stock model pads 40, 20, 10, 5 up to multiples of 7
    assert any(h % 7 for (h, _), _ in feature_maps(stock, x160))

    set_swin_window(model, None)
    with torch.no_grad():
        for a, b in zip(model(x224), stock(x224)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # nothing changed shape: the state dict is a stock Swin's
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in stock.state_dict().items()}


def test_bias_is_the_interpolated_full_table_and_trains_it():
    msa = WindowMSA(16, (7, 7), 2)
    torch.nn.init.normal_(msa.relative_position_bias_table)
    msa.__class__ = ElasticWindowMSA
    msa.full_window, msa._index_cache = (7, 7), {}
    msa.window_size = (5, 5)
    ref = WindowMSA(16, (5, 5), 2)  # a stock layer built for window 5
    table = F.interpolate(
        msa.relative_position_bias_table.detach().T.reshape(1, 2, 13, 13),
        size=(9, 9), mode='bicubic', align_corners=False).reshape(2, -1)
    expected = table[:, ref.relative_position_index.reshape(-1)]
    torch.testing.assert_close(msa.relative_bias().detach(),
                               expected.reshape(2, 25, 25))
    msa(torch.randn(3, 25, 16)).square().sum().backward()
    grad = msa.relative_position_bias_table.grad
    assert grad.shape == (169, 2) and grad.abs().sum() > 0


def test_windows_larger_than_built_are_refused():
    with pytest.raises(ValueError, match='outside 1..7'):
        set_swin_window(tiny_swin(), 8)


@HOOKS.register_module(force=True)
class WindowRecorder(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.train, self.val = {}, {}

    @staticmethod
    def _windows(runner):
        return {m.window_size for m in runner.model.modules()
                if isinstance(m, ShiftWindowMSA)}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.train.setdefault(runner.epoch, set()).update(
            self._windows(runner))

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self.val.setdefault(runner.epoch, set()).update(
            self._windows(runner))


def swin_cfg(work_dir, hooks):
    # 96 px with window 3 (= 96 / 32); B = 64 gives window 2
    cfg = tiny_cfg(work_dir, max_epochs=4, pipeline=tiny_pipeline(96),
                   custom_hooks=hooks)
    cfg['train_dataloader']['dataset'].update(size=96, num=16)
    cfg['model']['backbone'] = dict(
        type='SwinTransformer', arch=ARCH, img_size=96, window_size=3,
        pad_small_map=True)
    cfg['model']['head']['in_channels'] = 128
    cfg['val_dataloader'] = copy.deepcopy(cfg['train_dataloader'])
    cfg['val_dataloader']['dataset']['pipeline'] = [dict(type='PackInputs')]
    cfg['val_dataloader'].update(num_workers=0, persistent_workers=False,
                                 sampler=dict(type='DefaultSampler',
                                              shuffle=False))
    cfg.update(val_evaluator=dict(type='Accuracy'), val_cfg=dict(),
               train_cfg=dict(by_epoch=True, max_epochs=4, val_interval=1))
    return cfg


def test_hook_sets_the_window_per_stage_and_keeps_a_stock_checkpoint(
        tmp_path):
    hooks = [dict(type='EfficientTrainHook', curriculum=[
        dict(share=0.5, bandwidth=2 / 3, magnitude=5),
        dict(share=0.5, bandwidth=1.0, magnitude=9)]),
        dict(type='SwinWindowHook'), dict(type='WindowRecorder')]
    runner = build_runner(swin_cfg(tmp_path / 'work', hooks))
    runner.train()
    rec = next(h for h in runner.hooks if isinstance(h, WindowRecorder))
    assert rec.train == {0: {2}, 1: {2}, 2: {3}, 3: {3}}
    assert rec.val == {e: {3} for e in range(1, 5)}  # full size for eval
    # the checkpoint is a stock Swin's: loads strictly, same shapes
    state = torch.load(tmp_path / 'work' / 'epoch_4.pth',
                       weights_only=False)['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    stock = SwinTransformer(arch=ARCH, img_size=96, window_size=3,
                            pad_small_map=True)
    stock.load_state_dict(backbone, strict=True)


def test_efficienttrain_hook_sets_the_window_without_swin_window_hook(
        tmp_path):
    hooks = [dict(type='EfficientTrainHook', curriculum=[
        dict(share=0.5, bandwidth=2 / 3, magnitude=5),
        dict(share=0.5, bandwidth=1.0, magnitude=9)]),
        dict(type='WindowRecorder')]
    runner = build_runner(swin_cfg(tmp_path / 'work', hooks))
    runner.train()
    rec = next(h for h in runner.hooks if isinstance(h, WindowRecorder))
    assert rec.train == {0: {2}, 1: {2}, 2: {3}, 3: {3}}
    assert rec.val == {e: {3} for e in range(1, 5)}  # full size for eval


def test_swin_window_hook_is_a_deprecated_no_op(tmp_path):
    """Configs that still list SwinWindowHook train as without it, and say
    so; without an EfficientTrainHook or a Swin it refuses nothing."""
    runner = build_runner(tiny_cfg(tmp_path / 'b', max_epochs=2, custom_hooks=[
        dict(type='EfficientTrainHook', curriculum='efficienttrain'),
        dict(type='SwinWindowHook')]))
    runner.train()
    assert runner.epoch == 2
    log = next((tmp_path / 'b').glob('*/*.log')).read_text()
    assert 'SwinWindowHook is deprecated and does nothing' in log
