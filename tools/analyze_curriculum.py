"""Print the curriculum of a config: stages, epochs, B, m and predicted cost.

    python tools/analyze_curriculum.py configs/demo/fmnist_resnet_et.py
    python tools/analyze_curriculum.py CONFIG --json          # for machines
    python tools/analyze_curriculum.py CONFIG --plot et.png   # B and m/epoch
    python tools/analyze_curriculum.py mmpretrain::resnet/resnet50_8xb32_in1k.py \
        --curriculum efficienttrain++ --speedup 1.5        # tools/train.py's flags

The predicted speedup counts FLOPs as proportional to pixels, against the same
number of epochs at full size; measured wall time is the job of
``tools/benchmark_*.py``. For an EfficientTrain++ config
(``train_cfg=dict(type='EfficientTrainLoop', budget=E, ...)``) the real epochs
are derived from the budget, and the speedup is against the loop's
``baseline_epochs`` (300) full-size epochs.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from mmet.cli import (add_curriculum_args,  # noqa: E402
                      apply_curriculum_args, load_config)
from mmet.plan import plan_from_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(
        description='Show the EfficientTrain curriculum of a config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--json', action='store_true', help='print JSON instead of a table')
    parser.add_argument('--plot', help='save a PNG of B and m over epochs')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings, key=value (as in tools/train.py)')
    add_curriculum_args(parser)  # the plan tools/train.py --curriculum runs
    return parser.parse_args()


NO_FULL_SIZE = ('The train pipeline has no FourierCrop or '
                'StagedRandomResizedCrop, and there is no '
                'DeviceAugmentPreprocessor; their size gives the full input '
                'size.')


def report(plan) -> dict:
    """The plan as a JSON-able report: its stages and its cost."""
    compute = plan.compute_epochs()
    rep = dict(
        max_epochs=plan.max_epochs,
        full_size=plan.full_size,
        stages=plan.table(),
        switch=plan.switch,
        relative_compute=compute / plan.max_epochs,
        compute_epochs=compute,
        predicted_speedup=plan.predicted_speedup())
    if plan.by_budget:
        rep.update(budget=plan.budget, baseline_epochs=plan.baseline_epochs,
                   replanned=plan.replanned)
    return rep


def format_table(rep: dict) -> str:
    replay = any(r.get('replay', 1) > 1 for r in rep['stages'])
    head = ('stage', 'epochs', 'B', 'm', 'cost/epoch', 'compute share')
    if replay:
        head = head[:4] + ('replay R', ) + head[4:]
    rows = [head]
    for r in rep['stages']:
        size = r['size']
        row = (
            str(r['stage']), f"{r['start_epoch']:.4g}-{r['end_epoch']:.4g} "
            f"({r['epochs']:.4g})",
            str(size) if isinstance(size, int) else 'x'.join(map(str, size)),
            f"{r['magnitude']:g}", f"{r['relative_cost']:.3f}",
            f"{r['compute'] / rep['relative_compute']:.1%}")
        if replay:
            row = row[:4] + (str(r['replay']), ) + row[4:]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(row, widths))
             for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    if 'budget' in rep:  # EfficientTrain++: a budget, not max_epochs
        if rep['switch'] == 'iteration':
            lines.append('stages switch at iterations (the batched path): '
                         'each gets its exact share')
        elif rep['replanned']:
            lines.append('re-planned: whole epochs would leave a stage '
                         'without one, so every stage gets one epoch at '
                         'least, beyond the budget')
        lines.append(
            f"budget E={rep['budget']:g} full-size epochs -> "
            f"{rep['max_epochs']} real epochs, "
            f"{rep['compute_epochs']:.1f} full-size epochs of compute -> "
            f"predicted speedup {rep['predicted_speedup']:.2f}x vs "
            f"{rep['baseline_epochs']:g} full-size epochs")
        return '\n'.join(lines)
    lines.append(
        f"relative compute {rep['relative_compute']:.3f} of "
        f"{rep['max_epochs']} full-size epochs -> predicted speedup "
        f"{rep['predicted_speedup']:.2f}x")
    return '\n'.join(lines)


def plot(rep: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    epochs, sizes, mags = [], [], []
    for r in rep['stages']:
        size = r['size'] if isinstance(r['size'], int) else r['size'][0]
        for e in (r['start_epoch'], r['end_epoch']):
            epochs.append(e)
            sizes.append(size)
            mags.append(r['magnitude'])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.step(epochs, sizes, where='post', color='tab:blue')
    ax.set_xlabel('epoch')
    ax.set_ylabel('bandwidth B (px)', color='tab:blue')
    ax2 = ax.twinx()
    ax2.step(epochs, mags, where='post', color='tab:orange')
    ax2.set_ylabel('RandAugment m', color='tab:orange')
    ax2.set_ylim(-0.5, 10.5)
    ax.set_title(f"speedup {rep['predicted_speedup']:.2f}x (FLOPs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    args = parse_args()
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        apply_curriculum_args(cfg, args)
        plan = plan_from_config(cfg)
    except ValueError as e:
        raise SystemExit(f'analyze_curriculum: error: {e}') from None
    if plan.full_size is None:
        raise SystemExit(f'analyze_curriculum: error: {NO_FULL_SIZE}')
    rep = report(plan)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(format_table(rep))
    if args.plot:
        plot(rep, args.plot)
        if not args.json:
            print(f'saved {args.plot}')


if __name__ == '__main__':
    main()
