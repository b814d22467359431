"""The GPU rows: training-step rates, ceilings and end-to-end speedups.

    python tools/benchmark_gpu.py                 # on a GPU, about 8 minutes
    python tools/benchmark_gpu.py --tiny          # CPU smoke test, tiny scale

One command for whoever has a GPU; it writes a table and a JSON
(``work_dirs/benchmark_gpu.json``), the figures ``docs/evidence.md`` shows.

**Rates**: model-only training-step img/s at every B (96-224 px) of the four
shipped EfficientTrain configs (ResNet-50, ConvNeXt-T, DeiT-S, Swin-T),
bf16 on CUDA, in four variants, side by side in one process:

- ``stock``: the config's optimizer as mmengine builds it (one param group
  per parameter), ``AmpOptimWrapper`` with its GradScaler, NCHW;
- ``fast``: the fast step (:mod:`mmet.fast_step`: merged groups, bf16
  without a scaler, channels_last for ConvNets), same batch;
- ``fast+micro``: the fast step at the stage's micro-batch
  (:class:`~mmet.plan.TrainPlan`, ``micro_batch='auto'``) for a global
  batch of ``--batch`` x ``--accumulation`` (the 8xb256 recipes on one GPU);
- ``bare``: the same model trained by a bare PyTorch loop (one AdamW
  group, channels_last for ConvNets, bf16 autocast, cross-entropy on the
  logits): the physical anchor of what the GPU does with this model.

**Speedups**, from those rates: the ET and ET++ (E=200 and E=100 against
300 epochs) ceilings of every config, stock and fast; and, end to end with
``tools/benchmark_curriculum.py``'s measurement on random JPEGs, ResNet-50's
ET speedup on the device pipeline and on the CPU path.

``--tiny`` runs the same code at tiny scale (narrow, shallow models at the
real sizes, batch 2, one iteration) on the CPU: a smoke test, whose figures
mean nothing.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import mmet  # noqa: E402,F401
from benchmark_curriculum import benchmark  # noqa: E402
from mmet import compat  # noqa: E402
from mmet.config import load_config  # noqa: E402
from mmet.curriculum import Curriculum  # noqa: E402
from mmet.fast_step import enable_fast_step, is_convolutional  # noqa: E402
from mmet.plan import LoaderFacts, TrainPlan  # noqa: E402
from mmet.swin import SwinWindows  # noqa: E402

CONFIGS = {
    'resnet50': 'configs/efficienttrain/resnet50_et_8xb256_in1k.py',
    'convnext-t': 'configs/efficienttrain/convnext-tiny_et_32xb128_in1k.py',
    'deit-s': 'configs/efficienttrain/deit-small_et_4xb256_in1k.py',
    'swin-t': 'configs/efficienttrain/swin-tiny_et_16xb64_in1k.py',
}
END_TO_END = {
    'device pipeline': 'configs/device/resnet50_et-device_8xb256_in1k.py',
    'CPU path': 'configs/efficienttrain/resnet50_et_8xb256_in1k.py',
}
#: ``--tiny``: each model narrowed and made shallow, at its real sizes
#: (Swin's windows and ConvNeXt's downsampling need them)
TINY_MODELS = {
    'resnet50': dict(backbone=dict(depth=18, stem_channels=8,
                                   base_channels=8),
                     head=dict(in_channels=64)),
    'convnext-t': dict(backbone=dict(arch=dict(
        _delete_=True, depths=[1, 1, 1, 1], channels=[8, 16, 32, 64])),
        head=dict(in_channels=64)),
    'deit-s': dict(backbone=dict(arch=dict(
        _delete_=True, embed_dims=32, num_layers=1, num_heads=1,
        feedforward_channels=64)), head=dict(in_channels=32)),
    'swin-t': dict(backbone=dict(arch=dict(
        _delete_=True, embed_dims=8, depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1])), head=dict(in_channels=64)),
}
FAMILIES = {'resnet50': 'resnet', 'convnext-t': 'convnext',
            'deit-s': 'deit', 'swin-t': 'swin'}
VARIANTS = ('stock', 'fast', 'fast+micro', 'bare')
FULL = 224
# the targets (issue 21), checked where a GPU measured them
TARGETS = dict(step_ratio=0.9, et_ceiling=1.45, et_end_to_end=1.4,
               etpp_e200=1.4, etpp_e100=2.7, switch_share=0.01)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tiny', action='store_true',
                        help='CPU smoke test at tiny scale')
    parser.add_argument('--batch', type=int, help='per-GPU batch (256)')
    parser.add_argument('--accumulation', type=int, default=8,
                        help='gradient accumulation of the global batch')
    parser.add_argument('--iters', type=int, help='timed steps (10)')
    parser.add_argument('--e2e-images', type=int,
                        help='random JPEGs of the end-to-end runs (3072)')
    parser.add_argument('--skip-e2e', action='store_true')
    parser.add_argument('--out', default=osp.join(ROOT, 'work_dirs',
                                                  'benchmark_gpu.json'))
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.device = 'cpu' if tiny else 'cuda'
    args.batch = args.batch or (2 if tiny else 256)
    args.iters = args.iters or (1 if tiny else 10)
    args.warmup = 1 if tiny else 3
    args.e2e_images = args.e2e_images or (48 if tiny else 3072)
    args.full = FULL  # smaller would take ConvNeXt below its 2x2 kernels
    # every size a plan of plans() trains, and 128 px for the table
    args.sizes = sorted({s.size for name in CONFIGS
                         for plan in plans(args, name).values()
                         for s in plan.stages} | ({128} if not tiny else set()))
    if not tiny and not torch.cuda.is_available():
        raise SystemExit('benchmark_gpu: no CUDA device; run it on a GPU, '
                         'or --tiny for the CPU smoke test.')
    return args


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def model_config(cfg) -> dict:
    mcfg = copy.deepcopy(dict(cfg.model))
    if cfg.get('data_preprocessor'):  # as the Runner does
        mcfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return mcfg


def optim_config(cfg, variant: str, device) -> dict:
    optim = copy.deepcopy(dict(cfg.optim_wrapper))
    fast = optim.pop('fast_step', None) or {}
    optim['constructor'] = fast.get('inner',
                                    'DefaultOptimWrapperConstructor')
    if device.type == 'cuda':
        optim.update(type='AmpOptimWrapper', dtype='bfloat16')
    if variant != 'stock':
        holder = type('Cfg', (dict, ), {})(optim_wrapper=optim)
        enable_fast_step(holder)
        optim = holder['optim_wrapper']
    return optim


def micro_batches(args, curriculum: Curriculum) -> TrainPlan:
    """The plan of ``curriculum`` with the per-stage micro-batch."""
    return TrainPlan(curriculum, full_size=args.full, max_epochs=300,
                     loader=LoaderFacts(args.batch, lambda b: 1000,
                                        args.accumulation),
                     micro_batch='auto')


def batch_at(args, size: int) -> int:
    """The micro-batch of a stage at ``size`` px."""
    if size >= args.full:
        return args.batch
    # the factor depends on the stage's B alone; the shares are arbitrary
    plan = micro_batches(args, Curriculum(
        [dict(share=0.5, bandwidth=size / args.full, magnitude=9),
         dict(share=0.5, bandwidth=1.0, magnitude=9)]))
    return plan.stages[0].batch


def _batch(n, size, device, num_classes=1000):
    return dict(
        inputs=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                             device=device),
        data_samples=[DataSample().set_gt_label(i % num_classes)
                      for i in range(n)])


def mmet_rates(args, cfg, variant, device) -> dict:
    """img/s of the config's train step at each size."""
    init_default_scope('mmpretrain')
    model = MODELS.build(model_config(cfg)).to(device)
    wrapper = build_optim_wrapper(model, optim_config(cfg, variant, device))
    wrapper.initialize_count_status(model, 0, 10**9)
    windows = SwinWindows.find(model)
    rates = {}
    for size in args.sizes:
        n, acc = args.batch, 1
        if variant == 'fast+micro':
            n = batch_at(args, size)
            acc = args.accumulation * args.batch // n
        compat.set_accumulative_counts(wrapper, acc)
        if windows is not None:
            windows.set_size(size)
        batch = _batch(n, size, device)
        for _ in range(args.warmup):
            model.train_step(dict(batch), optim_wrapper=wrapper)
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            model.train_step(dict(batch), optim_wrapper=wrapper)
        _sync(device)
        rates[size] = args.iters * n / (time.perf_counter() - start)
    return rates


