"""SafeCheckpointHook: a run killed while saving leaves a checkpoint to
resume from, and a broken checkpoint or ``last_checkpoint`` is named with the
fix."""
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, build_runner, eval_loader, tiny_cfg

from mmet.checkpoint import SafeCheckpointHook

TESTS = osp.join(ROOT, 'tests')

# A Runner with max_keep_ckpts=1 whose disk stalls from the save of
# epoch_{slow_from}.pth on; it prints the epoch it starts from.
CHILD = '''
import os, sys, time
from conftest import build_runner, tiny_cfg
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class StallingDisk(Hook):
    def __init__(self, slow_from):
        self.slow_from = slow_from

    def before_train(self, runner):
        print('starts at epoch', runner.epoch, flush=True)

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta']['epoch'] == self.slow_from:
            fsync = os.fsync
            os.fsync = lambda fd: (time.sleep(120), fsync(fd))


work, resume = sys.argv[1], sys.argv[2] == 'resume'
runner = build_runner(tiny_cfg(
    work, max_epochs=4, num_workers=0, resume=resume,
    custom_hooks=[dict(type='StallingDisk', slow_from=None if resume else 3)],
    default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=1,
                                       max_keep_ckpts=1))))
runner.train()
print('trained to epoch', runner.epoch, flush=True)
'''


def child(work, mode):
    return [sys.executable, '-c', CHILD, str(work), mode]


def env():
    return dict(os.environ, PYTHONPATH=TESTS, OMP_NUM_THREADS='1')


def leftovers(folder):
    """Checkpoints and temporary files in ``folder``."""
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.suffix in ('.pth', '.tmp'))


def test_sigkill_while_saving_leaves_a_checkpoint_to_resume(tmp_path):
    work = tmp_path / 'work'
    with open(tmp_path / 'killed.err', 'w') as err:
        proc = subprocess.Popen(child(work, 'train'), cwd=ROOT, env=env(),
                                stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    deadline = time.time() + 60
    try:  # the save of epoch_3.pth has begun when its temporary file shows
        while not list(work.glob('.epoch_3.pth.*.tmp')):
            assert proc.poll() is None, (tmp_path / 'killed.err').read_text()
            assert time.time() < deadline, 'epoch_3.pth was never saved'
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    files = leftovers(work)
    assert 'epoch_2.pth' in files, files
    last = (work / 'last_checkpoint').read_text()
    assert last == str(work / 'epoch_2.pth')
    ckpt = torch.load(last, weights_only=False, map_location='cpu')
    assert ckpt['meta']['epoch'] == 2

    out = subprocess.run(child(work, 'resume'), cwd=ROOT, env=env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'starts at epoch 2' in out.stdout
    assert 'trained to epoch 4' in out.stdout
    # the killed save's temporary file is gone with the old checkpoints
    assert leftovers(work) == ['epoch_4.pth']
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_4.pth')


def trained_hook(work, **checkpoint):
    """A Runner trained one epoch, and its SafeCheckpointHook."""
    runner = build_runner(tiny_cfg(
        work, max_epochs=1, num_workers=0, custom_hooks=[],
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook',
                                           interval=1, **checkpoint))))
    runner.train()
    return runner, next(h for h in runner.hooks
                        if isinstance(h, SafeCheckpointHook))


def test_validation_without_training_passes_the_checkpoint_hook(tmp_path):
    """Runner.val() alone: CheckpointHook's best save runs after the val
    epoch (and, without save_best, returns at once) before any before_train
    made its file backend."""
    runner = build_runner(tiny_cfg(
        tmp_path, num_workers=0, custom_hooks=[],
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook',
                                           interval=1)),
        val_dataloader=eval_loader(), val_cfg=dict(),
        val_evaluator=dict(type='Accuracy', topk=(1, ))))
    assert 'accuracy/top1' in runner.val()


