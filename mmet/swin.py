"""Swin windows that follow the curriculum's bandwidth B.

At B < 224, Swin-T's last feature map is B/32 px: smaller than its 7x7
window, so ``pad_small_map=True`` pads it (and the maps before it) up to
multiples of 7, and a low-B stage pays for padding. The official
EfficientTrain code rebuilds Swin with window = B/32 at every stage switch,
interpolating each relative-position-bias table and its optimizer moments,
and back at full size.

Here the tables keep their full-size shape for the whole run. At a smaller
window each attention layer computes its bias from the full table by
bicubic interpolation, inside the autograd graph, so the gradient reaches
the one full-size table. No parameter or buffer changes shape: DDP, the
optimizer state and every checkpoint stay exactly those of a stock Swin,
and there is no lossy back-and-forth interpolation of the weights.

:class:`SwinWindows` fits the windows of a model to each stage's B;
:class:`~mmet.driver.StageDriver` finds them in any model with mmpretrain's
(v1) Swin window attention and sets them with every stage, and the hook
restores the full window for validation, testing, checkpoints and after
training. ``SwinWindowHook``, the older explicit form, is a deprecated
no-op.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.models.utils import ShiftWindowMSA, WindowMSA
from mmpretrain.registry import HOOKS


class ElasticWindowMSA(WindowMSA):
    """:class:`WindowMSA` whose window may be smaller than its bias table's.

    Instances are made from built ``WindowMSA`` modules by
    :func:`set_swin_window` (their class is switched in place; parameters
    and buffers are untouched). At the full window, ``forward`` is
    ``WindowMSA.forward`` itself.
    """

    full_window: tuple
    full_shift: bool  # whether its block shifts (by half the window)
    _index_cache: Dict[tuple, torch.Tensor]

    def relative_bias(self) -> torch.Tensor:
        """The (heads, N, N) relative position bias of the current window."""
        wh, ww = self.window_size
        fh, fw = self.full_window
        heads = self.relative_position_bias_table.shape[1]
        table = self.relative_position_bias_table.T.reshape(
            1, heads, 2 * fh - 1, 2 * fw - 1)
        table = F.interpolate(
            table, size=(2 * wh - 1, 2 * ww - 1), mode='bicubic',
            align_corners=False).reshape(heads, -1)
        key = (wh, ww, table.device)
        if key not in self._index_cache:
            seq = self.double_step_seq(2 * ww - 1, wh, 1, ww)
            index = (seq + seq.T).flip(1).reshape(-1)
            self._index_cache[key] = index.to(table.device)
        return table[:, self._index_cache[key]].reshape(
            heads, wh * ww, wh * ww)

    def forward(self, x: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if tuple(self.window_size) == self.full_window:
            return super().forward(x, mask)
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads,
                                  C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1) + self.relative_bias().unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N,
                             N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        attn = self.attn_drop(self.softmax(attn))
        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(x))


def set_swin_window(model: torch.nn.Module, window: Optional[int]) -> int:
    """Set every Swin window of ``model`` to ``window`` (None: full size).

    Shifted blocks keep shifting by half the window. Returns the number of
    attention layers changed; 0 means the model has no Swin windows.

    Raises:
        ValueError: if ``window`` is larger than a layer's full window (its
            bias table has no entries that far apart) or not positive.
    """
    count = 0
    for module in model.modules():
        # Swin-v2's WindowMSAV2 computes its bias otherwise: left alone
        if not isinstance(module, ShiftWindowMSA) or \
                type(module.w_msa) not in (WindowMSA, ElasticWindowMSA):
            continue
        msa = module.w_msa
        if not isinstance(msa, ElasticWindowMSA):
            full = tuple(msa.window_size)
            msa.__class__ = ElasticWindowMSA
            msa.full_window, msa._index_cache = full, {}
            msa.full_shift = bool(module.shift_size)
        full_size = msa.full_window[0]
        size = full_size if window is None else int(window)
        if not 0 < size <= full_size:
            raise ValueError(
                f'Swin window {size} is outside 1..{full_size} (the window '
                'the model was built with); the curriculum sets '
                'window = B / 32, so B must not exceed the full size.')
        module.window_size = size
        module.shift_size = size // 2 if msa.full_shift else 0
        msa.window_size = (size, size)
        count += 1
    return count


def window_stride(model: torch.nn.Module) -> int:
    """The down-sampling of a Swin's last stage: patch x 2^(stages - 1)
    (32 for Swin-T); 32 if the model does not say."""
    for m in model.modules():
        embed, stages = getattr(m, 'patch_embed', None), \
            getattr(m, 'stages', None)
        stride = getattr(getattr(embed, 'projection', None), 'stride', None)
        if stride is not None and stages is not None:
            return int(stride[0]) * 2**(len(stages) - 1)
    return 32


class SwinWindows:
    """The Swin windows of a model, fitted to each stage's B.

    The window of a stage is ``B // stride`` (at most the built window), as
    in the official code: 160 -> 5, 192 -> 6, 224 -> 7 for Swin-T.

    Args:
        model (nn.Module): A model with mmpretrain (v1) Swin attention.
        stride (int, optional): Down-sampling of the last Swin stage;
            default from the model (:func:`window_stride`).
    """

    def __init__(self, model: torch.nn.Module, stride: Optional[int] = None):
        self.model = model
        self.stride = stride or window_stride(model)
        self.window: Optional[int] = None

    @classmethod
    def find(cls, model: torch.nn.Module) -> Optional['SwinWindows']:
        """The windows of ``model``, or None if it has no Swin windows."""
        return cls(model) if set_swin_window(model, None) else None

    def window_for(self, size) -> int:
        h = size if isinstance(size, int) else min(size)
        return max(1, h // self.stride)

    def set_size(self, size) -> int:
        """Fit the windows to an input of ``size``; returns the window."""
        self.window = self.window_for(size)
        full = {m.full_window[0] for m in self.model.modules()
                if isinstance(m, ElasticWindowMSA)}
        set_swin_window(self.model, min([self.window, *full]))
        return self.window

    def reset(self) -> None:
        """The full windows: for validation, testing and checkpoints."""
        set_swin_window(self.model, None)


@HOOKS.register_module()
class SwinWindowHook(Hook):
    """Deprecated: the curriculum fits Swin windows to B by itself.

    :class:`~mmet.driver.StageDriver` finds the Swin windows of any model
    and sets window = B // 32 with every stage; this hook does nothing but
    say so. Remove it from ``custom_hooks``.
    """

    def __init__(self, stride: int = 32) -> None:
        self.stride = stride

    def before_train(self, runner) -> None:
        print_log(
            'SwinWindowHook is deprecated and does nothing: the curriculum '
            'fits Swin windows to each stage\'s B by itself. Remove it from '
            'custom_hooks.', logger='current', level=30)
