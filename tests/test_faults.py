"""A training killed mid-stage resumes into exactly the same curriculum."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
from conftest import FMNIST, ROOT

pytestmark = pytest.mark.usefixtures('fmnist')

DEMO_ET = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')


def probe_config(tmp_path):
    cfg = tmp_path / 'probed_et.py'
    cfg.write_text(
        f'_base_ = [{DEMO_ET!r}]\n'
        "custom_imports = dict(imports=['mmet', 'probe_hook'])\n"
        "custom_hooks = [dict(type='EfficientTrainHook'),\n"
        "                dict(type='ShapeProbeHook')]\n")
    return str(cfg)


def train_cmd(cfg, work_dir, *extra):
    return [
        sys.executable, 'tools/train.py', cfg, '--work-dir', str(work_dir),
        *extra, '--cfg-options', 'train_cfg.max_epochs=10',
        'train_cfg.val_interval=10', 'param_scheduler.1.T_max=9',
        f'train_dataloader.dataset.data_root={FMNIST}',
        f'val_dataloader.dataset.data_root={FMNIST}',
        'train_dataloader.dataset.indices=256',
        'val_dataloader.dataset.indices=200',
        'train_dataloader.batch_size=32', 'train_dataloader.num_workers=1',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
    ]


def env():
    return dict(os.environ, PYTHONPATH=osp.join(ROOT, 'tests'),
                OMP_NUM_THREADS='1')


def epochs_seen(work_dir, rank=0):
    """{epoch: (stage, B, m, lr of the first iter)} from the probe file."""
    rows = [json.loads(line) for line in
            open(osp.join(work_dir, f'probe_rank{rank}.jsonl'))]
    first = {}
    for r in rows:  # the last process to train an epoch wins
        if r['iter'] == 0:
            first[r['epoch']] = (r['stage'], r['B'], r['m'], r['lr'])
    return first, rows


def test_sigkill_mid_stage_then_resume(tmp_path):
    cfg = probe_config(tmp_path)
    ref_dir, cut_dir = tmp_path / 'ref', tmp_path / 'cut'
    subprocess.run(train_cmd(cfg, ref_dir), cwd=ROOT, env=env(), check=True,
                   capture_output=True, timeout=600)
    ref, _ = epochs_seen(ref_dir)
    assert sorted(ref) == list(range(10))

    # kill -9 during epoch index 3, the second epoch of stage 2
    proc = subprocess.Popen(train_cmd(cfg, cut_dir), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True)
    probe = cut_dir / 'probe_rank0.jsonl'
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if probe.exists() and any(json.loads(line)['epoch'] == 3 and
                                  json.loads(line)['iter'] >= 2
                                  for line in probe.read_text().splitlines()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, 'training ended before it could be killed'
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (cut_dir / 'epoch_3.pth').exists()
    assert not (cut_dir / 'epoch_4.pth').exists()

    out = subprocess.run(train_cmd(cfg, cut_dir, '--resume'), cwd=ROOT,
                         env=env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got, rows = epochs_seen(cut_dir)
    assert len({r['pid'] for r in rows}) == 2  # killed run + resumed run
    assert sorted(got) == list(range(10))
    for epoch in range(10):
        stage, b, m, lr = got[epoch]
        assert (stage, b, m) == ref[epoch][:3], epoch
        assert lr == pytest.approx(ref[epoch][3], rel=1e-6), epoch

    # every checkpoint the killed run completed is intact
    import torch
    for n in range(1, 11):
        ckpt = torch.load(cut_dir / f'epoch_{n}.pth', weights_only=False,
                          map_location='cpu')
        assert ckpt['meta']['epoch'] == n


def test_elastic_restart_after_a_rank_is_killed(tmp_path):
    """torchrun --max-restarts: a rank dies mid-stage, the group restarts,
    resumes from the last checkpoint and trains the same curriculum."""
    cfg, work = probe_config(tmp_path), tmp_path / 'elastic'
    cmd = train_cmd(cfg, work, '--resume', '--launcher', 'pytorch')
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           '--nproc_per_node=2', '--max_restarts=1', '--master_port=29547',
           *cmd[1:]] + ['env_cfg.dist_cfg.backend=gloo']
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    probe = work / 'probe_rank1.jsonl'
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        if probe.exists():
            for line in probe.read_text().splitlines():
                row = json.loads(line)
                if row['epoch'] == 3 and row['iter'] >= 1:
                    victim = row['pid']
        time.sleep(0.2)
    assert victim is not None, 'rank 1 never reached epoch 3'
    os.kill(victim, signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=420)
    except subprocess.TimeoutExpired:  # a hang is a failure
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    (tmp_path / 'torchrun.err').write_text(err)
    assert proc.returncode == 0, err[-6000:]

    expected = [(1 + e // 2, [20, 20, 20, 24, 28][e // 2],
                 [1, 3, 5, 7, 9][e // 2]) for e in range(10)]
    lrs = []
    for rank in (0, 1):
        got, rows = epochs_seen(work, rank)
        assert len({r['pid'] for r in rows}) == 2, rank  # restarted once
        assert [got[e][:3] for e in range(10)] == expected, rank
        lrs.append([got[e][3] for e in range(10)])
    assert lrs[0] == lrs[1]
