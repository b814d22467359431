"""tools/extract_backbone.py never destroys a checkpoint and names bad input.
"""
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import ROOT


def _tool():
    spec = importlib.util.spec_from_file_location(
        'extract_backbone', osp.join(ROOT, 'tools/extract_backbone.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


eb = _tool()


def run(*args):
    return subprocess.run([sys.executable, 'tools/extract_backbone.py',
                           *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / 'epoch_3.pth'
    torch.save(dict(meta=dict(epoch=3), state_dict={
        'backbone.conv1.weight': torch.ones(2, 3, 1, 1),
        'head.fc.weight': torch.ones(4, 2)}, optimizer={'state': {}}), path)
    return path


def test_the_output_may_not_be_the_input(checkpoint):
    before = checkpoint.read_bytes()
    proc = run(checkpoint, checkpoint)
    assert proc.returncode != 0
    assert 'is the input checkpoint' in proc.stderr
    assert 'head, optimizer and resume state' in proc.stderr
    # not even with --force, and through another spelling of the path
    proc = run(checkpoint, osp.join(osp.dirname(checkpoint), '.',
                                    checkpoint.name), '--force')
    assert proc.returncode != 0 and 'is the input checkpoint' in proc.stderr
    assert checkpoint.read_bytes() == before


def test_an_existing_output_needs_force(checkpoint, tmp_path):
    out = tmp_path / 'backbone.pth'
    out.write_bytes(b'keep me')
    proc = run(checkpoint, out)
    assert proc.returncode != 0
    assert f'{out} exists; pass --force' in proc.stderr
    assert out.read_bytes() == b'keep me'
    # with --force it gets as far as reading the checkpoint (this toy one
    # holds no known backbone, which is reported as such)
    proc = run(checkpoint, out, '--force')
    assert 'holds no backbone this tool knows' in proc.stderr


@pytest.mark.parametrize('content', [b'', b'PK\x03\x04truncated', b'hello\n'])
def test_unreadable_checkpoints_are_named(content, tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(content)
    with pytest.raises(eb.CheckpointError,
                       match=f'{bad} is not a readable checkpoint'):
        eb.extract(str(bad), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def test_a_directory_is_named(tmp_path):
    with pytest.raises(eb.CheckpointError, match='is a directory; pass a '
                       'checkpoint file in it'):
        eb.extract(str(tmp_path), str(tmp_path / 'out.pth'))
