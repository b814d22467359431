"""The mmet demo: the same model as baseline, EfficientTrain and ET++.

    python tools/demo.py                      # Fashion-MNIST, CPU, ~10 min
    python tools/demo.py --data-root DIR      # an ImageNet-style folder
    python tools/demo.py --runs baseline-batchaug efficienttrain-batchaug

The runs use ``configs/demo/fmnist_resnet_*.py`` (real mmengine Runners,
data workers, validation each epoch) and differ only in the curriculum. The
EfficientTrain++ run trains for a compute budget (1.5x less than --epochs
full-size epochs) and derives its own, more but cheaper, epochs. The
``*-batchaug`` runs augment in the trainer, batched
(``configs/demo/fmnist_resnet_*_batchaug.py``).
It prints wall time, speedup and top-1 for each, and writes a JSON report and
a PNG of the curriculum and the accuracy curves to ``--work-dir``.

An ImageNet-style folder holds ``train/<class>/*.jpg`` and
``val/<class>/*.jpg``; images are trained at ``--img-size``.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmet  # noqa: E402,F401
from mmet.curriculum import Curriculum  # noqa: E402

CONFIGS = {
    'baseline': osp.join(ROOT, 'configs/demo/fmnist_resnet_baseline.py'),
    'efficienttrain': osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py'),
    'efficienttrain++': osp.join(ROOT, 'configs/demo/fmnist_resnet_etpp.py'),
    # the same two runs with the augmentation batched in the trainer
    # (DeviceAugmentPreprocessor), the data path that keeps up at low B
    'baseline-batchaug': osp.join(
        ROOT, 'configs/demo/fmnist_resnet_baseline_batchaug.py'),
    'efficienttrain-batchaug': osp.join(
        ROOT, 'configs/demo/fmnist_resnet_et_batchaug.py'),
}
DEFAULT_RUNS = ['baseline', 'efficienttrain', 'efficienttrain++']


class TrainEpochTimer(Hook):
    """Wall time of the train epochs alone (loading included, eval not)."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self.seconds = 0.0
        self._start = None

    def before_train_epoch(self, runner):
        self._start = time.perf_counter()

    def after_train_epoch(self, runner):
        self.seconds += time.perf_counter() - self._start


def parse_args():
    parser = argparse.ArgumentParser(
        description='Baseline vs EfficientTrain, side by side')
    parser.add_argument(
        '--data-root', default=osp.join(ROOT, 'data/fashion-mnist'),
        help='Fashion-MNIST folder (the default, from tools/setup_env.sh) '
        'or an ImageNet-style folder with train/ and val/')
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument(
        '--train-subset', type=int, default=8000,
        help='train on the first N images (0: all); keeps the CPU demo short')
    parser.add_argument('--val-interval', type=int, default=2,
                        help='validate every N epochs (and at the end)')
    parser.add_argument(
        '--val-subset', type=int, default=0,
        help='validate on the first N images (0: all)')
    parser.add_argument('--img-size', type=int, default=64,
                        help='input size for an ImageNet-style folder')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--workers', type=int, default=None,
                        help="data workers (default: the config's)")
    parser.add_argument(
        '--work-dir', default=osp.join(ROOT, 'work_dirs/demo'))
    parser.add_argument(
        '--runs', nargs='+', choices=list(CONFIGS), default=DEFAULT_RUNS)
    return parser.parse_args()


def is_fashion_mnist(root: str) -> bool:
    return osp.exists(osp.join(root, 'train-images-idx3-ubyte'))


def folder_dataset_cfg(cfg: Config, root: str, size: int) -> None:
    """Point the demo config at an ImageNet-style folder."""
    classes = sorted(d for d in os.listdir(osp.join(root, 'train'))
                     if osp.isdir(osp.join(root, 'train', d)))
    cfg.model.backbone.in_channels = 3
    cfg.model.head.num_classes = len(classes)
    cfg.model.data_preprocessor = dict(
        num_classes=len(classes), mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375], to_rgb=True)
    train = cfg.train_dataloader.dataset.pipeline
    train[0] = dict(type='RandomResizedCrop', scale=size)
    train.insert(0, dict(type='LoadImageFromFile'))
    for t in train:
        if t['type'] == 'FourierCrop':
            t['size'] = size
        if t['type'] == 'StagedRandAug':
            t['hparams'] = dict(pad_val=128)
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


