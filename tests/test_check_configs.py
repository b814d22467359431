"""tools/check_configs.py on its CI subset: one stock mmpretrain config per
family, the fastest, each trained at every B of the curriculum or refused
with the reason that names the fix."""
import json
import subprocess
import sys

from conftest import ROOT

# config -> 'trained', or a piece of the reason it is refused with
SUBSET = {
    'resnet/resnet18_8xb32_in1k.py': 'trained',
    'regnet/regnetx-400mf_8xb128_in1k.py': 'trained',
    'mobilenet_v2/mobilenet-v2_8xb32_in1k.py': 'trained',
    'poolformer/poolformer-s12_32xb128_in1k.py': 'trained',
    # RandAugment becomes StagedRandAug
    'deit/deit-tiny_4xb256_in1k.py': 'trained',
    # the window follows B
    'swin_transformer/swin-tiny_16xb64_in1k.py': 'trained',
    'mobilenet_v3/mobilenet-v3-small-050_8xb128_in1k.py':
    'AutoAugment which has no magnitude',
    'efficientformer/efficientformer-l1_8xb128_in1k.py':
    'does not train at B=160',
    'vision_transformer/vit-base-p16_64xb64_in1k-384px.py':
    'not a multiple of the patch',
}


def test_ci_subset_trains_at_every_b_or_is_refused(tmp_path):
    out = tmp_path / 'check.json'
    res = subprocess.run(
        [sys.executable, 'tools/check_configs.py', *SUBSET, '--out',
         str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.load(open(out))
    rows = {r['config']: r for r in report['configs']}
    assert set(rows) == set(SUBSET)
    for config, expected in SUBSET.items():
        row = rows[config]
        if expected == 'trained':
            assert row['result'] == 'trained', row
            # ET's bandwidths at 224 px: every distinct B trained once
            assert row['sizes'] == [160, 192, 224], row
        else:
            assert row['result'] == 'refused', row
            assert expected in row['reason'], row
    assert report['counts']['trained'] == 6
    assert report['counts']['refused'] == 3
    assert 'swin-tiny_16xb64_in1k.py' in res.stdout  # the table
