"""The mmet demo: baseline, EfficientTrain, ET++ and the equal-compute
baseline, side by side, on the CPU.

    python tools/demo.py                       # Fashion-MNIST, ~12 min
    python tools/demo.py --data-path per-sample
    python tools/demo.py --data-root DIR       # an ImageNet-style folder

Each run is a real mmengine Runner (data workers, validation) of
``configs/demo/fmnist_resnet_*.py``; they differ only in the curriculum:

- ``baseline``: full size for ``--epochs`` epochs;
- ``efficienttrain``: ET's five stages over the same epochs;
- ``efficienttrain++``: ET++'s ten stages for a compute budget 1.5x below
  the baseline's (the loop derives its own, more but cheaper, epochs);
- ``equal-compute``: the baseline trained for ET's compute (its epochs and
  LR schedule cut to fit), which the curriculum must beat;
- ``progressive-resizing`` (on request): ET's B schedule with bilinear
  down-sampling and no RandAugment ramp, as Composer's ProgressiveResizing.

By default the augmentation is batched in the trainer
(``configs/demo/fmnist_resnet_*_batchaug.py``), the data path on which a
low-B stage runs at the model's pace on a CPU; ``--data-path per-sample``
runs the per-sample CPU pipeline in the data workers instead.

It prints wall time, speedup, predicted speedup, top-1 and the val set's
majority-class rate of each run (a run that ends at the class prior is
flagged as collapsed), and a verdict line computed from them; it writes a
JSON report and a PNG of the curricula and accuracy curves to
``--work-dir``. One seed: ``tools/benchmark_accuracy.py`` repeats the same
runs over seeds and reports mean ± std.

An ImageNet-style folder holds ``train/<class>/*`` and ``val/<class>/*``;
it trains at ``--img-size`` on the per-sample path with the same recipe
(random-resized crop and flip, no RandAugment) and, for a small data set,
at least 600 optimizer steps in batches of at most a tenth of the data.
It is checked before anything trains: a class folder without images, fewer
than two classes, ``val/`` with other class folders than ``train/`` and an
image that OpenCV cannot decode are refused, naming the folder or file.

Each run prints a line per epoch with its share done and its ETA.
"""
import argparse
import math
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))

from mmengine.config import Config  # noqa: E402

from benchmark_accuracy import (DEMO_EPOCHS, DEMO_TRAIN_SUBSET,  # noqa: E402
                                METHODS, format_table, method_configs,
                                run_once, summarize, verdicts, warm_up)

DEFAULT_RUNS = ['baseline', 'efficienttrain', 'efficienttrain++',
                'equal-compute']
PRESETS = {'batched': 'fmnist', 'per-sample': 'fmnist-per-sample'}
# what mmpretrain's CustomDataset reads by default
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')
# small data sets: at least this many optimizer steps, in batches of at most
# a tenth of the data (the 10 epochs of a Fashion-MNIST subset are 1250)
FOLDER_MIN_STEPS = 600


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Baseline vs EfficientTrain, side by side')
    parser.add_argument(
        '--data-root', default=osp.join(ROOT, 'data/fashion-mnist'),
        help='Fashion-MNIST folder (the default, from tools/setup_env.sh) '
        'or an ImageNet-style folder with train/ and val/')
    parser.add_argument('--epochs', type=int, default=None,
                        help=f'baseline epochs (Fashion-MNIST: '
                        f'{DEMO_EPOCHS}; a folder: enough for '
                        f'{FOLDER_MIN_STEPS} steps)')
    parser.add_argument(
        '--train-subset', type=int, default=DEMO_TRAIN_SUBSET,
        help='train on the first N Fashion-MNIST images (0: all)')
    parser.add_argument('--val-interval', type=int, default=5,
                        help='validate every N epochs (and at the end)')
    parser.add_argument('--val-subset', type=int, default=0,
                        help='validate on the first N images (0: all)')
    parser.add_argument('--img-size', type=int, default=64,
                        help='input size for an ImageNet-style folder')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--workers', type=int, default=None,
                        help="data workers (default: the config's)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--data-path', choices=list(PRESETS), default='batched',
        help='augment whole batches in the trainer (default) or each '
        'sample in the data workers')
    parser.add_argument(
        '--work-dir', default=osp.join(ROOT, 'work_dirs/demo'))
    parser.add_argument('--runs', nargs='+', choices=METHODS,
                        default=DEFAULT_RUNS)
    return parser.parse_args(argv)


