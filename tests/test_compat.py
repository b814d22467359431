"""Each compatibility fix, checked against the failure it exists for, on
the stack that needs it; where a stack does not, that it is not applied."""
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, build_runner, tiny_cfg
from mmengine.runner import load_checkpoint
from mmengine.runner import checkpoint as mm_checkpoint

from mmet import compat


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp('compat')
    build_runner(tiny_cfg(work, max_epochs=1, num_workers=0)).train()
    return work, str(work / 'epoch_1.pth')


def test_plain_torch_load_still_refuses_runner_checkpoints(
        runner_checkpoint):
    """The fix is scoped: torch.load keeps its safe default."""
    _, ckpt = runner_checkpoint
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(ckpt)


def test_mmengine_loads_and_resumes_runner_checkpoints(runner_checkpoint):
    """On either stack: with mmet's loader or with the fork's own."""
    work, ckpt = runner_checkpoint
    assert isinstance(mm_checkpoint.torch, compat._FullUnpicklingTorch) == \
        compat._needs_full_unpickling()
    model = build_runner(tiny_cfg(work / 'load', num_workers=0)).model
    meta = load_checkpoint(model, ckpt)['meta']
    assert meta['epoch'] == 1
    # a longer run than the checkpoint's, on its new plan: this test is
    # about loading, not the curriculum's resume check
    runner = build_runner(tiny_cfg(
        work, max_epochs=2, num_workers=0, resume=True, load_from=ckpt,
        custom_hooks=[dict(type='EfficientTrainHook',
                           allow_curriculum_change=True)]))
    runner.train()
    assert runner.epoch == 2 and runner.iter == 8


def test_without_the_fix_resume_fails(runner_checkpoint, monkeypatch):
    """Proves the fix is needed on this stack (and that the test bites)."""
    work, ckpt = runner_checkpoint
    if not compat._needs_full_unpickling():
        pytest.skip('torch < 2.6 loads full pickles by default, and '
                    'onedl-mmengine >= 0.10.8 loads its checkpoints itself')
    monkeypatch.setattr(mm_checkpoint, 'torch', torch)
    runner = build_runner(tiny_cfg(work / 'nofix', max_epochs=2,
                                   num_workers=0, resume=True,
                                   load_from=ckpt))
    with pytest.raises(pickle.UnpicklingError):
        runner.train()
    monkeypatch.undo()
    compat.apply_compat_patches()  # idempotent
    assert isinstance(mm_checkpoint.torch, compat._FullUnpicklingTorch)


def test_fork_loads_runner_checkpoints_safely_without_the_fix(
        runner_checkpoint, capsys):
    """Where mmengine loads by itself (the fork), mmet leaves its module's
    ``torch`` alone, and a Runner checkpoint loads with ``weights_only=True``
    (its allow-list), not through its full-unpickling fallback."""
    if compat._needs_full_unpickling():
        pytest.skip('this mmengine passes no weights_only: mmet loads')
    _, ckpt = runner_checkpoint
    assert mm_checkpoint.torch is torch
    checkpoint = mm_checkpoint.CheckpointLoader.load_checkpoint(ckpt)
    assert checkpoint['meta']['epoch'] == 1
    # the fork announces its fallback with a bare print
    assert 'weights_only=False' not in capsys.readouterr().out


def test_checkpoint_writes_are_atomic(tmp_path):
    """A save that dies half-way leaves the previous file intact."""
    from mmengine.fileio.backends import LocalBackend
    path = tmp_path / 'epoch_1.pth'
    backend = LocalBackend()
    backend.put(b'complete checkpoint', path)
    assert path.read_bytes() == b'complete checkpoint'

    # write() fails after the file was opened, as a killed save would
    with pytest.raises(TypeError):
        backend.put('not bytes', path)
    assert path.read_bytes() == b'complete checkpoint'
    assert [p.name for p in tmp_path.iterdir()] == ['epoch_1.pth']


def test_atomic_writes_keep_the_usual_file_mode(tmp_path):
    """New files get 0o666 less the umask, as ``open()`` gives them, and an
    overwrite keeps the file's mode (a temp file would be owner-only)."""
    import os
    from mmengine.fileio.backends import LocalBackend
    umask = os.umask(0o022)
    try:
        path = tmp_path / 'epoch_1.pth'
        LocalBackend().put(b'x', path)
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o640)
        LocalBackend().put(b'y', path)
        assert path.stat().st_mode & 0o777 == 0o640
        assert path.read_bytes() == b'y'
    finally:
        os.umask(umask)


def test_import_keeps_stdout_clean():
    """The tools write JSON on stdout: onedl-mmpretrain's note on importing
    its datasets ('Could not import OneDL') goes to stderr."""
    out = subprocess.run([sys.executable, '-c', 'import mmet'], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    assert out == ''
