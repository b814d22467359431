"""Soak test: memory of DDP ranks and their data workers over a curriculum.

    python tools/benchmark_soak.py CONFIG [--nproc 2] [--epochs 10]
        [--train-size 3000] [--batch-size 64] [--workers 2]
        [--work-dir DIR] [--out soak.json] [--cfg-options k=v ...]

Trains CONFIG (default: the Fashion-MNIST demo with the EfficientTrain
curriculum) with ``torchrun`` and ``--launcher pytorch`` (gloo on CPUs,
through mmet's compat layer), persistent data workers and a train subset,
through every stage. Each rank samples the memory of itself and of its data
workers (psutil: RSS, plus USS, the memory only that process holds) every
``--interval`` iterations and at the end of each epoch, and appends one JSON
line per epoch to ``<work_dir>/soak_rank<R>.jsonl``. The script then prints,
per epoch, the stage, B and the RSS of each rank and its workers; the peak
RSS of every process; and the growth after the first stage, which should
stay within ``--max-growth`` (5%): persistent workers are re-forked at each
stage switch, and a leak there (old workers never reaped, pipelines copied
per switch) shows up as growth.

This is a benchmark, not a test; it takes a few minutes on 2 CPU cores.
Importing this module (the training processes do, via ``custom_imports``)
registers :class:`RssProbeHook`.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

import psutil
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_ET = osp.join(ROOT, 'configs/demo/fmnist_resnet_et.py')
MB = 1024 * 1024


def _memory(proc: psutil.Process) -> Optional[Dict[str, float]]:
    """RSS and USS of one process in MiB; None if it has just exited."""
    try:
        info = proc.memory_full_info()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return dict(pid=proc.pid, rss=info.rss / MB, uss=info.uss / MB)


@HOOKS.register_module()
class RssProbeHook(Hook):
    """Record the memory of this process and its children per train epoch.

    Args:
        interval (int): Also sample every ``interval`` iterations, so the
            epoch's peak is seen, not only its end. Defaults to 10.
    """

    priority = 'LOWEST'

    def __init__(self, interval: int = 10):
        self.interval = interval
        self._peak: Dict[int, dict] = {}
        self._start = 0.0

    def _sample(self) -> dict:
        me = psutil.Process()
        main = _memory(me)
        workers = [m for m in map(_memory, me.children(recursive=True)) if m]
        for m in [main] + workers:
            old = self._peak.get(m['pid'])
            if old is None or m['rss'] > old['rss']:
                self._peak[m['pid']] = dict(m, role='main' if m is main
                                            else 'worker')
        return dict(main=main, workers=workers)

    def before_train_epoch(self, runner) -> None:
        self._peak, self._start = {}, time.time()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if (batch_idx + 1) % self.interval == 0:
            self._sample()

    def after_train_epoch(self, runner) -> None:
        end = self._sample()
        hub = runner.message_hub

        def scalar(key):  # set by EfficientTrainHook; absent without it
            try:
                return float(hub.get_scalar(f'train/{key}').current())
            except KeyError:
                return None

        row = dict(epoch=runner.epoch + 1, stage=scalar('et_stage'),
                   B=scalar('et_B'), m=scalar('et_m'),
                   seconds=time.time() - self._start, end=end,
                   peak=sorted(self._peak.values(), key=lambda m: m['pid']))
        path = osp.join(runner.work_dir, f'soak_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(row) + '\n')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Memory soak: DDP + persistent workers through every '
        'curriculum stage')
    parser.add_argument('config', nargs='?', default=DEMO_ET)
    parser.add_argument('--nproc', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--train-size', type=int, default=3000,
                        help='train on the first N images (all ranks)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, default=2,
                        help='data workers per rank')
    parser.add_argument('--interval', type=int, default=10)
    parser.add_argument('--port', type=int, default=29561)
    parser.add_argument('--max-growth', type=float, default=0.05)
    parser.add_argument('--work-dir', default='work_dirs/soak')
    parser.add_argument('--out', help='write the results as JSON')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='more key=value overrides for tools/train.py')
    return parser.parse_args()


def write_config(args) -> str:
    """CONFIG plus the probe hook, dumped into the work dir."""
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    imports = list(cfg.get('custom_imports', {}).get('imports', ['mmet']))
    cfg.custom_imports = dict(imports=imports + ['benchmark_soak'],
                              allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='RssProbeHook', interval=args.interval)]
    path = osp.join(args.work_dir, 'soak_config.py')
    cfg.dump(path)
    return path


def run_training(args, cfg_path: str) -> float:
    for rank in range(args.nproc):  # a fresh record per run
        path = osp.join(args.work_dir, f'soak_rank{rank}.jsonl')
        if osp.exists(path):
            os.remove(path)
    data = osp.join(ROOT, 'data/fashion-mnist')
    options = [
        f'train_cfg.max_epochs={args.epochs}',
        f'train_cfg.val_interval={args.epochs}',
        f'param_scheduler.1.T_max={max(args.epochs - 1, 1)}',
        f'train_dataloader.dataset.data_root={data}',
        f'val_dataloader.dataset.data_root={data}',
        f'train_dataloader.dataset.indices={args.train_size}',
        'val_dataloader.dataset.indices=1000',
        f'train_dataloader.batch_size={args.batch_size}',
        f'train_dataloader.num_workers={args.workers}',
        'train_dataloader.persistent_workers=True',
        'env_cfg.dist_cfg.backend=gloo',
        'default_hooks.logger.interval=1000',
        'default_hooks.checkpoint.interval=1000',
    ] + args.cfg_options
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           f'--nproc_per_node={args.nproc}', f'--master_port={args.port}',
           osp.join(ROOT, 'tools/train.py'), cfg_path, '--launcher',
           'pytorch', '--work-dir', args.work_dir, '--cfg-options', *options]
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(
                   [osp.join(ROOT, 'tools'), ROOT,
                    os.environ.get('PYTHONPATH', '')]))
    start = time.time()
    log = open(osp.join(args.work_dir, 'soak_train.log'), 'w')
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f'training failed (exit {proc.returncode}); see '
                         f"{osp.join(args.work_dir, 'soak_train.log')}")
    return time.time() - start


def _growth(series: List[float], first_stage_end: int) -> float:
    """Largest rise after the first stage's last epoch, relative to it."""
    ref = series[first_stage_end]
    return max(series[first_stage_end:]) / ref - 1 if ref else 0.0