def is_fashion_mnist(root: str) -> bool:
    return osp.exists(osp.join(root, 'train-images-idx3-ubyte'))


def split_images(split: str) -> dict:
    """Per class folder of ``split`` (``root/train``), the image files in
    it, as mmpretrain's ``CustomDataset`` finds them (its own listing)."""
    from mmpretrain.datasets.custom import find_folders, get_samples
    classes, index = find_folders(split)
    samples, _ = get_samples(
        split, index, lambda f: f.lower().endswith(IMAGE_EXTENSIONS))
    images = {c: [] for c in classes}
    for path, label in samples:
        images[classes[label]].append(osp.join(split, path))
    return images


def _what_is_in(folder: str) -> str:
    """What an image-less class folder holds, for the error."""
    files = [f for _, _, fs in os.walk(folder) for f in fs]
    subs = [d for _, ds, _ in os.walk(folder) for d in ds]
    if files:
        return (f'{len(files)} file(s), none ending in '
                f'{", ".join(IMAGE_EXTENSIONS)}')
    return 'only empty subfolders' if subs else 'nothing'


def check_folder(root: str) -> dict:
    """Check an ImageNet-style folder before anything trains.

    Returns:
        dict: ``classes`` (the train class folders, sorted), ``train`` and
        ``val`` (the image files of each split).

    Raises:
        SystemExit: naming every problem found and its fix: no ``val/``, a
        class folder without images, fewer than 2 classes, or ``val/`` with
        other class folders than ``train/`` (its labels would not match).
    """
    train, val = osp.join(root, 'train'), osp.join(root, 'val')
    if not osp.isdir(val):
        raise SystemExit(
            f'error: {root} has train/ but no val/: the demo scores each '
            f'run on {val}/<class>/. Add val/ with the class folders of '
            'train/.')
    by_class = split_images(train)
    problems = []
    for c, files in by_class.items():
        if not files:
            problems.append(
                f'{osp.join(train, c)} holds no images '
                f'({_what_is_in(osp.join(train, c))}): as a class it would '
                'be an output the classifier never sees. Add its images, '
                f'or remove the folder (and val/{c}).')
    classes = [c for c, files in by_class.items() if files]
    if len(classes) < 2:
        found = (f'one class with images ({classes[0]})' if classes
                 else 'no class folder with images')
        problems.append(
            f'{train} holds {found}: a classifier needs at least 2 classes. '
            'Put the images of each class in train/<class>/ and '
            'val/<class>/.')
    val_by_class = split_images(val)
    only_train = sorted(set(by_class) - set(val_by_class))
    only_val = sorted(set(val_by_class) - set(by_class))
    if only_train or only_val:
        problems.append(
            'val/ and train/ have other class folders (only in train/: '
            f'{only_train or "none"}; only in val/: {only_val or "none"}), '
            'and val/ labels its images by its own folders. Give val/ the '
            'class folders of train/.')
    val_files = [f for files in val_by_class.values() for f in files]
    if not val_files:
        problems.append(
            f'{val} holds no images ({", ".join(IMAGE_EXTENSIONS)}) to '
            'score the runs on. Add images to val/<class>/.')
    if problems:
        raise SystemExit('error: ' + '\nerror: '.join(problems))
    return dict(classes=sorted(by_class),
                train=[f for c in sorted(by_class) for f in by_class[c]],
                val=val_files)


