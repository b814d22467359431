"""Write the backbone of an mmet/mmpretrain classification checkpoint.

    python tools/extract_backbone.py CKPT OUT [--ema] [--force]
        [--arch {auto,resnet50,swin-tiny,convnext-tiny}]

OUT must not be CKPT, and an existing OUT is only replaced with --force.

The output holds ``state_dict`` with the ``backbone.*`` tensors only (the
prefix is kept) and ``meta``, so mmdet loads it with
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``, as
every config in ``configs/det/`` does. ``meta`` keeps the source's meta (the
curriculum in ``meta['efficienttrain']``, the training config in
``meta['cfg']``, epoch, seed, ...) and adds ``meta['backbone']``: the arch,
the source path and SHA-256, and whether EMA weights were taken. The file
holds only tensors and plain Python values, so it also loads with
``torch.load(OUT, weights_only=True)``.

EMA: mmengine's ``EMAHook`` saves the *averaged* weights in ``state_dict``
(so that the file deploys as is) and the live model's weights in
``ema_state_dict`` under ``module.<name>`` (swapped back on resume). This
tool reads both the same way: ``--ema`` takes the averaged weights, the
default takes the live (non-averaged) ones.

The checkpoint is checked against the named mmpretrain backbone built from
scratch: same tensor names, same shapes (for Swin: relative position tables
at the final 7x7 window). Anything else, such as a detector checkpoint, a
ResNet checkpoint given with ``--arch swin-tiny`` or a Swin trained with a
smaller window, stops with an error that names the problem and the fix.
"""
import argparse
import functools
import hashlib
import os
import os.path as osp
import sys
from collections import OrderedDict

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

PREFIX = 'backbone.'

# name -> (mmpretrain backbone config, detection configs that take it)
ARCHS = OrderedDict([
    ('resnet50', (dict(type='ResNet', depth=50), 'configs/det/*_r50_*')),
    ('swin-tiny', (dict(type='SwinTransformer', arch='tiny', img_size=224),
                   'configs/det/*_swin-t-*')),
    ('convnext-tiny', (dict(type='ConvNeXt', arch='tiny'),
                       'configs/det/*_convnext-t-*')),
])

DETECTOR_PARTS = ('rpn_head', 'roi_head', 'bbox_head', 'mask_head',
                  'query_head', 'panoptic_head', 'semantic_head',
                  'panoptic_fusion_head', 'decode_head', 'auxiliary_head')


class CheckpointError(ValueError):
    """The checkpoint is not what extract_backbone can convert."""


def load_checkpoint(path, unsafe=False):
    """Load with mmengine's loader, weights-only with mmet's allow-list
    (:func:`mmet.checkpoint.safe_loading`; ``unsafe`` unpickles fully)."""
    import pickle

    from mmengine.runner.checkpoint import CheckpointLoader

    from mmet.checkpoint import UnsafeCheckpointError, safe_loading
    safe_loading(allow_unsafe=unsafe)
    if '://' not in path:
        if osp.isdir(path):
            raise CheckpointError(
                f'{path} is a directory; pass a checkpoint file in it, e.g. '
                f'{osp.join(path, "epoch_N.pth")}.')
        if not osp.isfile(path):
            raise CheckpointError(f'{path} does not exist.')
    try:
        return CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except UnsafeCheckpointError as e:
        raise CheckpointError(str(e)) from None
    except (EOFError, pickle.UnpicklingError, RuntimeError,
            UnicodeDecodeError) as e:
        raise CheckpointError(
            f'{path} is not a readable checkpoint (empty, truncated or not a '
            f'torch file): {type(e).__name__}: {e}. Pass a complete .pth '
            'written by training.') from e


def check_output(src, out, force=False):
    """Refuse to overwrite the input, or any existing file without force."""
    if '://' not in src and osp.exists(out) and osp.exists(src) and \
            osp.samefile(src, out):
        raise CheckpointError(
            f'the output {out} is the input checkpoint: writing the backbone '
            'there would destroy its head, optimizer and resume state. Give '
            'another output path.')
    if osp.exists(out) and not force:
        raise CheckpointError(
            f'{out} exists; pass --force to overwrite it, or give another '
            'output path.')


def _is_tensor_dict(d):
    import torch
    return isinstance(d, dict) and d and all(
        isinstance(v, torch.Tensor) for v in d.values())


def _strip_module(sd):
    if sd and all(k.startswith('module.') for k in sd):
        return OrderedDict((k[len('module.'):], v) for k, v in sd.items())
    return sd


