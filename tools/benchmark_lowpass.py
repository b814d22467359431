"""Exact Fourier crop against Lanczos and pixel-space down-sampling.

    python tools/benchmark_lowpass.py                   # table + JSON
    python tools/benchmark_lowpass.py --sizes 96 160 --repeats 5 --out b.json

On real photos (the 20 ImageNet JPEGs that ship in the ``foolbox`` wheel,
512x512; fetched with ``pip download --no-deps foolbox`` into
``~/.cache/mmet/foolbox`` if absent, read from the zip, never stored in the
repository), each first brought to the full size (224) as the augmentation
would, it measures per method and target size B:

- ``ms/img``: cost of one 224x224x3 uint8 image on one CPU thread, through
  the same code path the pipeline uses (``FourierCrop`` for ``fft`` and
  ``lanczos``);
- ``leak``: the share of the power above the cut-off that reaches the output.
  The image's spectrum is zeroed inside the kept BxB band, the rest (all of
  it above the cut-off) is down-sampled, and the output's mean power is
  divided by the input's. The exact crop passes none (0); plain decimation
  folds nearly all of it into the band (aliasing);
- ``band loss``: the share of in-band power lost: the image reduced to its
  BxB band is down-sampled and compared with the exact crop of it (0 for
  the exact crop; a windowed sinc rolls off near the cut-off);
- ``err``: RMS difference from the exact band-limited image on the uint8
  photo, relative to its RMS, and the PSNR of that difference. The resizes
  put pixel centres at ``(n + 0.5) * 224 / B - 0.5``, the Fourier crop at
  ``n * 224 / B``; the reference is the exact band sampled on each method's
  own grid, so that a sub-pixel offset does not count as error.

``lanczos`` is ``FourierCrop(mode='lanczos')`` (Pillow, anti-aliased: its
support widens with the factor, as torchvision's ``Resize(LANCZOS)`` in the
official EfficientTrain++ code); ``cv2-lanczos4``, ``cv2-area`` and
``cv2-linear`` are OpenCV's resizes, for reference.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from foolbox_photos import CACHE, find_wheel, jpeg_bytes  # noqa: E402
from mmet.transforms import FourierCrop, fourier_crop  # noqa: E402

METHODS = ('fft', 'lanczos', 'cv2-lanczos4', 'cv2-area', 'cv2-linear')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Cost and spectral leakage of low-pass down-sampling')
    parser.add_argument('--sizes', type=int, nargs='+', default=[96, 160, 192])
    parser.add_argument('--full', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=20,
                        help='timed calls per image and method')
    parser.add_argument('--images', type=int, default=20,
                        help='use the first N foolbox images')
    parser.add_argument('--wheel', help='foolbox wheel (default: find it in '
                        f'{CACHE}, downloading it there if missing)')
    parser.add_argument(
        '--out', default=osp.join(ROOT, 'work_dirs/benchmark_lowpass.json'))
    return parser.parse_args()


def load_images(wheel: str, n: int, full: int):
    """The wheel's JPEGs, each resized and centre-cropped to ``full``."""
    out = []
    for data in jpeg_bytes(wheel, n):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        s = full * 8 / 7 / min(h, w)  # resize-256 / crop-224 style
        img = cv2.resize(img, (round(w * s), round(h * s)),
                         interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        y, x = (h - full) // 2, (w - full) // 2
        out.append(np.ascontiguousarray(img[y:y + full, x:x + full]))
    return out


def downsample(method: str, img: np.ndarray, size: int) -> np.ndarray:
    if method in ('fft', 'lanczos'):
        return FourierCrop(size, mode=method).transform(
            dict(img=img))['img']
    flag = dict(
        **{'cv2-lanczos4': cv2.INTER_LANCZOS4, 'cv2-area': cv2.INTER_AREA,
           'cv2-linear': cv2.INTER_LINEAR})[method]
    return cv2.resize(img, (size, size), interpolation=flag)


def band_split(img: np.ndarray, size: int):
    """(in-band, above-cut-off) parts of a float image, per channel.

    In-band: the frequencies the exact crop to ``size`` keeps, i.e.
    ``|k| <= size / 2`` on both axes (the Nyquist bins of an even size
    included, which the crop Hermitian-averages).
    """
    x = img.astype(np.float64)
    H, W = x.shape[:2]
    ky = np.abs(np.fft.fftfreq(H) * H)[:, None]
    kx = np.abs(np.fft.fftfreq(W) * W)[None, :]
    keep = (ky <= size / 2) & (kx <= size / 2)
    spec = np.fft.fft2(x, axes=(0, 1))
    low = np.fft.ifft2(spec * keep[..., None], axes=(0, 1)).real
    return low, x - low


def shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``img`` resampled at ``(y + dy, x + dx)``, band-limited (Fourier)."""
    x = img.astype(np.float64)
    H, W = x.shape[:2]
    ky = np.fft.fftfreq(H)[:, None]
    kx = np.fft.fftfreq(W)[None, :]
    ramp = np.exp(2j * np.pi * (ky * dy + kx * dx))
    spec = np.fft.fft2(x, axes=(0, 1))
    return np.fft.ifft2(spec * ramp[..., None], axes=(0, 1)).real


def exact_on_pixel_grid(img: np.ndarray, size: int) -> np.ndarray:
    """The exact band of ``img`` sampled where a resize puts its pixels.

    ``fourier_crop`` puts output pixel n at input position ``n * s``
    (``s = full / size``); OpenCV and Pillow put it at ``(n + 0.5) s - 0.5``
    (pixel centres). Shifting by ``(s - 1) / 2`` first makes the exact crop
    comparable with them, so ``err`` measures filtering, not a sub-pixel
    offset.
    """
    H, W = img.shape[:2]
    return fourier_crop(
        shift(img, (H / size - 1) / 2, (W / size - 1) / 2), size)


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def float_down(method: str, x: np.ndarray, size: int) -> np.ndarray:
    """Down-sample a float image (the spectral measurements)."""
    if method == 'fft':
        return fourier_crop(x, size)
    return downsample(method, x.astype(np.float32), size).astype(np.float64)


def measure(images, sizes, repeats):
    cv2.setNumThreads(1)
    rows = []
    for size in sizes:
        for method in METHODS:
            times, leaks, losses, errs, psnrs = [], [], [], [], []
            for img in images:
                downsample(method, img, size)  # warm caches
                t0 = time.perf_counter()
                for _ in range(repeats):
                    out = downsample(method, img, size)
                times.append((time.perf_counter() - t0) / repeats * 1e3)
                exact = downsample('fft', img, size).astype(np.float64) \
                    if method == 'fft' else exact_on_pixel_grid(img, size)
                diff = out.astype(np.float64) - exact
                errs.append(np.sqrt(power(diff) / power(exact)))
                mse = power(diff)
                psnrs.append(10 * np.log10(255**2 / mse) if mse else np.inf)
                low, high = band_split(img, size)
                leaks.append(power(float_down(method, high, size)) /
                             power(high))
                ref = fourier_crop(low, size)
                got = float_down(method, low, size)
                losses.append(1 - power(got) / power(ref))
            rows.append(dict(
                method=method, size=size,
                ms_per_image=float(np.median(times)),
                leak=float(np.mean(leaks)),
                band_loss=float(np.mean(losses)),
                rel_err=float(np.mean(errs)),
                psnr_db=float(np.mean([p for p in psnrs if np.isfinite(p)]))
                if any(np.isfinite(psnrs)) else None))
    return rows


def format_table(rows) -> str:
    head = ('B', 'method', 'ms/img', 'leak', 'band loss', 'err', 'PSNR dB')
    lines = [head]
    for r in rows:
        lines.append((
            str(r['size']), r['method'], f"{r['ms_per_image']:.3f}",
            f"{r['leak']:.2%}", f"{r['band_loss']:+.2%}",
            f"{r['rel_err']:.2%}",
            'exact' if r['psnr_db'] is None else
            f"{r['psnr_db']:.1f}"))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    out = ['  '.join(c.rjust(w) for c, w in zip(x, widths)) for x in lines]
    out.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(out)


def main():
    args = parse_args()
    wheel = find_wheel(args.wheel)
    images = load_images(wheel, args.images, args.full)
    rows = measure(images, args.sizes, args.repeats)
    print(f'{len(images)} foolbox ImageNet photos at {args.full}px, one CPU '
          'thread; leak: share of the power above the cut-off in the output')
    print(format_table(rows))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(full=args.full, images=len(images),
                       wheel=osp.basename(wheel), repeats=args.repeats,
                       rows=rows), f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
