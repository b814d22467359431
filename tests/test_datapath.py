"""The cheap data path: StagedRandomResizedCrop and its benchmark."""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, recorder
from mmpretrain.datasets.transforms import RandomResizedCrop
from PIL import Image

from mmet.transforms import StagedRandomResizedCrop


def _image(h=120, w=160):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_same_crop_boxes_resized_straight_to_b():
    img = _image()
    stock = RandomResizedCrop(64, backend='pillow', interpolation='bicubic')
    staged = StagedRandomResizedCrop(64)
    staged.scale = (24, 24)  # what the hook sets at B = 24
    for seed in range(5):
        np.random.seed(seed)
        box = stock.rand_crop_params(img)
        np.random.seed(seed)
        out = staged.transform(dict(img=img.copy()))['img']
        assert out.shape == (24, 24, 3)
        # the crop box does not depend on the output size ...
        np.random.seed(seed)
        assert staged.rand_crop_params(img) == box
        # ... and the crop goes to B in one antialiased (PIL) resize
        y, x, h, w = box
        ref = np.asarray(Image.fromarray(img[y:y + h, x:x + w]).resize(
            (24, 24), Image.BICUBIC))
        np.testing.assert_array_equal(out, ref)


def test_aliasing_resizers_are_refused():
    with pytest.raises(ValueError, match="backend='pillow'"):
        StagedRandomResizedCrop(224, backend='cv2', interpolation='bilinear')
    StagedRandomResizedCrop(224, backend='cv2', interpolation='area')


def test_hook_drives_the_crop_in_persistent_workers(tiny_runner):
    pipeline = [
        dict(type='StagedRandomResizedCrop', scale=32),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='StagedRandAug', magnitude_level=9,
             hparams=dict(pad_val=128)),
        dict(type='RecordWorker'),
        dict(type='PackInputs',
             meta_keys=('randaug_magnitude', 'worker_pid', 'img_shape')),
    ]
    runner = tiny_runner(max_epochs=5, pipeline=pipeline)
    runner.train()
    seen = recorder(runner)
    for epoch, (size, m) in enumerate(zip([22, 22, 22, 28, 32],
                                          [1, 3, 5, 7, 9])):
        assert seen[epoch]['shapes'] == {(size, size)}, epoch
        assert seen[epoch]['magnitudes'] == {m}, epoch


def _run(*args):
    res = subprocess.run([sys.executable, *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_benchmark_datapath_reports_both_paths(tmp_path):
    out = tmp_path / 'dp.json'
    text = _run('tools/benchmark_datapath.py', '--sizes', '96', '224',
                '--images', '2', '--repeats', '1', '--out', str(out))
    assert 'exact/full' in text
    rows = json.load(open(out))['rows']
    assert [r['size'] for r in rows] == [96, 224]
    assert rows[1]['exact_vs_full'] == 1.0
    assert all(r['exact_ms'] > 0 and r['fast_ms'] > 0 for r in rows)


def test_benchmark_transforms_on_real_photos(tmp_path):
    out = tmp_path / 'bt.json'
    text = _run('tools/benchmark_transforms.py', '--sizes', '96',
                '--repeat', '1', '--out', str(out))
    assert 'FourierCrop / cv2 Lanczos' in text
    assert osp.getsize(out) > 0
