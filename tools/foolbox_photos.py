"""Real photos for the benchmarks: the ImageNet JPEGs in the foolbox wheel.

The ``foolbox`` wheel ships 20 ImageNet validation JPEGs (512x512) under
``foolbox/data/``. tools/setup_env.sh downloads the wheel (pinned in
requirements/constraints.txt) into ``$MMET_CACHE/foolbox``; the benchmarks
read the photos from the zip. foolbox is never installed and its files are
never copied into this repository.
"""
import glob
import os
import os.path as osp
import subprocess
import sys
import zipfile
from typing import List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CACHE = osp.join(
    os.environ.get('MMET_CACHE', osp.expanduser('~/.cache/mmet')), 'foolbox')


def find_wheel(path: Optional[str] = None) -> str:
    """The foolbox wheel: ``path``, the cached one, or a fresh download."""
    if path:
        return path
    wheels = sorted(glob.glob(osp.join(CACHE, 'foolbox-*.whl')))
    if not wheels:
        print(f'fetching the foolbox wheel into {CACHE} ...')
        subprocess.run([
            sys.executable, '-m', 'pip', 'download', '--no-deps', '-c',
            osp.join(ROOT, 'requirements/constraints.txt'), 'foolbox', '-d',
            CACHE
        ], check=True)
        wheels = sorted(glob.glob(osp.join(CACHE, 'foolbox-*.whl')))
    if not wheels:
        raise SystemExit(f'No foolbox wheel in {CACHE}; run '
                         'tools/setup_env.sh.')
    return wheels[-1]


def jpeg_bytes(wheel: Optional[str] = None,
               n: Optional[int] = None) -> List[bytes]:
    """The encoded JPEGs (the first ``n``), in file-name order."""
    wheel = find_wheel(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = sorted(x for x in z.namelist()
                       if x.startswith('foolbox/data/') and x.endswith('.jpg'))
        out = [z.read(name) for name in names[:n]]
    if not out:
        raise SystemExit(f'No JPEGs under foolbox/data/ in {wheel}.')
    return out