def bare_rates(args, cfg, device) -> dict:
    """img/s of a bare PyTorch step of the same model."""
    init_default_scope('mmpretrain')
    model = MODELS.build(model_config(cfg)).to(device)
    conv = is_convolutional(model)
    if conv:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3,
                                  weight_decay=0.05)
    windows = SwinWindows.find(model)
    rates = {}
    for size in args.sizes:
        if windows is not None:
            windows.set_size(size)
        x = torch.randn(args.batch, 3, size, size, device=device)
        if conv:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (args.batch, ), device=device)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x, mode='tensor'), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for _ in range(args.warmup):
            step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            step()
        _sync(device)
        rates[size] = args.iters * args.batch / (time.perf_counter() - start)
    return rates


def ceiling(args, plan: TrainPlan, rates: dict) -> float:
    """Speedup against ``plan.baseline_epochs`` at full size, from
    model-only rates at each stage's size."""
    full = rates[args.full]
    return (plan.baseline_epochs / full) / sum(
        s.epochs / rates[s.size] for s in plan.stages if s.epochs > 0)


def plans(args, name: str) -> dict:
    """The ET and ET++ plans of a model against 300 full-size epochs."""
    family = FAMILIES[name]
    etpp = Curriculum.build('efficienttrain++', family=family)
    return dict(
        et=TrainPlan(Curriculum.build('efficienttrain'),
                     full_size=args.full, max_epochs=300),
        etpp_e200=TrainPlan(etpp, full_size=args.full, budget=200),
        etpp_e100=TrainPlan(etpp, full_size=args.full, budget=100))