def undecodable(paths) -> list:
    """The images that OpenCV, the pipeline's decoder, cannot decode (empty,
    cut off in the header, not an image). A JPEG reduced 8x in the decoder
    costs a fraction of a full decode and fails the same way."""
    import cv2
    import numpy as np
    bad = []
    for path in paths:
        try:
            buf = np.fromfile(path, np.uint8)
            ok = buf.size > 0 and cv2.imdecode(
                buf, cv2.IMREAD_REDUCED_COLOR_8) is not None
        except (OSError, cv2.error):
            ok = False
        if not ok:
            bad.append(path)
    return bad


def check_images(found: dict) -> None:
    """Decode every image of the folder once, before anything trains, so a
    broken file is named up front instead of failing a data worker later.
    """
    import time
    paths = found['train'] + found['val']
    print(f'checking the {len(paths)} images ...', flush=True)
    start = time.perf_counter()
    bad = undecodable(paths)
    if bad:
        more = f' and {len(bad) - 3} more' if len(bad) > 3 else ''
        raise SystemExit(
            f'error: {len(bad)} image(s) cannot be decoded (empty, '
            f'truncated or not an image): {", ".join(bad[:3])}{more}. '
            'Replace or delete them.')
    print(f'checked the {len(paths)} images in '
          f'{time.perf_counter() - start:.1f} s', flush=True)