def _stage_spans(stages: List[float]) -> List[tuple]:
    """(first, last) epoch index of each stage that spans 2+ epochs."""
    spans = []
    for i, s in enumerate(stages):
        if i and stages[i - 1] == s:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    return [(a, b) for a, b in spans if b > a]


def summarize(args, wall: float) -> dict:
    ranks = []
    for rank in range(args.nproc):
        path = osp.join(args.work_dir, f'soak_rank{rank}.jsonl')
        ranks.append([json.loads(line) for line in open(path)])
    epochs = [r['epoch'] for r in ranks[0]]
    stages = [r['stage'] for r in ranks[0]]
    # index of the first stage's last epoch: the reference for growth
    first_end = max(i for i, s in enumerate(stages) if s == stages[0])

    table, growth, peaks = [], {}, []
    for i, epoch in enumerate(epochs):
        row = dict(epoch=epoch, stage=stages[i], B=ranks[0][i]['B'],
                   m=ranks[0][i]['m'],
                   seconds=max(r[i]['seconds'] for r in ranks))
        for rank, rows in enumerate(ranks):
            end = rows[i]['end']
            row[f'rank{rank}_main'] = end['main']['rss']
            row[f'rank{rank}_workers'] = [w['rss'] for w in end['workers']]
            row[f'rank{rank}_workers_uss'] = sum(
                w['uss'] for w in end['workers'])
        table.append(row)
    # larger B legitimately needs more memory (activations); a leak also
    # grows where B stays: within a stage, and across stages of equal B
    same_b = [i for i, r in enumerate(ranks[0])
              if r['B'] == ranks[0][0]['B'] and i >= first_end]
    same_b_growth, drift = {}, {}
    for rank, rows in enumerate(ranks):
        main = [r['end']['main']['rss'] for r in rows]
        workers = [sum(w['rss'] for w in r['end']['workers']) for r in rows]
        for key, series in ((f'rank{rank}_main', main),
                            (f'rank{rank}_workers_total', workers)):
            growth[key] = _growth(series, first_end)
            same_b_growth[key] = _growth([series[i] for i in same_b], 0)
            drift[key] = max((_growth(series[a:b + 1], 0)
                              for a, b in _stage_spans(stages)), default=0.0)
        by_pid = {}
        for r in rows:
            for m in r['peak']:
                old = by_pid.get(m['pid'])
                if old is None or m['rss'] > old['rss']:
                    by_pid[m['pid']] = dict(m, rank=rank, epoch=r['epoch'])
        peaks += sorted(by_pid.values(),
                        key=lambda m: (m['role'] != 'main', m['epoch']))
    ok = all(g <= args.max_growth for g in growth.values())
    return dict(config=args.config, nproc=args.nproc, epochs=args.epochs,
                train_size=args.train_size, batch_size=args.batch_size,
                workers_per_rank=args.workers, wall_seconds=wall,
                first_stage_last_epoch=epochs[first_end], table=table,
                peaks=peaks, growth=growth, same_b_growth=same_b_growth,
                within_stage_drift=drift, max_growth=args.max_growth, ok=ok)


