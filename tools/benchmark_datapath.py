"""Loader cost per sample at each bandwidth: the exact path vs the cheap one.

    python tools/benchmark_datapath.py [--sizes 96 128 160 192 224]
        [--images 20] [--repeats 5] [--magnitude 9] [--out JSON]

Runs the ImageNet train pipelines of ``configs/_base_/efficienttrain.py``,
set to each bandwidth B by the stage driver (:class:`~mmet.driver.StageDriver`),
on real photos (the foolbox ImageNet JPEGs, written to files so that
``LoadImageFromFile`` decodes them as in training):

- ``exact``: ``et_train_pipeline``, the paper's order: decode, random
  resized crop to 224, flip, RandAugment and erasing at 224, then the exact
  Fourier crop to B. A stage at B costs *more* than the full-size stage.
- ``fast``: ``et_fast_train_pipeline``: the crop is resized straight to B
  (antialiased) and every augmentation runs on B x B pixels.
- ``device``: ``et_device_pipeline`` and ``et_device_preprocessor``:
  the loader reads the bytes, and ``DeviceAugmentPreprocessor`` decodes and
  augments the whole batch of photos on ``--device`` (the GPU where there
  is one), in the paper's order.

One process, one thread (for the CPU); the paths alternate within each
repeat so that load from other processes skews them alike. RandAugment runs at the same
magnitude at every B (``--magnitude``), so that only the size differs. It
prints ms per sample and each against the full-size stage of the exact
path, and writes JSON. A benchmark, not a test.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from foolbox_photos import jpeg_bytes  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import mmet  # noqa: E402,F401
from mmet.curriculum import Curriculum  # noqa: E402
from mmet.driver import StageDriver  # noqa: E402
from mmet.plan import StageClock  # noqa: E402

BASE = osp.join(ROOT, 'configs/_base_/efficienttrain.py')
PATHS = {'exact': 'et_train_pipeline', 'fast': 'et_fast_train_pipeline',
         'device': 'et_device_pipeline'}


def parse_args():
    parser = argparse.ArgumentParser(
        description='Loader cost per sample at each B: exact vs cheap path')
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[96, 128, 160, 192, 224])
    parser.add_argument('--images', type=int, default=20)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--magnitude', type=float, default=9)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available()
                        else 'cpu', help='where the device pipeline runs')
    parser.add_argument('--out', default=osp.join(
        ROOT, 'work_dirs', 'benchmark_datapath.json'))
    return parser.parse_args()


class _Pipelines:
    """A dataset stand-in: what the driver walks to find its transforms."""

    def __init__(self, pipeline):
        self.pipeline = pipeline


class _Model:
    """A model stand-in: what the driver reads the preprocessor from."""

    def __init__(self, data_preprocessor):
        self.data_preprocessor = data_preprocessor


def build(path: str, sizes, magnitude: float, device: str):
    """A pipeline, its batch step and a function that sets stage ``i``
    (``sizes[i]``)."""
    full = max(sizes)
    base = Config.fromfile(BASE)
    pipeline = Compose(base[PATHS[path]])
    curriculum = Curriculum([dict(share=1 / len(sizes), bandwidth=s / full,
                                  magnitude=magnitude) for s in sorted(sizes)])
    clock = StageClock(curriculum, len(sizes), full)
    driver = StageDriver(curriculum)

    def set_stage(i):
        driver.apply(clock.state(i))
    if path != 'device':
        driver.bind(_Pipelines(pipeline))
        return pipeline, None, set_stage
    pre = MODELS.build(base.et_device_preprocessor).to(device)
    driver.bind(_Pipelines(pipeline), _Model(pre))

    def batch_step(samples):
        out = pre.augment([s['inputs'] for s in samples])
        if out.is_cuda:
            torch.cuda.synchronize()
        return out
    return pipeline, batch_step, set_stage


def measure(args, files):
    sizes = sorted(set(args.sizes))
    built = {p: build(p, sizes, args.magnitude, args.device) for p in PATHS}
    times = {(p, s): [] for p in PATHS for s in sizes}
    for repeat in range(args.repeats + 1):  # the first warms up
        for i, size in enumerate(sizes):
            for path, (pipeline, batch_step, set_stage) in built.items():
                set_stage(i)
                start = time.perf_counter()
                samples = [pipeline(dict(img_path=f, gt_label=0))
                           for f in files]
                out = batch_step(samples) if batch_step else \
                    samples[-1]['inputs']
                if repeat:
                    times[path, size].append(
                        (time.perf_counter() - start) / len(files) * 1e3)
                got = tuple(out.shape[-2:])
                assert got == (size, size), (path, size, got)
    ref = statistics.median(times['exact', max(sizes)])
    rows = []
    for size in sizes:
        row = dict(size=size)
        for path in PATHS:
            ms = statistics.median(times[path, size])
            row[f'{path}_ms'] = ms
            row[f'{path}_vs_full'] = ms / ref
        rows.append(row)
    return rows


def format_table(rows) -> str:
    head = ('B', *(f'{p} ms' for p in PATHS), *(f'{p}/full' for p in PATHS))
    lines = ['  '.join(f'{h:>11}' for h in head)]
    for r in rows:
        lines.append('  '.join(f'{v:>11}' for v in (
            r['size'], *(f"{r[f'{p}_ms']:.2f}" for p in PATHS),
            *(f"{r[f'{p}_vs_full']:.2f}" for p in PATHS))))
    return '\n'.join(lines)


def main():
    args = parse_args()
    cv2.setNumThreads(1)
    if args.device == 'cpu':
        torch.set_num_threads(1)
    init_default_scope('mmpretrain')
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, data in enumerate(jpeg_bytes(n=args.images)):
            files.append(osp.join(tmp, f'{i:02d}.jpg'))
            with open(files[-1], 'wb') as f:
                f.write(data)
        rows = measure(args, files)
    print(f'{len(files)} foolbox ImageNet JPEGs (512x512, decode included), '
          f'one thread, RandAugment m={args.magnitude:g}, device pipeline '
          f'on {args.device}; ms per sample, and against the full-size '
          'stage of the exact path')
    print(format_table(rows))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(images=len(files), repeats=args.repeats,
                       magnitude=args.magnitude, device=args.device,
                       rows=rows), f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
