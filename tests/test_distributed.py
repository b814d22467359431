"""Two DDP processes (torchrun, gloo, CPU) agree on the curriculum."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from conftest import FMNIST, ROOT

pytestmark = pytest.mark.usefixtures('fmnist')

DEMO_ET = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')


def test_two_ranks_train_the_same_stages(tmp_path):
    cfg = tmp_path / 'ddp_et.py'
    cfg.write_text(
        f'_base_ = [{DEMO_ET!r}]\n'
        "custom_imports = dict(imports=['mmet', 'probe_hook'])\n"
        "custom_hooks = [dict(type='EfficientTrainHook'),\n"
        "                dict(type='ShapeProbeHook')]\n")
    env = dict(os.environ, PYTHONPATH=osp.join(ROOT, 'tests'),
               OMP_NUM_THREADS='1')
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        '--master_port=29531', 'tools/train.py', str(cfg), '--launcher',
        'pytorch', '--work-dir', str(tmp_path), '--cfg-options',
        'train_cfg.max_epochs=5', 'train_cfg.val_interval=5',
        f'train_dataloader.dataset.data_root={FMNIST}',
        f'val_dataloader.dataset.data_root={FMNIST}',
        'train_dataloader.dataset.indices=256',
        'val_dataloader.dataset.indices=200',
        'train_dataloader.batch_size=32', 'train_dataloader.num_workers=1',
        'param_scheduler.1.T_max=4', 'env_cfg.dist_cfg.backend=gloo',
    ]
    # a hang is a failure: bound the whole run
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=420)
    assert out.returncode == 0, out.stderr[-4000:]

    runs = []
    for rank in (0, 1):
        rows = [json.loads(line) for line in
                open(tmp_path / f'probe_rank{rank}.jsonl')]
        runs.append(rows)
        by_epoch = {}
        for r in rows:
            by_epoch.setdefault(r['epoch'], set()).add(
                (r['stage'], r['B'], r['m'], tuple(r['shapes'])))
        assert sorted(by_epoch) == list(range(5))
        for epoch, seen in by_epoch.items():
            # one (stage, B, m) per epoch, and every batch at that B
            assert len(seen) == 1, (rank, epoch, seen)
            stage, b, m, shapes = seen.pop()
            assert shapes == (repr([b, b]), ), (rank, epoch, shapes)
    # both ranks took the same number of steps through the same stages
    strip = [[(r['epoch'], r['stage'], r['B'], r['m']) for r in rows]
             for rows in runs]
    assert strip[0] == strip[1]
    stages = sorted({(e, s, b, m) for e, s, b, m in strip[0]})
    assert [(s, b, m) for _, s, b, m in stages] == [
        (1, 20, 1), (2, 20, 3), (3, 20, 5), (4, 24, 7), (5, 28, 9)]