def end_to_end(args, path: str) -> dict:
    cfg = load_config(osp.join(ROOT, path))
    cfg.train_dataloader.batch_size = args.batch
    cfg.train_dataloader.num_workers = min(16, os.cpu_count() or 1)
    cfg.optim_wrapper.accumulative_counts = args.accumulation
    if args.tiny:
        cfg.merge_from_dict(dict(model=TINY_MODELS['resnet50']))
        cfg.train_dataloader.num_workers = 1
    else:
        cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype='bfloat16')
    cfg.train_dataloader.persistent_workers = \
        cfg.train_dataloader.num_workers > 0
    return benchmark(cfg, iters=args.iters * 2, warmup=args.warmup,
                     repeats=1, fake_data=args.e2e_images,
                     work_dir=osp.join(ROOT, 'work_dirs', 'benchmark_gpu'),
                     log=lambda text: print('  ' + text, flush=True))


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    report = dict(device=torch.cuda.get_device_name() if device.type ==
                  'cuda' else 'cpu', torch=torch.__version__, tiny=args.tiny,
                  batch=args.batch, accumulation=args.accumulation,
                  sizes=list(args.sizes), models={}, end_to_end={})
    for name, path in CONFIGS.items():
        cfg = load_config(osp.join(ROOT, path))
        if args.tiny:
            cfg.merge_from_dict(dict(model=TINY_MODELS[name]))
        row = dict(rates={})
        for variant in VARIANTS:
            row['rates'][variant] = bare_rates(args, cfg, device) \
                if variant == 'bare' else \
                mmet_rates(args, cfg, variant, device)
            print(f'{name} {variant}: ' + ', '.join(
                f'{s} px {r:.0f}' for s, r in row['rates'][variant].items()),
                flush=True)
        rates = row['rates']
        row['step_ratio'] = {s: rates['fast'][s] / rates['bare'][s]
                             for s in args.sizes}
        for key, plan in plans(args, name).items():
            row[key] = dict(stock=ceiling(args, plan, rates['stock']),
                            fast=ceiling(args, plan,
                                         rates['fast+micro']))
        report['models'][name] = row
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    if not args.skip_e2e:
        for kind, path in END_TO_END.items():
            print(f'end to end, {kind}: {path}', flush=True)
            report['end_to_end'][kind] = end_to_end(args, path)
    report['seconds'] = time.perf_counter() - started
    print(format_report(report))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=1, default=str)
    print(f'wrote {args.out} ({report["seconds"]:.0f} s)')


