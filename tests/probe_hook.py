"""A probe for subprocess tests: every rank writes what it trained on.

Imported by the training processes through ``custom_imports``; each rank
appends one JSON line per batch to ``<work_dir>/probe_rank<R>.jsonl``.
"""
import json
import os
import os.path as osp

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class ShapeProbeHook(Hook):
    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        hub = runner.message_hub
        row = dict(
            epoch=runner.epoch,
            iter=batch_idx,
            stage=int(hub.get_scalar('train/et_stage').current()),
            B=int(hub.get_scalar('train/et_B').current()),
            m=float(hub.get_scalar('train/et_m').current()),
            lr=runner.optim_wrapper.get_lr()['lr'][0],
            pid=os.getpid(),
            shapes=sorted({list(x.shape[-2:]).__repr__()
                           for x in data_batch['inputs']}))
        path = osp.join(runner.work_dir, f'probe_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(row) + '\n')


@HOOKS.register_module()
class ModelInputProbeHook(Hook):
    """Per rank and epoch, the input sizes the model itself received.

    For the device pipeline, whose loader yields encoded bytes; writes
    ``<work_dir>/inputs_rank<R>.jsonl``, one line per epoch.
    """

    def before_train(self, runner):
        model = runner.model
        model = getattr(model, 'module', model)  # DDP
        self.model, self.seen = model, set()
        model.backbone.register_forward_pre_hook(
            lambda module, args: self.seen.add(tuple(args[0].shape[-2:])))

    def after_train_epoch(self, runner):
        pre = self.model.data_preprocessor
        row = dict(epoch=runner.epoch, shapes=sorted(self.seen),
                   m=pre.randaug.magnitude_level,
                   wrapped=type(runner.model).__name__)
        path = osp.join(runner.work_dir, f'inputs_rank{get_rank()}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(row) + '\n')
        self.seen = set()
