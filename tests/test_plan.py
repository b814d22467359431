"""One plan (issue 23): the loop, the hook, analyze_curriculum and
check_configs agree on the stages and iterations of every shipped config,
and a staged transform defined here is driven with no edit to mmet."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, build_runner, recorder, tiny_cfg
from mmcv.transforms import BaseTransform
from mmengine.config import Config
from mmpretrain.registry import TRANSFORMS

from mmet.config import curriculum_hook, curriculum_loop
from mmet.plan import LoaderFacts, plan_from_config
from mmet.sizes import at_bandwidth, hw

SHIPPED = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '*', '*.py'))
    if '_base_' not in p and '/det/' not in p)


def fake_images(root, num=8):
    rng = np.random.default_rng(0)
    for i in range(num):
        folder = osp.join(root, 'train', f'c{i % 2}')
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(osp.join(folder, f'{i}.jpg'),
                    rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))


def with_curriculum(path):
    cfg = Config.fromfile(path)
    return cfg if curriculum_loop(cfg) or curriculum_hook(cfg) else None


@pytest.mark.parametrize('path', [p for p in SHIPPED if with_curriculum(p)],
                         ids=lambda p: osp.relpath(p, ROOT))
def test_the_loop_the_hook_and_the_tools_agree(path, tmp_path):
    """The same stages, sizes, epochs and iterations, from a built Runner
    (the loop's plan, or the hook's) and from the config alone
    (plan_from_config: analyze_curriculum, check_configs, search)."""
    cfg = Config.fromfile(path)
    # a tiny train set of the config's own kind, so the loader is real
    loader = cfg.train_dataloader
    if loader.dataset.get('type') not in ('FashionMNIST', 'MNIST'):
        fake_images(str(tmp_path / 'data'))
        loader.dataset = dict(type='CustomDataset',
                              data_root=str(tmp_path / 'data'),
                              data_prefix='train',
                              pipeline=loader.dataset.pipeline)
    else:
        loader.dataset.update(data_root=osp.join(ROOT, 'data/fashion-mnist'),
                              indices=64)
    loader.update(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.log_level = 'ERROR'
    runner = build_runner(cfg.to_dict())
    loop = runner.train_loop
    if curriculum_loop(cfg) is not None:
        built = loop.plan
    else:  # the hook plans over mmengine's loop: its before_train
        hook = next(h for h in runner.hooks
                    if type(h).__name__ == 'EfficientTrainHook')
        runner.call_hook('before_run')
        hook.before_train(runner)
        built = hook.plan
    facts = LoaderFacts(4, lambda b: -(-len(loop.dataloader.dataset) // b),
                        cfg.optim_wrapper.get('accumulative_counts', 1))
    from_config = plan_from_config(
        Config.fromfile(path), loader=facts if built.loader else None)

    def rows(plan):
        return [(s.bandwidth, s.magnitude, s.size, round(s.epochs, 9),
                 s.iters, s.batch, s.replay) for s in plan.stages]
    assert rows(from_config) == rows(built)
    assert from_config.switch == built.switch
    assert from_config.max_epochs == built.max_epochs

    # analyze_curriculum prints that plan (by the config's epochs)
    out = subprocess.run(
        [sys.executable, 'tools/analyze_curriculum.py', path, '--json'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report['max_epochs'] == built.max_epochs
    assert [(r['stage'], r['magnitude'], r['size']
             if isinstance(r['size'], int) else tuple(r['size']))
            for r in report['stages']] == \
        [(s.index + 1, s.magnitude, s.size) for s in built.stages]
    assert [r['epochs'] for r in report['stages']] == pytest.approx(
        [s.epochs for s in built.stages], abs=0.5 if built.clock.by_iter
        else 0)


# a staged transform of one's own -------------------------------------------
@TRANSFORMS.register_module(force=True)
class PixelateTo(BaseTransform):
    """Nearest-neighbour down-sampling to the stage's B: defined in a test
    file, it follows the protocol of mmet.staged and nothing else."""

    full_magnitude = None

    def __init__(self, size):
        self.size = self.full_size = size

    def set_stage(self, stage):
        self.size = at_bandwidth(stage.bandwidth, self.full_size)

    def transform(self, results):
        h, w = hw(self.size)
        results['img'] = cv2.resize(results['img'], (w, h),
                                    interpolation=cv2.INTER_NEAREST)
        results['img_shape'] = (h, w)
        return results


def test_a_staged_transform_of_ones_own_is_driven(tmp_path):
    runner = build_runner(tiny_cfg(
        tmp_path, max_epochs=4, pipeline=[
            dict(type='PixelateTo', size=32),
            dict(type='StagedRandAug', magnitude_level=0,
                 hparams=dict(pad_val=128)),
            dict(type='RecordWorker'),
            dict(type='PackInputs', meta_keys=(
                'img_shape', 'worker_pid', 'randaug_magnitude'))],
        custom_hooks=[
            dict(type='EfficientTrainHook', curriculum=[
                dict(share=0.5, bandwidth=0.5, magnitude=0),
                dict(share=0.5, bandwidth=1.0, magnitude=0)]),
            dict(type='BatchRecorder')]))
    runner.train()
    seen = recorder(runner)
    assert [seen[e]['shapes'] for e in range(4)] == \
        [{(16, 16)}] * 2 + [{(32, 32)}] * 2
