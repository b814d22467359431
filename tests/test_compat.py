"""The stacks' fixes: ``import mmet`` applies none, and each named fix does
what it exists for, on the stack that needs it."""
import json
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, build_runner, tiny_cfg
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner import load_checkpoint
from mmengine.utils import digit_version

# what mmet's fixes used to replace on import, and what they must not
PROBE = '''
import json, sys, torch
import mmengine.dist.utils as dist_utils
import mmengine.hooks.checkpoint_hook as hook_module
import mmengine.runner.checkpoint as ckpt
import mmengine.runner.runner as runner_module
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.model import MMDistributedDataParallel
from mmengine.runner import Runner
names = {
    'torch.load': lambda: torch.load,
    'Runner': lambda: Runner, 'Runner.train': lambda: Runner.train,
    'CheckpointHook': lambda: CheckpointHook,
    'checkpoint hook methods': lambda: tuple(
        vars(CheckpointHook)[k] for k in sorted(vars(CheckpointHook))
        if callable(vars(CheckpointHook)[k])),
    'checkpoint_hook.open': lambda: vars(hook_module).get('open'),
    'LocalBackend.put': lambda: LocalBackend.put,
    'checkpoint module torch': lambda: ckpt.torch,
    'load_url': lambda: ckpt.load_url,
    'load_from_local': lambda: ckpt.load_from_local,
    'CheckpointLoader schemes': lambda: tuple(
        ckpt.CheckpointLoader._schemes.values()),
    'find_latest_checkpoint': lambda: runner_module.find_latest_checkpoint,
    'init_dist_pytorch': lambda: dist_utils._init_dist_pytorch,
    'DDP.__init__': lambda: MMDistributedDataParallel.__init__,
}
before = {k: f() for k, f in names.items()}
import mmet  # noqa: E402
after = {k: f() for k, f in names.items()}
changed = [k for k in names if after[k] is not before[k] and
           after[k] != before[k]]
print(json.dumps(changed))
'''


def test_import_mmet_changes_nothing_of_mmengine_or_torch():
    """``import mmet`` registers modules and nothing else: every mmengine
    and torch object its fixes used to replace is the very same after it."""
    out = subprocess.run([sys.executable, '-c', PROBE], cwd=ROOT,
                         check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp('compat')
    build_runner(tiny_cfg(work, max_epochs=1, num_workers=0)).train()
    return work, str(work / 'epoch_1.pth')


def test_plain_torch_load_still_refuses_runner_checkpoints(
        runner_checkpoint):
    """The fix is mmengine's checkpoint loading, with an allow-list:
    torch.load elsewhere keeps its own default."""
    _, ckpt = runner_checkpoint
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(ckpt)


def test_mmengine_loads_and_resumes_runner_checkpoints(runner_checkpoint):
    """With mmet's safe loading (conftest.build_runner installs it, as the
    tools do): weights-only, on either stack."""
    work, ckpt = runner_checkpoint
    model = build_runner(tiny_cfg(work / 'load', num_workers=0)).model
    meta = load_checkpoint(model, ckpt)['meta']
    assert meta['epoch'] == 1
    # a longer run than the checkpoint's, on its new plan: this test is
    # about loading, not the curriculum's resume check
    runner = build_runner(tiny_cfg(
        work, max_epochs=2, num_workers=0, resume=True, load_from=ckpt,
        custom_hooks=[dict(type='EfficientTrainHook',
                           allow_curriculum_change=True)]))
    runner.train()
    assert runner.epoch == 2 and runner.iter == 8


def test_without_the_fix_resume_fails_upstream(runner_checkpoint,
                                               monkeypatch):
    """Proves the fix is needed on the upstream stack (and that the test
    bites): mmengine 0.10.7 passes no weights_only, torch >= 2.6 refuses."""
    import mmengine
    if digit_version(mmengine.__version__) >= digit_version('0.10.8'):
        pytest.skip('onedl-mmengine >= 0.10.8 loads its checkpoints itself '
                    '(and falls back to full unpickling: mmet does not)')
    work, ckpt = runner_checkpoint
    monkeypatch.setattr(mm_checkpoint, 'torch', torch)
    with pytest.raises(pickle.UnpicklingError):
        mm_checkpoint.CheckpointLoader.load_checkpoint(ckpt)


def test_import_keeps_stdout_clean():
    """The tools write JSON on stdout: onedl-mmpretrain's note on importing
    its datasets ('Could not import OneDL') goes to stderr."""
    out = subprocess.run([sys.executable, '-c', 'import mmet'], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    assert out == ''
