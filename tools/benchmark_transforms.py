"""Per-image CPU cost of the exact Fourier crop against pixel-space resizes.

    python tools/benchmark_transforms.py
    python tools/benchmark_transforms.py --sizes 96 160 --repeat 50 \
        --out work_dirs/bench.json

EfficientTrain trains early epochs on the low-frequency band of each image
(``FourierCrop``), and the crop runs per image in the data-loader workers,
after the full-size augmentation. The GPU step gets 2-4x faster at low
sizes, so the loader is already the bottleneck; the crop only pays off if it
costs no more than the Lanczos resize that EfficientTrain++ uses instead.
The project target is ``FourierCrop <= 1.2x cv2 INTER_LANCZOS4`` per size.

On real photos (the 20 ImageNet JPEGs, 512x512, that ship inside the
``foolbox`` wheel; resized to 256 and centre-cropped to 224, RGB ``uint8``)
it times, for each target size ``B``, from 224x224x3 ``uint8``:

- ``FourierCrop(size=B)`` from :mod:`mmet.transforms`: the whole transform
  call, uint8 rounding and clipping included;
- ``cv2.resize`` with ``INTER_LANCZOS4`` and with ``INTER_AREA``;
- Pillow ``Image.LANCZOS`` (``fromarray`` -> ``resize`` -> ``asarray``);
- a naive complex ``np.fft.fft2`` crop (``fftshift``, slice, ``ifftshift``,
  ``ifft2``, real part, rounding), for reference (on the first 4 images
  only, as it is ~15x slower);

and once, JPEG decode of the 512x512 photos with ``cv2.imdecode`` and with
Pillow. Each figure is the median, over ``--repeat`` passes, of the mean
time per image of one pass over the images, in ms. The passes of all
measurements alternate within each repeat, so load from other processes
on a shared machine skews them alike. It runs with ``--threads``
threads (OpenCV, scipy.fft workers, and OMP/MKL/OpenBLAS set through the
environment before numpy is imported). tools/setup_env.sh fetches the wheel
(``tools/foolbox_photos.py``); foolbox is never installed.

As a check, it also reports the largest difference between ``FourierCrop``
and the naive crop (float before rounding, and uint8 levels after).
"""
import argparse
import gc
import io
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))

from foolbox_photos import find_wheel, jpeg_bytes  # noqa: E402  (no numpy)

THREAD_ENV = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
              'NUMEXPR_NUM_THREADS', 'VECLIB_MAXIMUM_THREADS')
FULL = 224
NAIVE_IMAGES = 4


def parse_args():
    parser = argparse.ArgumentParser(
        description='Per-image CPU cost of FourierCrop vs. Lanczos/area '
        'resizes and JPEG decode')
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[96, 128, 160, 192],
                        help='target sizes B (from 224x224)')
    parser.add_argument('--repeat', type=int, default=30,
                        help='timed passes over all images per measurement '
                        '(the median is reported)')
    parser.add_argument('--threads', type=int, default=1,
                        help='threads for OpenCV, scipy.fft and OMP/MKL')
    parser.add_argument('--out', default=osp.join(
        ROOT, 'work_dirs', 'benchmark_transforms.json'),
        help='JSON output path')
    args = parser.parse_args()
    if args.repeat < 1 or args.threads < 1:
        parser.error('--repeat and --threads must be >= 1')
    if any(b < 1 or b > FULL for b in args.sizes):
        parser.error(f'--sizes must lie in [1, {FULL}]')
    return args


def load_jpegs():
    """Return (list of JPEG bytes, source description)."""
    wheel = find_wheel()
    jpegs = jpeg_bytes(wheel)
    return jpegs, f'{len(jpegs)} ImageNet JPEGs from {osp.basename(wheel)}'


