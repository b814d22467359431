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
from mmet.curriculum import (BASELINE_EPOCHS, Curriculum,  # noqa: E402
                             budget_for_speedup)
from mmet.loops import EfficientTrainLoop, switches_by_iter  # noqa: E402
from mmet.stages import StageDriver  # noqa: E402


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


LOOP_TYPES = ('EfficientTrainLoop', 'mmet.EfficientTrainLoop')
NO_FULL_SIZE = ('The train pipeline has no FourierCrop or '
                'StagedRandomResizedCrop, and there is no '
                'DeviceAugmentPreprocessor; their size gives the full input '
                'size.')


def find_budget_plan(cfg):
    """The BudgetPlan, full size and baseline of an EfficientTrainLoop, and
    whether its stages switch by iteration (as the loop decides)."""
    loop = cfg.train_cfg
    driver = StageDriver.from_config(cfg)
    baseline = loop.get('baseline_epochs', BASELINE_EPOCHS)
    if loop.get('budget') is not None:
        budget = loop['budget']
    elif loop.get('speedup') is not None:
        budget = budget_for_speedup(loop['speedup'], baseline)
    else:
        raise SystemExit('EfficientTrainLoop needs budget=E or speedup=.')
    try:  # the loop's own validation: a bogus replay fails here too
        replay = EfficientTrainLoop.replay_settings(
            loop.get('replay'), len(driver.curriculum))
    except ValueError as e:
        raise SystemExit(f'train_cfg.replay: {e}') from None
    times = replay['times'] if replay else None
    by_iter = switches_by_iter(driver, replay, loop.get('low_res_batch', 1))
    plan = driver.curriculum.plan(budget, times, every_stage=not by_iter)
    if driver.full_size is None:
        raise SystemExit(NO_FULL_SIZE)
    return plan, driver.full_size, baseline, by_iter


def report_budget(plan, full, baseline, by_iter=False) -> dict:
    stages = plan.table(full)
    if by_iter:  # each stage its exact share, to within one iteration
        start = 0.0
        for row, s in zip(stages, plan.curriculum.stages):
            row['epochs'] = s.share * plan.max_epochs
            row['start_epoch'] = start
            row['end_epoch'] = start = start + row['epochs']
            row['compute'] = row['epochs'] * row['relative_cost'] / \
                plan.max_epochs
    compute = sum(r['compute'] for r in stages) * plan.max_epochs
    return dict(
        max_epochs=plan.max_epochs,
        full_size=full,
        budget=plan.budget,
        baseline_epochs=baseline,
        compute_epochs=compute,
        stages=stages,
        switch='iteration' if by_iter else 'epoch',
        replanned=plan.replanned,
        relative_compute=compute / plan.max_epochs,
        predicted_speedup=baseline / compute)


def find_curriculum(cfg):
    """The curriculum, max_epochs and full size a config trains with."""
    hooks = [h for h in cfg.get('custom_hooks', None) or []
             if h.get('type') in ('EfficientTrainHook',
                                  'mmet.EfficientTrainHook')]
    if not hooks:
        raise SystemExit(
            'The config has no EfficientTrainHook in custom_hooks; add '
            "dict(type='EfficientTrainHook', curriculum='efficienttrain').")
    curriculum = Curriculum.build(hooks[0].get('curriculum', 'efficienttrain'))
    max_epochs = cfg.train_cfg.get('max_epochs')
    if max_epochs is None:
        raise SystemExit('train_cfg has no max_epochs; the curriculum needs '
                         'an epoch-based loop.')
    full = StageDriver.from_config(cfg, curriculum).full_size
    if full is None:
        raise SystemExit(NO_FULL_SIZE)
    return curriculum, max_epochs, full


def report(curriculum: Curriculum, max_epochs: int, full) -> dict:
    return dict(
        max_epochs=max_epochs,
        full_size=full,
        stages=curriculum.table(max_epochs, full),
        relative_compute=curriculum.relative_compute(max_epochs, full),
        predicted_speedup=curriculum.speedup(max_epochs, full))


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
    apply_curriculum_args(cfg, args)
    if cfg.get('train_cfg', {}).get('type') in LOOP_TYPES:
        rep = report_budget(*find_budget_plan(cfg))
    else:
        rep = report(*find_curriculum(cfg))
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
