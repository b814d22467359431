"""The venv is its stack's lock (requirements/lock-<stack>.txt), and the
check that says so fails on a venv moved off it.

The check is tools/lock.py's: the set-up runs it, and so do these tests,
in this process on this venv, and in a subprocess whose search path has a
directory of real ``*.dist-info`` folders put ahead of the venv's
site-packages (``PYTHONPATH``), as a package installed there would be.
"""
import importlib.util
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

LOCK_PY = osp.join(ROOT, 'tools', 'lock.py')
_spec = importlib.util.spec_from_file_location('mmet_tools_lock', LOCK_PY)
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)

DISTS = lock.installed()
STACK = lock.stack_of(DISTS)
PINS = lock.read_lock(lock.lock_path(STACK))
LOCK_NAME = f'lock-{STACK}.txt'


def test_venv_is_its_stacks_lock():
    """Every pin installed at its version, nothing unlisted, mmcv from the
    wheel compiled for this venv, mmet editable from this checkout."""
    stack, problems = lock.check()
    assert stack == STACK
    assert not problems, (
        f'this venv is not requirements/{LOCK_NAME}:\n  ' +
        '\n  '.join(problems) + f'\nrun MMET_STACK={stack} '
        'tools/setup_env.sh (docs/development.md, "Locks")')


def test_stack_matches_mmet_stack():
    """The stack is told from the installed OpenMMLab distributions; the
    Makefile's MMET_STACK picks the venv, so the two agree."""
    assert all(d in DISTS for d in lock.STACKS[STACK])
    env = os.environ.get('MMET_STACK')
    assert env in (None, STACK), (env, STACK)


def test_pip_check():
    """Every installed distribution's requirements are met."""
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'check', '--disable-pip-version-check'],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_lock_pins_what_mmet_relies_on():
    """The stack, torch and the libraries whose arithmetic mmet reproduces
    are pinned. OpenCV decides BatchRandAugment's warps: mmengine and mmcv
    ask for opencv-python, the set-up for opencv-python-headless, and both
    install the same ``cv2`` files, so they are pinned alike (else ``cv2``
    would be whichever was installed last), and the imported ``cv2`` is
    that version."""
    import cv2
    for name in ('opencv-python-headless', 'numpy', 'torch', 'torchvision',
                 'pillow', 'scipy', *lock.STACKS[STACK]):
        assert name in PINS, name
    assert 'mmet' not in PINS and 'pip' not in PINS
    opencv = PINS['opencv-python-headless']
    assert PINS.get('opencv-python', opencv) == opencv
    assert opencv.startswith(cv2.__version__ + '.'), (cv2.__version__, opencv)


# the check on a venv moved off its lock ------------------------------------
def _check(site=None, lock_file=None, **env):
    """tools/lock.py check in a subprocess; ``site`` goes ahead of the
    venv's site-packages on its search path."""
    env = dict(os.environ, **env)
    if site:
        env['PYTHONPATH'] = os.pathsep.join(
            p for p in (str(site), env.get('PYTHONPATH')) if p)
    cmd = [sys.executable, LOCK_PY, 'check']
    if lock_file:
        cmd += ['--lock', str(lock_file)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=ROOT)


def _metadata_file(dist):
    for file in dist.files:
        if file.name == 'METADATA' and file.parent.name.endswith(
                '.dist-info'):
            return file.locate()
    raise AssertionError(f'no METADATA in {dist.metadata["Name"]}')


def _shadow(site, name, version=None, direct_url=None):
    """Copy the venv's real dist-info of ``name`` into ``site``, as
    ``version`` and/or with another ``direct_url.json``."""
    meta = _metadata_file(DISTS[name])
    version = version or DISTS[name].version
    dist_name = re.sub(r'[-.]+', '_', name)
    dst = osp.join(site, f'{dist_name}-{version}.dist-info')
    shutil.copytree(osp.dirname(meta), dst)
    with open(osp.join(dst, 'METADATA')) as f:
        text = f.read()
    text, n = re.subn(r'^Version: .*$', f'Version: {version}', text,
                      count=1, flags=re.M)
    assert n == 1
    with open(osp.join(dst, 'METADATA'), 'w') as f:
        f.write(text)
    if direct_url is not None:
        with open(osp.join(dst, 'direct_url.json'), 'w') as f:
            json.dump(direct_url, f)
    return dst