def main():
    args = parse_args()
    for k in THREAD_ENV:
        os.environ[k] = str(args.threads)

    import cv2
    import numpy as np
    import PIL
    import scipy
    import scipy.fft
    from PIL import Image

    import mmet
    from mmet.transforms import FourierCrop, fourier_crop

    cv2.setNumThreads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass

    jpegs, source = load_jpegs()
    bufs = [np.frombuffer(j, np.uint8) for j in jpegs]
    decoded = [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in bufs]
    imgs = []
    for bgr in decoded:
        h, w = bgr.shape[:2]
        s = 256 / min(h, w)
        rs = cv2.resize(bgr, (round(w * s), round(h * s)),
                        interpolation=cv2.INTER_AREA)
        t, l_ = (rs.shape[0] - FULL) // 2, (rs.shape[1] - FULL) // 2
        imgs.append(np.ascontiguousarray(
            cv2.cvtColor(rs[t:t + FULL, l_:l_ + FULL], cv2.COLOR_BGR2RGB)))
    n = len(imgs)

    def run_interleaved(tasks):
        """Median over repeats of the mean ms per item of one pass.

        Passes of all tasks alternate within each repeat, so a burst of
        load from other processes hits every task alike and the ratios hold
        up on a shared machine.
        """
        for fn, items in tasks.values():  # warm up caches, plans, imports
            for x in items:
                fn(x)
        times = {k: [] for k in tasks}
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            for _ in range(args.repeat):
                for k, (fn, items) in tasks.items():
                    t0 = time.perf_counter()
                    for x in items:
                        fn(x)
                    times[k].append((time.perf_counter() - t0) / len(items))
        finally:
            if gc_was_on:
                gc.enable()
        return {k: statistics.median(v) * 1e3 for k, v in times.items()}

    def naive_crop(x, b, rounded=True):
        H, W = x.shape[:2]
        F = np.fft.fftshift(np.fft.fft2(x.astype(np.float32), axes=(0, 1)),
                            axes=(0, 1))
        t, l_ = (H - b) // 2, (W - b) // 2
        F = F[t:t + b, l_:l_ + b] * (b * b / (H * W))
        y = np.fft.ifft2(np.fft.ifftshift(F, axes=(0, 1)), axes=(0, 1)).real
        return np.clip(np.rint(y), 0, 255).astype(np.uint8) if rounded else y

    def pil_lanczos(x, b):
        return np.asarray(Image.fromarray(x).resize((b, b), Image.LANCZOS))

    ops = {
        'FourierCrop (mmet)': lambda b: (
            lambda x, t=FourierCrop(size=b): t(dict(img=x))),
        'cv2 INTER_LANCZOS4': lambda b: (lambda x: cv2.resize(
            x, (b, b), interpolation=cv2.INTER_LANCZOS4)),
        'cv2 INTER_AREA': lambda b: (lambda x: cv2.resize(
            x, (b, b), interpolation=cv2.INTER_AREA)),
        'PIL LANCZOS': lambda b: (lambda x: pil_lanczos(x, b)),
        'naive np.fft.fft2 crop': lambda b: (lambda x: naive_crop(x, b)),
    }

    results = {name: {} for name in ops}
    ratio, check = {}, {}
    tasks = {}
    for b in args.sizes:
        for name, make in ops.items():
            # the naive crop is ~15x slower: time it on a few images only
            items = imgs[:NAIVE_IMAGES] if name.startswith('naive') else imgs
            tasks[(name, b)] = (make(b), items)
    tasks[('decode', 'cv2.imdecode')] = (
        lambda buf: cv2.imdecode(buf, cv2.IMREAD_COLOR), bufs)
    tasks[('decode', 'PIL open+RGB+asarray')] = (
        lambda j: np.asarray(Image.open(io.BytesIO(j)).convert('RGB')),
        jpegs)
    with scipy.fft.set_workers(args.threads):
        timing = run_interleaved(tasks)
        for b in args.sizes:
            fdiff = max(float(np.abs(fourier_crop(x, b).astype(np.float64)
                                     - naive_crop(x, b, False)).max())
                        for x in imgs)
            udiff = max(int(np.abs(
                FourierCrop(size=b)(dict(img=x))['img'].astype(np.int16)
                - naive_crop(x, b)).max()) for x in imgs)
            check[b] = dict(max_abs_float=fdiff, max_abs_uint8=udiff)
    decode = {}
    for (name, b), v in timing.items():
        if name == 'decode':
            decode[b] = v
        else:
            results[name][b] = v
    for b in args.sizes:
        ratio[b] = (results['FourierCrop (mmet)'][b]
                    / results['cv2 INTER_LANCZOS4'][b])

    shape = 'x'.join(map(str, decoded[0].shape))
    name_w = max(len(k) for k in list(ops) + ['FourierCrop / cv2 Lanczos'])
    col_w = 8
    print(f'\nper-image CPU cost, ms; median of {args.repeat} passes over '
          f'{n} images; {args.threads} thread(s)')
    print(f'inputs: {source}')
    print(f'crops from {FULL}x{FULL}x3 uint8 (resize 256, centre crop); '
          f'naive crop on {min(NAIVE_IMAGES, n)} images\n')
    head = 'B'.rjust(name_w) + ''.join(str(b).rjust(col_w)
                                       for b in args.sizes)
    print(head)
    print('-' * len(head))
    for name in ops:
        print(name.ljust(name_w) + ''.join(
            f'{results[name][b]:{col_w}.3f}' for b in args.sizes))
    print('-' * len(head))
    print('FourierCrop / cv2 Lanczos'.ljust(name_w) + ''.join(
        f'{ratio[b]:{col_w - 1}.2f}x' for b in args.sizes))
    print('  target <= 1.2x'.ljust(name_w) + ''.join(
        ('ok' if ratio[b] <= 1.2 else 'OVER').rjust(col_w)
        for b in args.sizes))
    print('vs naive: max|diff| float'.ljust(name_w) + ''.join(
        f"{check[b]['max_abs_float']:{col_w}.0e}" for b in args.sizes))
    print('          max|diff| uint8'.ljust(name_w) + ''.join(
        str(check[b]['max_abs_uint8']).rjust(col_w) for b in args.sizes))
    print(f'\nJPEG decode {shape} (per image):')
    for k, v in decode.items():
        print(f'  {k.ljust(name_w - 2)}{v:{col_w}.3f}')

    report = dict(
        unit='ms per image (median over repeats of the per-pass mean)',
        sizes=args.sizes,
        repeat=args.repeat,
        threads=args.threads,
        num_images=n,
        inputs=source,
        input_shape=[FULL, FULL, 3],
        decode_shape=list(decoded[0].shape),
        transforms={k: {str(b): v for b, v in d.items()}
                    for k, d in results.items()},
        fouriercrop_over_cv2_lanczos={str(b): r for b, r in ratio.items()},
        target_ratio=1.2,
        meets_target=all(r <= 1.2 for r in ratio.values()),
        fouriercrop_vs_naive={str(b): c for b, c in check.items()},
        decode=decode,
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor() or platform.machine(),
            cpu_count=os.cpu_count(),
            cpus_usable=(len(os.sched_getaffinity(0))
                         if hasattr(os, 'sched_getaffinity') else None),
            python=platform.python_version(),
            numpy=np.__version__,
            scipy=scipy.__version__,
            cv2=cv2.__version__,
            pillow=PIL.__version__,
            mmet=getattr(mmet, '__version__', None),
        ),
    )
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