def test_a_failed_save_keeps_the_checkpoint_it_replaces(tmp_path,
                                                        monkeypatch):
    runner, hook = trained_hook(tmp_path, max_keep_ckpts=1)

    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(runner, 'save_checkpoint', disk_full)
    with pytest.raises(OSError, match='No space'):
        hook.after_train_epoch(runner)  # the save of epoch_2.pth
    assert leftovers(tmp_path) == ['epoch_1.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == \
        str(tmp_path / 'epoch_1.pth')


def test_last_checkpoint_is_replaced_whole(tmp_path, monkeypatch):
    """A write of last_checkpoint that dies half-way (here: its content is
    not a str) leaves the previous content."""
    runner, hook = trained_hook(tmp_path)
    monkeypatch.setattr(hook.file_backend, 'join_path', lambda *p: Path(*p))
    with pytest.raises(TypeError):
        hook.after_train_epoch(runner)  # the save of epoch_2.pth
    assert (tmp_path / 'epoch_2.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text() == \
        str(tmp_path / 'epoch_1.pth')
    assert not list(tmp_path.glob('.*.tmp'))


def test_a_failed_best_save_keeps_the_previous_best(tmp_path, monkeypatch):
    runner = build_runner(tiny_cfg(tmp_path, num_workers=0, custom_hooks=[]))
    hook = SafeCheckpointHook(save_best='acc', rule='greater')
    hook.before_train(runner)
    hook.after_val_epoch(runner, {'acc': 0.5})
    best = hook.best_ckpt_path
    # a better score at the same epoch rewrites the same file: it stays
    hook.after_val_epoch(runner, {'acc': 0.6})
    assert hook.best_ckpt_path == best and osp.isfile(best)

    def disk_full(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(runner, 'save_checkpoint', disk_full)
    hook.filename_tmpl = 'later_{}.pth'
    with pytest.raises(OSError, match='No space'):
        hook.after_val_epoch(runner, {'acc': 0.7})
    assert osp.isfile(best)


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, '-c', 'import os; print(os.getpid())'],
        capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # an ended process
    stale = tmp_path / f'.epoch_3.pth.{dead_pid}.0123abcd.tmp'
    stale_last = tmp_path / f'.last_checkpoint.{dead_pid}.89abcdef.tmp'
    live = tmp_path / f'.epoch_3.pth.{os.getpid()}.0123abcd.tmp'
    unrelated = tmp_path / f'.notes.{dead_pid}.tmp'
    for p in (stale, stale_last, live, unrelated):
        p.write_bytes(b'partial')
    runner = build_runner(tiny_cfg(tmp_path, num_workers=0, custom_hooks=[]))
    SafeCheckpointHook().before_train(runner)
    assert not stale.exists() and not stale_last.exists()
    assert live.exists() and unrelated.exists()


def test_checkpoints_are_written_whole(tmp_path):
    """A write that dies half-way leaves the previous file intact, and files
    get the usual mode (0o666 less the umask; an overwrite keeps its own)."""
    from mmet.checkpoint import AtomicLocalBackend
    path = tmp_path / 'epoch_1.pth'
    backend = AtomicLocalBackend()
    umask = os.umask(0o022)
    try:
        backend.put(b'complete checkpoint', path)
        assert path.stat().st_mode & 0o777 == 0o644
        # write() fails after the file was opened, as a killed save would
        with pytest.raises(TypeError):
            backend.put('not bytes', path)
        assert path.read_bytes() == b'complete checkpoint'
        assert [p.name for p in tmp_path.iterdir()] == ['epoch_1.pth']
        path.chmod(0o640)
        backend.put(b'y', path)
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


# -- broken checkpoints and last_checkpoint on --resume ----------------------
@pytest.fixture(scope='module')
def two_epochs(tmp_path_factory):
    work = tmp_path_factory.mktemp('two_epochs')
    build_runner(tiny_cfg(work, max_epochs=2, num_workers=0,
                          custom_hooks=[])).train()
    return work


@pytest.fixture
def work(two_epochs, tmp_path):
    """A copy of the two-epoch run: epoch_1.pth, epoch_2.pth."""
    work = Path(shutil.copytree(two_epochs, tmp_path / 'work'))
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    return work


def resume(work, **kwargs):
    build_runner(tiny_cfg(
        work, max_epochs=3, num_workers=0, custom_hooks=[], resume=True,
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook')),
        **kwargs)).train()


@pytest.mark.parametrize('break_it, problem', [
    (lambda data: b'', 'is empty'),
    (lambda data: b'epoch 2, see notes\n', 'is not a torch checkpoint'),
    (lambda data: data[:len(data) // 2], 'is truncated'),
])
def test_a_broken_checkpoint_is_named_with_the_fix(work, break_it, problem):
    bad = work / 'epoch_2.pth'
    bad.write_bytes(break_it(bad.read_bytes()))
    with pytest.raises(RuntimeError) as error:
        resume(work, load_from=str(bad))
    msg = str(error.value)
    assert f'{bad} ({bad.stat().st_size} bytes) {problem}' in msg, msg
    assert f'--resume {work / "epoch_1.pth"}' in msg, msg
    assert f'delete {bad}' in msg, msg


def test_last_checkpoint_naming_a_truncated_file(work):
    bad = work / 'epoch_2.pth'
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match='is truncated') as error:
        resume(work)
    assert str(bad) in str(error.value)
    assert f'--resume {work / "epoch_1.pth"}' in str(error.value)


def test_an_empty_last_checkpoint_is_named_with_the_fix(work):
    (work / 'last_checkpoint').write_text('')
    with pytest.raises(FileNotFoundError) as error:
        resume(work)
    msg = str(error.value)
    assert (f'{work / "last_checkpoint"} is empty (a run killed while '
            'writing it?)') in msg, msg
    assert f'--resume {work / "epoch_2.pth"}' in msg, msg
    assert f'delete {work / "last_checkpoint"} to start afresh' in msg, msg


def test_last_checkpoint_naming_a_missing_file(work):
    (work / 'epoch_2.pth').unlink()
    with pytest.raises(FileNotFoundError) as error:
        resume(work)
    msg = str(error.value)
    assert (f'{work / "last_checkpoint"} names {work / "epoch_2.pth"}, '
            'which does not exist') in msg, msg
    assert f'--resume {work / "epoch_1.pth"}' in msg, msg
    assert f'delete {work / "last_checkpoint"} to start afresh' in msg, msg
