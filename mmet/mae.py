"""MAE pre-training at any bandwidth B of the curriculum.

mmpretrain's ``MAEViT`` and ``MAEPretrainDecoder`` add position embeddings
made for the configured image size (14 x 14 patches at 224 px), so a B x B
input from :class:`~mmet.transforms.FourierCrop` does not fit them. The two
classes here add the embeddings resized to the input's patch grid instead.
Nothing else changes: the same parameters with the same shapes (so every
checkpoint is a stock MAE checkpoint, and the encoder loads into mmpretrain's
fine-tuning ``VisionTransformer`` as before) and the same mask ratio, so the
number of visible patches follows B: ``int((B / p)^2 * (1 - mask_ratio))``.

The fixed sine-cosine tables are *interpolated* (bicubic, as mmpretrain's
``VisionTransformer`` does for its learned ones), not rebuilt for the smaller
grid: a low-B image covers the same field of view as the full-size one, only
with fewer, larger patches, so a patch's code must stay that of its place in
the image.
"""
from typing import Optional, Tuple

import torch
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.models.selfsup import MAEViT
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS


def patch_grid(x: torch.Tensor,
               patch_size: Tuple[int, int]) -> Tuple[int, int]:
    """The (rows, cols) of patches of a B x C x H x W batch, checked exact.

    Raises:
        ValueError: if H or W is not a multiple of the patch size, which
            would make the patch embedding pad and the pixel target
            (``MAEPretrainHead.patchify``) fail.
    """
    h, w = x.shape[-2:]
    ph, pw = patch_size
    if h % ph or w % pw:
        raise ValueError(
            f'MAE pre-training got a {h}x{w} input, which is not a multiple '
            f'of the {ph}x{pw} patch. Choose curriculum bandwidths whose B '
            f'is a multiple of the patch size (for a 224 px, p16 ViT: 96, '
            f'128, 160, 192, 224), e.g. the efficienttrain-mae preset or '
            "curriculum='efficienttrain++', family='mae'.")
    return h // ph, w // pw


@MODELS.register_module()
class ElasticMAEViT(MAEViT):
    """``MAEViT`` whose masked forward accepts any multiple of the patch.

    Same arguments as ``MAEViT``. The position embedding is resized to the
    input's patch grid; the mask ratio stays, so the visible patches number
    ``int(L * (1 - mask_ratio))`` with ``L`` the patches at that size.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.patch_size_hw = tuple(self.patch_embed.projection.kernel_size)

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[bool] = True
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``MAEViT.forward``, with the position embedding fitted to x.

        Without a mask, ``VisionTransformer.forward`` already resizes it.
        """
        if mask is None or mask is False:
            return super().forward(x, None)
        grid = patch_grid(x, self.patch_size_hw)
        batch = x.shape[0]
        x = self.patch_embed(x)[0]
        pos_embed = resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            grid,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = x + pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, self.mask_ratio)
        cls_token = self.cls_token + pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(batch, -1, -1), x), dim=1)
        for layer in self.layers:
            x = layer(x)
        return self.norm1(x), mask, ids_restore


@MODELS.register_module()
class ElasticMAEPretrainDecoder(MAEPretrainDecoder):
    """``MAEPretrainDecoder`` for any square patch grid.

    Same arguments as ``MAEPretrainDecoder``; ``num_patches`` stays the
    full-size count, and the decoder's position embedding is resized to the
    grid of ``ids_restore``.
    """

    def forward(self, x: torch.Tensor,
                ids_restore: torch.Tensor) -> torch.Tensor:
        """As ``MAEPretrainDecoder.forward`` at the grid of ids_restore."""
        full = int(self.num_patches**.5)
        side = int(round(ids_restore.shape[1]**.5))
        if side * side != ids_restore.shape[1]:
            raise ValueError(
                f'ElasticMAEPretrainDecoder needs a square patch grid, got '
                f'{ids_restore.shape[1]} patches. Use square inputs (the '
                'MAE pixel target requires them too).')
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(
            x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(
            x_, dim=1,
            index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + resize_pos_embed(self.decoder_pos_embed, (full, full),
                                 (side, side))
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]


def check_mae_model(model: torch.nn.Module) -> None:
    """Refuse a stock MAE encoder or decoder for inputs below full size.

    Raises:
        RuntimeError: naming the modules to swap for the elastic ones.
    """
    stock = sorted({
        type(m).__name__
        for m in model.modules()
        if type(m) in (MAEViT, MAEPretrainDecoder)
    })
    if stock:
        raise RuntimeError(
            f'The curriculum lowers the input size B, but the model has '
            f'{" and ".join(stock)}, whose position embeddings only fit the '
            "full size. Use type='ElasticMAEViT' for the backbone and "
            "type='ElasticMAEPretrainDecoder' for the neck (same arguments; "
            'see configs/mae/).')