def format_report(report: dict) -> str:
    sizes = report['sizes']
    lines = [f"{report['device']}, torch {report['torch']}, batch "
             f"{report['batch']} x accumulation {report['accumulation']}",
             '', 'model-only img/s  ' + '  '.join(f'{s:>6}' for s in sizes)]
    for name, row in report['models'].items():
        for variant in VARIANTS:
            lines.append(f'{name:>10} {variant:>10}  ' + '  '.join(
                f"{row['rates'][variant][s]:6.0f}" for s in sizes))
        lines.append(f"{name:>10} {'fast/bare':>10}  " + '  '.join(
            f"{row['step_ratio'][s]:6.2f}" for s in sizes))
    lines += ['', 'ceilings (model only)      stock   fast']
    for name, row in report['models'].items():
        for key, label in (('et', 'ET'), ('etpp_e200', 'ET++ E=200'),
                           ('etpp_e100', 'ET++ E=100')):
            lines.append(f'{name:>10} {label:>12}  {row[key]["stock"]:6.2f}x '
                         f'{row[key]["fast"]:6.2f}x')
    for kind, rep in report['end_to_end'].items():
        measured = rep['measured_speedup']
        lines.append(
            f"ResNet-50 ET end to end, {kind}: "
            + (f'{measured:.2f}x' if measured is not None else 'INVALID')
            + f" (ceiling {rep['ceiling_speedup']:.2f}x, predicted "
            f"{rep['predicted_speedup']:.2f}x, stage switch at most "
            f"{100 * rep['max_switch_share']:.2f}% of a stage)")
    if report['tiny']:
        lines.append('(smoke test: tiny scale on the CPU; the figures mean '
                     'nothing and no target applies)')
        return '\n'.join(lines)
    lines += ['', 'targets (issue 21)' + ' ' * 38 + 'measured  met']
    for text, value, target, above in targets(report):
        lines.append(f'{text:<56}{value:>8.2f}  '
                     f"{'yes' if (value >= target) == above else 'NO'}")
    return '\n'.join(lines)


def targets(report: dict):
    """(what, measured, target, whether above is good) of each target."""
    rows = []
    models = report['models']
    resnet = models.get('resnet50')
    if resnet:
        rows.append(('ResNet-50 mmet step / bare step, worst B',
                     min(resnet['step_ratio'].values()),
                     TARGETS['step_ratio'], True))
    for name, row in models.items():
        rows.append((f'{name} ET model-only ceiling', row['et']['fast'],
                     TARGETS['et_ceiling'], True))
    for key in ('etpp_e200', 'etpp_e100'):
        if resnet:
            rows.append((f'ResNet-50 ET++ {key[-4:].upper()} ceiling',
                         resnet[key]['fast'], TARGETS[key], True))
    device = report['end_to_end'].get('device pipeline')
    if device and device['measured_speedup'] is not None:
        rows.append(('ResNet-50 ET end to end, device pipeline',
                     device['measured_speedup'], TARGETS['et_end_to_end'],
                     True))
    for kind, rep in report['end_to_end'].items():
        rows.append((f'stage switch, share of its stage ({kind})',
                     rep['max_switch_share'], TARGETS['switch_share'],
                     False))
    return rows


if __name__ == '__main__':
    main()