def select_weights(ckpt, ema, path):
    """The model state dict to take the backbone from, and a note."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict'), dict):
        sd = _strip_module(ckpt['state_dict'])
    elif _is_tensor_dict(ckpt):
        sd = _strip_module(ckpt)
    else:
        keys = list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt)
        raise CheckpointError(
            f'{path} is not a model checkpoint: no state_dict (found {keys}).'
            ' Pass the .pth an mmet/mmpretrain training wrote '
            '(work_dirs/<config>/epoch_N.pth).')
    live = ckpt.get('ema_state_dict') if isinstance(ckpt, dict) else None
    if ema:
        if not isinstance(live, dict):
            raise CheckpointError(
                f'--ema was given, but {path} holds no EMA weights (no '
                "'ema_state_dict'): it was trained without EMAHook, or "
                'published with only one set of weights. Drop --ema to take '
                'its weights as they are.')
        # EMAHook.before_save_checkpoint swapped the averaged weights into
        # state_dict
        return sd, 'EMA (averaged) weights'
    if isinstance(live, dict):
        swapped = OrderedDict(sd)
        for k, v in live.items():
            if k.startswith('module.') and k[len('module.'):] in swapped:
                swapped[k[len('module.'):]] = v
        return swapped, ('live (non-EMA) weights; the checkpoint also has '
                         'EMA weights: --ema takes those')
    return sd, 'weights'


@functools.lru_cache(maxsize=None)
def _reference(arch):
    """Names and shapes of the named mmpretrain backbone, built fresh."""
    import mmpretrain.models  # noqa: F401
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(ARCHS[arch][0]))
    return OrderedDict((k, tuple(v.shape))
                       for k, v in model.state_dict().items())


def _compare(ref, sd):
    missing = [k for k in ref if k not in sd]
    unexpected = [k for k in sd if k not in ref]
    shapes = [(k, tuple(sd[k].shape), ref[k]) for k in ref
              if k in sd and tuple(sd[k].shape) != ref[k]]
    return missing, unexpected, shapes


def _short(keys, n=4):
    keys = list(keys)
    more = f' ... ({len(keys)} in all)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def _guess_arch(bb):
    """The arch whose names fit ``bb`` best, and whether they fit exactly."""
    best, best_score = None, -1.0
    for arch in ARCHS:
        ref = _reference(arch)
        common = len(set(ref) & set(bb))
        score = common / max(len(set(ref) | set(bb)), 1)
        if score > best_score:
            best, best_score = arch, score
    return best, best_score


def check_backbone(bb, arch, path):
    """Raise CheckpointError unless ``bb`` is exactly ``arch``'s backbone."""
    ref = _reference(arch)
    missing, unexpected, shapes = _compare(ref, bb)
    if not (missing or unexpected or shapes):
        return ref
    guess, score = _guess_arch(bb)
    if guess != arch and score > 0.9:
        raise CheckpointError(
            f'{path} holds a {guess} backbone, not {arch}. Pass '
            f'--arch {guess} (or --arch auto) and use the {guess} detection '
            f'configs ({ARCHS[guess][1]}).')
    window = [(k, got, want) for k, got, want in shapes
              if k.endswith('relative_position_bias_table')
              or k.endswith('relative_position_index')]
    if (arch == 'swin-tiny' and window and len(window) == len(shapes)
            and not (missing or unexpected)):
        k, got, want = window[0]
        raise CheckpointError(
            f'{path} is a Swin-T whose relative position tables are not at '
            f'the final 7x7 window ({k}: {got}, expected {want}). It was '
            'saved while the model ran with a smaller window (a curriculum '
            'that rebuilds Swin per stage). Extract the checkpoint of the '
            'last epoch, trained at full resolution with window 7; mmet\'s '
            'Swin configs keep the window at 7 (pad_small_map=True).')
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing ({_short(missing)})')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected '
                        f'({_short(unexpected)})')
    if shapes:
        problems.append(f'{len(shapes)} of another shape (' + ', '.join(
            f'{k}: {g} vs {w}' for k, g, w in shapes[:3]) + ')')
    hint = (f' It looks closest to {guess}.' if guess != arch and score > 0.5
            else '')
    raise CheckpointError(
        f'{path} is not an mmpretrain {arch} backbone: compared with '
        f'mmpretrain\'s {arch}, its backbone.* tensors have '
        + '; '.join(problems) + f'.{hint} Pass a classification checkpoint '
        f'of {arch} trained with mmet/mmpretrain, or the --arch it was '
        f'trained with ({", ".join(ARCHS)}).')


def backbone_of(sd, path):
    """The backbone tensors (prefix stripped) of a classifier state dict."""
    parts = OrderedDict()
    for k in sd:
        parts.setdefault(k.split('.', 1)[0], 0)
        parts[k.split('.', 1)[0]] += 1
    detector = [p for p in parts if p in DETECTOR_PARTS]
    if detector:
        raise CheckpointError(
            f'{path} is a detector/segmentor checkpoint (it has '
            f'{", ".join(detector)}), not an ImageNet classification '
            'checkpoint: its backbone was already fine-tuned for detection. '
            'Pass the classification checkpoint of your mmet/mmpretrain '
            'training (work_dirs/<config>/epoch_N.pth); to start a detector '
            'from this one, use load_from= instead.')
    if 'backbone' not in parts:
        raise CheckpointError(
            f'{path} has no backbone.* tensors (top-level names: '
            f'{_short(parts, 8)}), so it is not an mmpretrain classifier '
            'checkpoint. Pass the checkpoint of an mmet/mmpretrain '
            'ImageClassifier training (work_dirs/<config>/epoch_N.pth).')
    return OrderedDict((k[len(PREFIX):], v) for k, v in sd.items()
                       if k.startswith(PREFIX))


