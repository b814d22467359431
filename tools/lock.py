"""The per-stack locks: every distribution of a stack's venv, pinned.

``requirements/lock-<stack>.txt`` holds one ``name==version`` line per
distribution that ``tools/setup_env.sh`` installs into the stack's venv,
the transitive ones included. Three entries are treated apart:

- the stack's mmcv (``mmcv`` upstream, ``onedl-mmcv`` on the fork) is pinned
  like the rest, but it is compiled here from its sdist into a wheel cache
  keyed by what it was built against (:func:`wheel_key`); the venv must hold
  the wheel of its own key;
- ``mmet`` itself is not in the lock: it must be installed editable from
  the checkout;
- ``pip`` comes with the venv (``python -m venv``) and is not managed.

Used by ``tools/setup_env.sh`` (``check``, ``extras``, ``wheel-key``),
``tools/refresh_locks.sh`` (``write``, ``diff``) and ``tests/test_lock.py``.
Standard library only, so that it runs before anything is installed.

Commands (run with the venv's python)::

    python tools/lock.py check [--stack S] [--lock FILE]   # exit 1 on drift
    python tools/lock.py extras [--stack S]     # installed, not in the lock
    python tools/lock.py write --stack S        # the venv as a lock, stdout
    python tools/lock.py diff OLD NEW           # what a refresh changed
    python tools/lock.py wheel-key --stack S    # mmcv's wheel cache key
"""
import argparse
import importlib.metadata as md
import json
import os
import os.path as osp
import platform
import re
import sys
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote, urlparse

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Each stack's OpenMMLab distributions; which of them a venv holds tells
# its stack.
STACKS = {
    'upstream': ('mmengine', 'mmcv', 'mmpretrain', 'mmdet'),
    'onedl': ('onedl-mmengine', 'onedl-mmcv', 'onedl-mmpretrain',
              'onedl-mmdetection'),
}
COMPILED = {'upstream': 'mmcv', 'onedl': 'onedl-mmcv'}
SELF = 'mmet'
UNMANAGED = ('pip', )


class LockError(Exception):
    """A venv or a lock file that the check cannot read."""