def build_cfg(name: str, args) -> Config:
    cfg = Config.fromfile(CONFIGS[name])
    cfg.work_dir = osp.join(args.work_dir, name)
    if cfg.train_cfg.get('type') == 'EfficientTrainLoop':
        # ET++ trains for a compute budget and derives its epochs: its
        # speedup is against a baseline of --epochs full-size epochs
        cfg.train_cfg.baseline_epochs = args.epochs
    else:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.param_scheduler[-1].T_max = args.epochs - 1
    cfg.train_cfg.val_interval = args.val_interval
    cfg.train_dataloader.batch_size = args.batch_size
    if args.workers is not None:
        cfg.train_dataloader.num_workers = args.workers
        cfg.train_dataloader.persistent_workers = args.workers > 0
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=args.epochs)
    if is_fashion_mnist(args.data_root):
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            loader.dataset.data_root = args.data_root
    elif name.endswith('-batchaug'):
        raise SystemExit(
            f'The {name} run augments 28 px Fashion-MNIST batches; it has no '
            'folder variant. Leave it out of --runs for --data-root DIR.')
    elif osp.isdir(osp.join(args.data_root, 'train')):
        folder_dataset_cfg(cfg, args.data_root, args.img_size)
    else:
        raise SystemExit(
            f'{args.data_root} is neither Fashion-MNIST (run '
            'tools/setup_env.sh to fetch it) nor an ImageNet-style folder '
            'with train/<class>/ and val/<class>/.')
    if args.train_subset:
        cfg.train_dataloader.dataset.indices = args.train_subset
    if args.val_subset:
        cfg.val_dataloader.dataset.indices = args.val_subset
    return cfg


def val_curve(log_dir: str):
    """[(epoch, top-1)] from the run's scalar log."""
    path = osp.join(log_dir, 'vis_data', 'scalars.json')
    curve = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if 'accuracy/top1' in row:
                curve[row['step']] = row['accuracy/top1']
    return sorted(curve.items())


def run(name: str, args) -> dict:
    cfg = build_cfg(name, args)
    runner = Runner.from_cfg(cfg)
    timer = TrainEpochTimer()
    runner.register_hook(timer)
    start = time.perf_counter()
    runner.train()
    total = time.perf_counter() - start
    curve = val_curve(runner.log_dir)
    result = dict(
        run=name, epochs=runner.max_epochs, train_seconds=timer.seconds,
        total_seconds=total, top1=curve[-1][1], top1_curve=curve)
    hooks = [h for h in cfg.get('custom_hooks', [])
             if h['type'] == 'EfficientTrainHook']
    loop = runner.train_loop
    if hasattr(loop, 'plan'):  # EfficientTrainLoop: a compute budget
        result['budget'] = loop.budget
        result['predicted_speedup'] = loop.predicted_speedup()
        result['stages'] = loop.plan.table(loop.full_size)
    elif hooks:
        # the pipeline's FourierCrop, or the batched one of the preprocessor
        full = next((t['size'] for t in cfg.train_dataloader.dataset.pipeline
                     if t['type'] == 'FourierCrop'),
                    cfg.get('data_preprocessor', {}).get('crop_size'))
        cur = Curriculum.build(hooks[0]['curriculum'])
        result['predicted_speedup'] = cur.speedup(args.epochs, full)
        result['stages'] = cur.table(args.epochs, full)
    else:
        result['predicted_speedup'] = 1.0
    return result


def print_table(results) -> None:
    def baseline_of(run):  # the baseline with the same data path
        suffix = '-batchaug' if run.endswith('-batchaug') else ''
        return next((r for r in results if r['run'] == 'baseline' + suffix),
                    None)

    head = ('run', 'epochs', 'train wall (s)', 'speedup', 'predicted',
            'top-1 (%)')
    rows = [head]
    for r in results:
        base = baseline_of(r['run'])
        speed = base['train_seconds'] / r['train_seconds'] if base else None
        r['speedup'] = speed
        rows.append((r['run'], str(r['epochs']), f"{r['train_seconds']:.1f}",
                     f'{speed:.2f}x' if speed else '-',
                     f"{r['predicted_speedup']:.2f}x", f"{r['top1']:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    print()
    for i, row in enumerate(rows):
        print('  '.join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print('  '.join('-' * w for w in widths))


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
            f"{r['run']} ({r['train_seconds']:.0f} s)"))
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
            ax_b.plot(xs, bs, style, color='tab:blue', label=r['run'])
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
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    results = [run(name, args) for name in args.runs]
    print_table(results)
    report = osp.join(args.work_dir, 'demo.json')
    with open(report, 'w') as f:
        json.dump(results, f, indent=2)
    png = osp.join(args.work_dir, 'demo.png')
    plot(results, png)
    print(f'\nreport: {report}\nplot:   {png}')


if __name__ == '__main__':
    main()