def _plain(obj, path='meta'):
    """``obj`` as plain Python (loadable with weights_only=True)."""
    import numpy as np
    import torch
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    for base in (bool, int, float, str):  # subclasses, e.g. enums
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        if obj.ndim == 0:
            return obj.item()
        if obj.ndim == 1 and len(obj) <= 64:
            return obj.tolist()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _plain(v, f'{path}.{k}')
            if v is not _DROP:
                out[str(k)] = v
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f'{path}[{i}]') for i, v in enumerate(obj)]
        items = [v for v in items if v is not _DROP]
        return type(obj)(items) if isinstance(obj, tuple) else items
    print(f'[extract_backbone] note: dropped {path} '
          f'({type(obj).__name__}) from meta')
    return _DROP


_DROP = object()


def _without_resume_state(meta: dict) -> dict:
    """``meta`` without the trainer's random state that mmet keeps for an
    exact resume (``meta.efficienttrain.random_state``): a backbone file
    resumes no training, and the state's tensors are no metadata."""
    et = meta.get('efficienttrain')
    if not isinstance(et, dict) or 'random_state' not in et:
        return meta
    return dict(meta, efficienttrain={k: v for k, v in et.items()
                                      if k != 'random_state'})


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def extract(src, out, arch='auto', ema=False, quiet=False, force=False,
            unsafe=False):
    """Write ``src``'s backbone to ``out``; return the output checkpoint.

    ``out`` must not be ``src``, and an existing ``out`` is only replaced
    with ``force``; ``unsafe`` loads ``src`` with full unpickling.
    """
    import torch
    if arch != 'auto' and arch not in ARCHS:
        raise CheckpointError(f'unknown --arch {arch!r}; choose from '
                              f'auto, {", ".join(ARCHS)}.')
    check_output(src, out, force)
    ckpt = load_checkpoint(src, unsafe)
    sd, which = select_weights(ckpt, ema, src)
    bb = backbone_of(sd, src)
    if arch == 'auto':
        arch, score = _guess_arch(bb)
        if score < 0.5:
            raise CheckpointError(
                f'{src} holds no backbone this tool knows: its backbone.* '
                f'tensors ({_short(bb)}) match none of {", ".join(ARCHS)}. '
                'mmet transfers ResNet-50, Swin-T and ConvNeXt-T.')
    ref = check_backbone(bb, arch, src)

    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    meta = _plain(_without_resume_state(meta)) if isinstance(meta, dict) \
        else {}
    meta['backbone'] = dict(
        arch=arch, mmpretrain=dict(ARCHS[arch][0]), ema=bool(ema),
        weights=which, source=osp.abspath(src) if osp.isfile(src) else src,
        source_sha256=_sha256(src) if osp.isfile(src) else None,
        num_params=int(sum(bb[k].numel() for k in ref)))
    state = OrderedDict((PREFIX + k, bb[k].detach().clone().contiguous())
                        for k in ref)
    result = dict(meta=meta, state_dict=state)
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    tmp = f'{out}.tmp{os.getpid()}'
    torch.save(result, tmp)
    os.replace(tmp, out)

    # read it back the way mmdet's Pretrained init does
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
    back = _load_checkpoint_with_prefix(PREFIX, out, map_location='cpu')
    assert list(back) == list(ref), 'round trip changed the tensor names'

    if not quiet:
        et = meta.get('efficienttrain')
        if et and isinstance(et.get('curriculum'), list):
            st = et['curriculum']
            et = (f'{len(st)} stages, B/full ' + ', '.join(
                f'{s.get("bandwidth", 1):.3g}' for s in st) + '; m ' +
                ', '.join(f'{s.get("magnitude", "-")}' for s in st))
        print(f'[extract_backbone] {src} -> {out}\n'
              f'  arch {arch}: {len(state)} tensors, '
              f'{meta["backbone"]["num_params"] / 1e6:.2f}M values, {which}\n'
              f'  curriculum: {et or "none recorded"}\n'
              f'  use it with: --cfg-options '
              f'model.backbone.init_cfg.checkpoint={out} '
              f'({ARCHS[arch][1]})')
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Extract the backbone of an mmet/mmpretrain '
        'classification checkpoint for mmdet.')
    parser.add_argument('checkpoint', help='classification checkpoint (.pth)')
    parser.add_argument('out', help='backbone checkpoint to write (.pth)')
    parser.add_argument('--ema', action='store_true',
                        help='take the EMA weights (EMAHook checkpoints)')
    parser.add_argument('--arch', default='auto',
                        choices=['auto', *ARCHS],
                        help='the backbone it must be (default: detect)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite OUT if it exists (never the input)')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='load a checkpoint that holds more than weights '
                        'with full unpickling, which can run code: only for '
                        'files you trust')
    args = parser.parse_args(argv)
    try:
        extract(args.checkpoint, args.out, args.arch, args.ema,
                force=args.force, unsafe=args.unsafe_load)
    except CheckpointError as e:
        sys.exit(f'extract_backbone: error: {e}')


if __name__ == '__main__':
    main()