def canonical(name: str) -> str:
    """PEP 503 normalised name (``Foo_bar.baz`` -> ``foo-bar-baz``)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def lock_path(stack: str, root: str = ROOT) -> str:
    return osp.join(root, 'requirements', f'lock-{stack}.txt')


def read_lock(path: str) -> Dict[str, str]:
    """``{canonical name: version}`` of a lock file."""
    if not osp.exists(path):
        raise LockError(f'no lock file {path}: run `make lock`')
    pins = {}
    with open(path) as f:
        for num, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            match = re.fullmatch(r'([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)', line)
            if not match:
                raise LockError(f'{path}:{num}: expected name==version, got '
                                f'{line!r}')
            name = canonical(match.group(1))
            if name in pins:
                raise LockError(f'{path}:{num}: {name} is pinned twice')
            pins[name] = match.group(2)
    return pins


def installed(path: Optional[List[str]] = None,
              root: str = ROOT) -> Dict[str, md.Distribution]:
    """``{canonical name: distribution}`` as imports see them.

    ``path`` defaults to ``sys.path``; where two directories on it hold a
    distribution of the same name, the first wins, as it does for imports.
    The checkout ``root`` is skipped: its ``mmet.egg-info`` is what the
    editable install left there, not an installed distribution (it is on
    the path when Python runs from the checkout, as pytest does). So are
    ``_vendor`` folders (setuptools' own copies, which ``pkg_resources``
    adds to the path).
    """
    path = sys.path if path is None else path
    # importing pkg_resources (mmengine does) puts setuptools' vendored
    # packages on sys.path: part of the pinned setuptools, not installed
    path = [p for p in path
            if osp.realpath(p or os.curdir) != osp.realpath(root) and
            osp.basename(osp.normpath(p or os.curdir)) != '_vendor']
    found: Dict[str, md.Distribution] = {}
    for dist in md.distributions(path=path):
        name = dist.metadata['Name']
        if name:
            found.setdefault(canonical(name), dist)
    return found


def stack_of(dists: Dict[str, md.Distribution]) -> str:
    """The stack whose OpenMMLab distributions the venv holds."""
    held = {stack: [d for d in names if d in dists]
            for stack, names in STACKS.items()}
    stacks = [stack for stack, found in held.items() if found]
    if len(stacks) != 1:
        raise LockError(
            'cannot tell the stack of this venv: it holds the OpenMMLab '
            f'distributions {held} (one stack\'s, {STACKS}, expected)')
    return stacks[0]


def python_tag() -> str:
    """The Python ABI and platform a compiled wheel is bound to."""
    impl = {'cpython': 'cp'}.get(sys.implementation.name,
                                 sys.implementation.name)
    abi = f'{impl}{sys.version_info[0]}{sys.version_info[1]}' + \
        getattr(sys, 'abiflags', '')
    return f'{abi}-{platform.system().lower()}_{platform.machine()}'


def wheel_key(stack: str, mmcv_version: str, torch_version: str,
              torch_cuda: Optional[str] = None, pytag: str = None) -> str:
    """The folder of the wheel cache that holds mmcv compiled for a venv:
    the stack, mmcv's version, the torch it was built against (version and
    CUDA build) and the Python ABI and platform."""
    cuda = f'cu{torch_cuda}' if torch_cuda else 'cpu'
    return (f'{stack}-mmcv-{mmcv_version}-torch-{torch_version}-{cuda}-'
            f'{pytag or python_tag()}')


def _torch_build(dists: Dict[str, md.Distribution]) -> Tuple[str, str]:
    """The venv's torch version and its CUDA version (None for a CPU build),
    read from its files, without importing torch."""
    dist = dists.get('torch')
    if dist is None:
        raise LockError('torch is not installed')
    cuda, text = None, None
    for file in dist.files or ():
        if str(file).replace('\\', '/') == 'torch/version.py':
            text = file.read_text()
            break
    if text:
        match = re.search(r"^cuda\s*(?::[^=]*)?=\s*'([^']+)'", text, re.M)
        cuda = match.group(1) if match else None
    return dist.version, cuda


def _direct_url(dist: md.Distribution) -> dict:
    text = dist.read_text('direct_url.json')
    return json.loads(text) if text else {}


def _url_path(url: str) -> str:
    return unquote(urlparse(url).path)


def check(stack: Optional[str] = None,
          lock: Optional[str] = None,
          path: Optional[List[str]] = None,
          root: str = ROOT) -> Tuple[str, List[str]]:
    """Compare the venv with its stack's lock.

    Args:
        stack: The stack; None tells it from the venv. ``MMET_STACK``, where
            set, must agree with the venv.
        lock: The lock file; None: the stack's in ``root``.
        path: Where to look for distributions; None: ``sys.path``.
        root: The checkout ``mmet`` must be installed from.

    Returns:
        The stack and one line per difference (none: the venv is the lock).
    """
    dists = installed(path, root)
    found = stack_of(dists)
    if stack is not None and stack != found:
        raise LockError(f'asked for the {stack} stack, but this venv holds '
                        f'the {found} stack')
    stack = found
    problems = []
    env = os.environ.get('MMET_STACK')
    if env and env != stack:
        problems.append(f'MMET_STACK={env}, but this venv holds the {stack} '
                        'stack: run with that stack\'s venv')
    lock = lock or lock_path(stack, root)
    pins = read_lock(lock)
    name = osp.basename(lock)
    for pkg, version in sorted(pins.items()):
        dist = dists.get(pkg)
        if dist is None:
            problems.append(f'{pkg}: {name} pins {version}, but it is not '
                            'installed')
        elif dist.version != version:
            problems.append(f'{pkg}: the venv has {dist.version}, {name} '
                            f'pins {version}')
    for pkg in sorted(set(dists) - set(pins) - {SELF, *UNMANAGED}):
        problems.append(f'{pkg}: the venv has {dists[pkg].version}, which '
                        f'{name} does not list')
    problems += _check_compiled(stack, dists)
    problems += _check_self(dists, root)
    return stack, problems


def _check_compiled(stack: str, dists: Dict[str, md.Distribution]) -> list:
    """mmcv must come from the wheel compiled for this venv's torch and
    Python (its version is checked against the lock with the rest)."""
    name = COMPILED[stack]
    dist = dists.get(name)
    if dist is None or 'torch' not in dists:
        return []  # reported as not installed
    url = _direct_url(dist).get('url', '')
    wheel = _url_path(url)
    if not (url.startswith('file:') and wheel.endswith('.whl')):
        return [f'{name} {dist.version} was not installed from a wheel '
                f'compiled by tools/setup_env.sh (from {url or "an index"})']
    want = wheel_key(stack, dist.version, *_torch_build(dists))
    got = osp.basename(osp.dirname(wheel))
    if got != want:
        return [f'{name}: the venv has the wheel of {got}, compiled for '
                f'another build than this venv\'s ({want}): run '
                'tools/setup_env.sh']
    return []


def _check_self(dists: Dict[str, md.Distribution], root: str) -> list:
    dist = dists.get(SELF)
    if dist is None:
        return [f'{SELF} is not installed: run tools/setup_env.sh']
    info = _direct_url(dist)
    where = _url_path(info.get('url', ''))
    if not info.get('dir_info', {}).get('editable'):
        return [f'{SELF} {dist.version} is not an editable install '
                '(pip install --no-deps -e .)']
    if osp.realpath(where) != osp.realpath(root):
        return [f'{SELF} is installed editable from {where}, not from this '
                f'checkout {root}']
    return []


def extras(stack: Optional[str] = None, root: str = ROOT) -> List[str]:
    """Installed distributions the lock does not list (to uninstall)."""
    dists = installed(root=root)
    stack = stack or stack_of(dists)
    pins = read_lock(lock_path(stack, root))
    return sorted(set(dists) - set(pins) - {SELF, *UNMANAGED})


def write(stack: str, out=sys.stdout, constraints: str = '') -> None:
    """The current venv as a lock file."""
    dists = installed()
    if stack_of(dists) != stack:
        raise LockError(f'this venv does not hold the {stack} stack')
    print(f'# The {stack} stack\'s lock (MMET_STACK={stack}): every '
          'distribution tools/setup_env.sh\n'
          '# installs into its venv, pinned. Written by `make lock` '
          '(tools/refresh_locks.sh)\n'
          f'# from {constraints or "the unlocked requirements"}, on Python '
          f'{platform.python_version()} ({python_tag()}).\n'
          '# Do not edit by hand: change the unlocked inputs and run '
          '`make lock`\n'
          '# (docs/development.md, "Locks"). Not listed: mmet (installed '
          'editable) and pip\n'
          f'# (comes with the venv). {COMPILED[stack]} is compiled from its '
          'sdist by tools/setup_env.sh.', file=out)
    for name in sorted(set(dists) - {SELF, *UNMANAGED}):
        print(f'{name}=={dists[name].version}', file=out)


def diff(old: str, new: str) -> List[str]:
    """What changed between two lock files, one line per distribution."""
    before = read_lock(old) if osp.exists(old) else {}
    after = read_lock(new)
    lines = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a != b:
            lines.append(f'  {name}: {a or "(none)"} -> {b or "(removed)"}')
    return lines


def main(argv: Iterable[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('check', help='compare the venv with its lock')
    p.add_argument('--stack', choices=STACKS)
    p.add_argument('--lock', help='another lock file (tests)')
    p = sub.add_parser('extras', help='installed but not in the lock')
    p.add_argument('--stack', choices=STACKS)
    p = sub.add_parser('write', help='the venv as a lock, on stdout')
    p.add_argument('--stack', choices=STACKS, required=True)
    p.add_argument('--constraints', default='')
    p = sub.add_parser('diff', help='what changed between two locks')
    p.add_argument('old')
    p.add_argument('new')
    p = sub.add_parser('wheel-key', help="mmcv's wheel cache folder")
    p.add_argument('--stack', choices=STACKS, required=True)
    p.add_argument('--mmcv-version', required=True)
    args = parser.parse_args(argv)
    try:
        if args.cmd == 'check':
            stack, problems = check(args.stack, args.lock)
            if problems:
                print(f'[lock] this venv differs from the {stack} stack\'s '
                      'lock:\n  ' + '\n  '.join(problems) + '\n[lock] run '
                      f'MMET_STACK={stack} tools/setup_env.sh (or `make '
                      'lock` to move the lock; docs/development.md)',
                      file=sys.stderr)
                return 1
        elif args.cmd == 'extras':
            print('\n'.join(extras(args.stack)))
        elif args.cmd == 'write':
            write(args.stack, constraints=args.constraints)
        elif args.cmd == 'diff':
            print('\n'.join(diff(args.old, args.new)) or '  (no change)')
        elif args.cmd == 'wheel-key':
            print(wheel_key(args.stack, args.mmcv_version,
                            *_torch_build(installed())))
    except LockError as e:
        print(f'[lock] {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