def report(res: dict) -> None:
    nproc = res['nproc']
    head = f"{'epoch':>5} {'stage':>5} {'B':>4} {'m':>3} {'s':>6}"
    for rank in range(nproc):
        head += f" {f'rank{rank} main':>11} {f'rank{rank} workers':>17}"
    print('RSS in MiB at the end of each epoch')
    print(head)
    for row in res['table']:
        stage, b, m = (row[k] or 0 for k in ('stage', 'B', 'm'))
        line = (f"{row['epoch']:>5} {stage:>5.0f} {b:>4.0f} {m:>3.0f} "
                f"{row['seconds']:>6.1f}")
        for rank in range(nproc):
            workers = '+'.join(f'{w:.0f}' for w in row[f'rank{rank}_workers'])
            line += f" {row[f'rank{rank}_main']:>11.1f} {workers:>17}"
        print(line)
    # USS: pages only this process holds (fork-shared pages excluded)
    print('\nPeak RSS per process (MiB):')
    for m in res['peaks']:
        print(f"  rank{m['rank']} {m['role']:<6} pid {m['pid']:>7}: "
              f"{m['rss']:7.1f} (USS {m['uss']:6.1f}) in epoch {m['epoch']}")
    print(f"\nGrowth after the first stage (from the end of epoch "
          f"{res['first_stage_last_epoch']}), target <= "
          f"{res['max_growth']:.0%}:")
    print(f"  {'':<22} {'all epochs':>10} {'same B':>8} {'in-stage':>9}")
    for key, g in res['growth'].items():
        print(f"  {key:<22} {g:>+10.1%} "
              f"{res['same_b_growth'][key]:>+8.1%} "
              f"{res['within_stage_drift'][key]:>+9.1%}")
    print(f"{'PASS' if res['ok'] else 'FAIL'}; wall {res['wall_seconds']:.0f}"
          ' s')


def main():
    args = parse_args()
    args.work_dir = osp.abspath(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    wall = run_training(args, write_config(args))
    res = summarize(args, wall)
    report(res)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=1)
    sys.exit(0 if res['ok'] else 1)


if __name__ == '__main__':
    main()