def test_the_check_passes_here():
    """The control for the tests below: the same command on this venv."""
    proc = _check()
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize('name', ['opencv-python-headless', 'numpy'])
def test_a_package_off_its_pin_fails_the_check(tmp_path, name):
    """A real dist-info of another version ahead on the search path (what
    ``pip install --target`` or a stale user site gives) is found by the
    check, which names the package and both versions."""
    pinned = PINS[name]
    other = {'opencv-python-headless': '5.1.0.95', 'numpy': '2.3.5'}[name]
    assert other != pinned
    _shadow(tmp_path, name, other)
    proc = _check(tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f'{name}: the venv has {other}, {LOCK_NAME} pins {pinned}' in \
        proc.stderr, proc.stderr
    assert proc.stderr.count('\n  ') == 1, proc.stderr  # that one only


def test_an_unlisted_package_fails_the_check(tmp_path):
    dst = osp.join(tmp_path, 'lock_probe-1.0.dist-info')
    os.makedirs(dst)
    with open(osp.join(dst, 'METADATA'), 'w') as f:
        f.write('Metadata-Version: 2.1\nName: lock-probe\nVersion: 1.0\n')
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert f'lock-probe: the venv has 1.0, which {LOCK_NAME} does not list' \
        in proc.stderr, proc.stderr


def test_a_missing_pin_fails_the_check(tmp_path):
    """A lock entry that nothing installed provides."""
    with open(lock.lock_path(STACK)) as f:
        text = f.read()
    lock_file = tmp_path / LOCK_NAME
    lock_file.write_text(text + 'lock-probe==1.0\n')
    proc = _check(lock_file=lock_file)
    assert proc.returncode == 1
    assert f'lock-probe: {LOCK_NAME} pins 1.0, but it is not installed' in \
        proc.stderr, proc.stderr


def test_mmcv_from_another_build_fails_the_check(tmp_path):
    """mmcv's version is pinned, its wheel is local: one compiled against
    another torch (its cache key says so) is refused, and so is one from an
    index."""
    name = lock.COMPILED[STACK]
    url = json.loads(DISTS[name].read_text('direct_url.json'))['url']
    key = osp.basename(osp.dirname(url))
    assert key == lock.wheel_key(STACK, PINS[name], *lock._torch_build(DISTS))
    moved = url.replace('-torch-', '-torch-0.0.0-was-', 1)
    _shadow(tmp_path, name, direct_url=dict(url=moved, archive_info={}))
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert f'{name}: the venv has the wheel of {osp.basename(osp.dirname(moved))}' \
        in proc.stderr, proc.stderr

    shutil.rmtree(tmp_path)
    os.makedirs(tmp_path)
    _shadow(tmp_path, name, direct_url=dict(
        url=f'https://example.org/{name}.tar.gz', archive_info={}))
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert 'was not installed from a wheel compiled by tools/setup_env.sh' \
        in proc.stderr, proc.stderr


def test_mmet_not_editable_here_fails_the_check(tmp_path):
    _shadow(tmp_path, 'mmet', direct_url=dict(
        url='file:///elsewhere', dir_info=dict(editable=True)))
    proc = _check(tmp_path)
    assert proc.returncode == 1
    assert 'mmet is installed editable from /elsewhere, not from this ' \
        'checkout' in proc.stderr, proc.stderr


def test_the_other_stack_is_told_apart(tmp_path):
    """MMET_STACK naming the other stack is reported; a venv that holds
    both stacks' distributions has no stack to check."""
    other = [s for s in lock.STACKS if s != STACK][0]
    proc = _check(MMET_STACK=other)
    assert proc.returncode == 1
    assert f'MMET_STACK={other}, but this venv holds the {STACK} stack' in \
        proc.stderr, proc.stderr

    engine = lock.STACKS[other][0]
    dst = osp.join(tmp_path, f'{engine.replace("-", "_")}-1.0.dist-info')
    os.makedirs(dst)
    with open(osp.join(dst, 'METADATA'), 'w') as f:
        f.write(f'Metadata-Version: 2.1\nName: {engine}\nVersion: 1.0\n')
    proc = _check(tmp_path)
    assert proc.returncode == 2
    assert 'cannot tell the stack of this venv' in proc.stderr, proc.stderr