def folder_config(cfg: Config, root: str, size: int, classes) -> None:
    """Point a per-sample demo config at an ImageNet-style folder."""
    cfg.model.backbone.in_channels = 3
    cfg.model.head.num_classes = len(classes)
    cfg.data_preprocessor = dict(
        num_classes=len(classes), mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375], to_rgb=True)
    train = [dict(type='LoadImageFromFile'),
             dict(type='RandomResizedCrop', scale=size, backend='pillow',
                  interpolation='bicubic')]
    for t in cfg.train_dataloader.dataset.pipeline:
        if t['type'] == 'FourierCrop':
            t['size'] = size
        if t['type'] != 'RandomCrop':
            train.append(t)
    test = [dict(type='LoadImageFromFile'),
            dict(type='ResizeEdge', scale=size * 8 // 7, edge='short'),
            dict(type='CenterCrop', crop_size=size), dict(type='PackInputs')]
    for loader, split, pipeline in (
            (cfg.train_dataloader, 'train', train),
            (cfg.val_dataloader, 'val', test)):
        loader.dataset = dict(type='CustomDataset', data_root=root,
                              data_prefix=split, classes=classes,
                              pipeline=pipeline)
    cfg.test_dataloader = cfg.val_dataloader


def build_configs(args) -> dict:
    """The config of each run, at the demo's regime."""
    fashion = is_fashion_mnist(args.data_root)
    if not fashion:
        if not osp.isdir(osp.join(args.data_root, 'train')):
            raise SystemExit(
                f'{args.data_root} is neither Fashion-MNIST (run '
                'tools/setup_env.sh to fetch it) nor an ImageNet-style '
                'folder with train/<class>/ and val/<class>/.')
        if args.data_path == 'batched':
            args.data_path = 'per-sample'  # decoded photos of any size
        if 'progressive-resizing' in args.runs:
            raise SystemExit('progressive-resizing runs on the batched '
                             'Fashion-MNIST path only.')
    epochs = args.epochs or DEMO_EPOCHS
    options = dict(train_dataloader=dict(batch_size=args.batch_size))
    if args.workers is not None:
        options['train_dataloader'].update(
            num_workers=args.workers, persistent_workers=args.workers > 0)
    if fashion:
        for loader in ('train_dataloader', 'val_dataloader'):
            options.setdefault(loader, {})['dataset'] = dict(
                data_root=args.data_root)
        cfgs = method_configs(PRESETS[args.data_path], args.runs, epochs,
                              1.5, options, args.train_subset,
                              args.val_subset)
    else:
        # a small folder: enough optimizer steps, in small batches
        found = check_folder(args.data_root)
        check_images(found)
        n_train = len(found['train'])
        batch = max(8, min(args.batch_size, n_train // 10))
        if args.epochs is None:
            epochs = max(DEMO_EPOCHS, math.ceil(FOLDER_MIN_STEPS * batch /
                                                n_train))
        options['train_dataloader']['batch_size'] = batch
        cfgs = method_configs(PRESETS[args.data_path], args.runs, epochs,
                              1.5, options)
        for cfg in cfgs.values():
            folder_config(cfg, args.data_root, args.img_size,
                          found['classes'])
            # the demo's SGD 0.1 is for batches of 128
            cfg.optim_wrapper.optimizer.lr *= batch / 128
    for cfg in cfgs.values():
        cfg.train_cfg.val_interval = args.val_interval
    return cfgs


def print_table(results) -> None:
    summary = summarize(results)
    head = ('run', 'epochs', 'train wall (s)', 'speedup', 'predicted',
            'top-1 (%)', 'majority class (%)', '')
    rows = []
    for r in results:
        s = summary[r['method']]
        r['speedup'] = s['speedup']
        speed = f"{s['speedup']:.2f}x" + ('?' if s['speedup_noise'] else '')
        rows.append((r['method'], str(r['epochs']),
                     f"{r['train_seconds']:.1f}", speed,
                     f"{r['predicted_speedup']:.2f}x", f"{r['top1']:.2f}",
                     f"{r['majority_rate']:.1f}",
                     'COLLAPSED' if r['collapsed'] else ''))
    print()
    print(format_table(head, rows))
    print()
    for line in verdicts(summary):
        print(line)
    if any(s['speedup_noise'] for s in summary.values()):
        print('?: faster than the FLOPs allow; the machine was busy during '
              'the baseline. Measure on a quiet machine.')


def plot(results, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax_b, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_m = None
    styles = iter(['-', '--', ':', '-.'] * 4)
    for r in results:
        epochs, accs = zip(*r['top1_curve'])
        ax_acc.plot(epochs, accs, marker='o', label=(
            f"{r['method']} ({r['train_seconds']:.0f} s)"))
        if 'stages' in r:
            xs, bs, ms = [], [], []
            for s in r['stages']:
                if not s['epochs']:
                    continue
                size = s['size'] if isinstance(s['size'], int) else \
                    s['size'][0]
                xs += [s['start_epoch'], s['end_epoch']]
                bs += [size, size]
                ms += [s['magnitude'], s['magnitude']]
            style = next(styles)
            ax_b.plot(xs, bs, style, color='tab:blue', label=r['method'])
            if ax_m is None:
                ax_m = ax_b.twinx()
                ax_m.set_ylabel('RandAugment m', color='tab:orange')
                ax_m.set_ylim(-0.5, 10.5)
            ax_m.plot(xs, ms, style, color='tab:orange')
    if ax_m is not None:
        ax_b.legend(loc='lower right', fontsize='small')
    ax_b.set_xlabel('epoch')
    ax_b.set_ylabel('bandwidth B (px)', color='tab:blue')
    ax_b.set_title('EfficientTrain curriculum')
    ax_acc.set_xlabel('epoch')
    ax_acc.set_ylabel('val top-1 (%)')
    ax_acc.set_title('accuracy')
    ax_acc.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    import json

    import torch

    args = parse_args(argv)
    # as tools/benchmark_accuracy.py: the same floating-point mode for all
    torch.set_flush_denormal(True)
    os.makedirs(args.work_dir, exist_ok=True)
    cfgs = build_configs(args)
    warm_up(next(iter(cfgs.values())), args.work_dir)
    results = []
    for name, cfg in cfgs.items():
        print(f'{name}: training ({len(results) + 1}/{len(cfgs)})',
              flush=True)
        results.append(run_once(name, cfg, args.seed, args.work_dir))
        print(f"{name}: top-1 {results[-1]['top1']:.2f}, train "
              f"{results[-1]['train_seconds']:.1f} s", flush=True)
    print_table(results)
    report = osp.join(args.work_dir, 'demo.json')
    with open(report, 'w') as f:
        json.dump(results, f, indent=2)
    png = osp.join(args.work_dir, 'demo.png')
    plot(results, png)
    print(f'\nreport: {report}\nplot:   {png}')


if __name__ == '__main__':
    main()
