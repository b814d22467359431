"""A checkpoint whose pickle runs code is refused on every load path of
mmet's entry points, naming the file and the opt-in; mmet's own and
mmpretrain's published checkpoints load without it (issue 22, item 1)."""
import functools
import http.server
import os
import subprocess
import sys
import threading

import pytest
import torch
from conftest import FMNIST, ROOT, build_runner, tiny_cfg

from mmet.checkpoint import UNSAFE_ENV, UnsafeCheckpointError

pytestmark = pytest.mark.usefixtures('fmnist')
DEMO = os.path.join(ROOT, 'configs/demo/fmnist_resnet_cropflip_baseline.py')


class RunsCode:
    """What an attacker's checkpoint holds: unpickling it calls exec."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("ran")', ))


def demo_options(work, **extra):
    options = [
        f'train_dataloader.dataset.data_root={FMNIST}',
        f'val_dataloader.dataset.data_root={FMNIST}',
        f'test_dataloader.dataset.data_root={FMNIST}',
        'train_dataloader.dataset.indices=128',
        'val_dataloader.dataset.indices=64',
        'test_dataloader.dataset.indices=64',
        'train_cfg.max_epochs=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
    ] + [f'{k}={v}' for k, v in extra.items()]
    return ['--work-dir', str(work), '--cfg-options', *options]


def tool(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """mmet's own checkpoint (trained by tools/train.py), its published
    form (mmpretrain's publish_model.py), and an attacker's copy."""
    root = tmp_path_factory.mktemp('security')
    out = tool('tools/train.py', DEMO, *demo_options(root / 'train'))
    assert out.returncode == 0, out.stderr[-3000:]
    own = root / 'train' / 'epoch_2.pth'
    ckpt = torch.load(own, weights_only=False)
    for key in ('optimizer', 'param_schedulers', 'hook_msgs', 'message_hub'):
        ckpt.pop(key, None)
    ckpt['meta'].setdefault('mmpretrain_version', '1.2.0')
    ckpt['meta'].setdefault('dataset_meta', dict(classes=tuple('abc')))
    published = root / 'published.pth'
    torch.save(ckpt, published)
    ckpt['meta']['note'] = RunsCode(root / 'marker')
    evil = root / 'evil.pth'
    torch.save(ckpt, evil)
    return dict(own=own, published=published, evil=evil,
                marker=root / 'marker', root=root)


def refused(out, path):
    assert out.returncode != 0
    assert f'{path} holds builtins.exec' in out.stderr, out.stderr[-3000:]
    assert f'{UNSAFE_ENV}=1' in out.stderr and '--unsafe-load' in out.stderr


def test_tools_refuse_a_checkpoint_that_runs_code(checkpoints, tmp_path):
    evil, marker = checkpoints['evil'], checkpoints['marker']
    refused(tool('tools/test.py', DEMO, str(evil), *demo_options(
        tmp_path / 'test')), evil)
    refused(tool('tools/train.py', DEMO, *demo_options(
        tmp_path / 'load', load_from=evil)), evil)
    refused(tool('tools/train.py', DEMO, '--resume', str(evil),
                 *demo_options(tmp_path / 'resume')), evil)
    out = tool('tools/extract_backbone.py', str(evil),
               str(tmp_path / 'backbone.pth'), '--arch', 'resnet50')
    refused(out, evil)
    assert not marker.exists()  # nothing ran


def test_the_opt_in_loads_it(checkpoints, tmp_path):
    """With MMET_UNSAFE_LOAD=1 (a file the user trusts) it loads, as torch
    before 2.6 did: and its code runs, which is why it is an opt-in."""
    out = tool('tools/test.py', DEMO, str(checkpoints['evil']),
               *demo_options(tmp_path / 'test'), env={UNSAFE_ENV: '1'})
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'it can run code' in out.stdout + out.stderr
    assert checkpoints['marker'].read_text() == 'ran'
    checkpoints['marker'].unlink()


@pytest.mark.parametrize('which', ['own', 'published'])
def test_mmet_and_published_checkpoints_load_without_the_opt_in(
        checkpoints, tmp_path, which):
    out = tool('tools/test.py', DEMO, str(checkpoints[which]),
               *demo_options(tmp_path / 'test'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'accuracy/top1' in out.stdout + out.stderr


@pytest.fixture
def server(checkpoints):
    """The checkpoints over HTTP on loopback, as a download would be."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(checkpoints['root']))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()


def test_pretrained_init_from_a_url(checkpoints, server, tmp_path,
                                    monkeypatch):
    """``init_cfg=dict(type='Pretrained')`` by URL: the published file
    loads, the attacker's is refused."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv(UNSAFE_ENV, raising=False)

    def runner(name, work):
        cfg = tiny_cfg(tmp_path / work, max_epochs=1, num_workers=0)
        cfg['model']['init_cfg'] = dict(
            type='Pretrained', checkpoint=f'{server}/{name}')
        return build_runner(cfg)

    # a published checkpoint of another model: loads (non-strict), the
    # head's shapes differ from the tiny model's, which mmengine reports
    runner('published.pth', 'ok').train()
    with pytest.raises(UnsafeCheckpointError, match='holds objects beyond'):
        runner('evil.pth', 'evil').train()
    assert not checkpoints['marker'].exists()
