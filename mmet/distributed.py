"""DDP on machines without CUDA, for mmet's entry points.

mmengine's ``--launcher pytorch`` calls ``torch.cuda.set_device`` and wraps
the model in DDP with ``device_ids=[LOCAL_RANK]``; without CUDA both fail,
so torchrun and Slurm DDP cannot run on CPUs. :func:`setup_cpu_ddp` (which
``tools/train.py`` calls where there is no CUDA device) avoids both
through mmengine's public doors:

- it starts the process group itself, on ``gloo`` (the Runner then finds it
  started and skips its own start); a group restarted by torchrun
  (``--max-restarts``) uses the store under a prefix of its own attempt,
  since torchrun's static rendezvous keeps one store across restarts and a
  restarted group could read a peer address of the failed attempt;
- it sets ``model_wrapper_cfg`` to :class:`CPUDistributedDataParallel`,
  which drops ``device_ids`` for a model on the CPU.

With CUDA present it changes nothing.
"""
import os

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that accepts a model on the CPU: the
    ``device_ids`` the Runner passes are dropped for it (DDP refuses them
    for CPU modules)."""

    def __init__(self, module, *args, **kwargs):
        if all(p.device.type == 'cpu' for p in module.parameters()):
            kwargs['device_ids'] = None
        super().__init__(module, *args, **kwargs)


def _restart_store(rank: int, world_size: int):
    """torchrun's store under a prefix of its restart attempt; None on a
    first start."""
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    if attempt == '0':
        return None
    store, _, _ = next(
        torch_dist.rendezvous('env://', rank=rank, world_size=world_size))
    return torch_dist.PrefixStore(f'mmet/restart_{attempt}/', store)


def setup_cpu_ddp(cfg, launcher: str) -> bool:
    """Prepare ``cfg`` and the process group for DDP without CUDA.

    Returns whether it did (``launcher='pytorch'`` on a machine without
    CUDA); elsewhere it changes nothing.
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg') or {})
    backend = dist_cfg.pop('backend', 'gloo')
    if backend == 'nccl':
        print_log('No CUDA device: using the gloo backend instead of nccl '
                  '(set env_cfg.dist_cfg.backend=gloo to silence).',
                  logger='current')
        backend = 'gloo'
    if not torch_dist.is_initialized():
        rank = int(os.environ['RANK'])
        world_size = int(os.environ['WORLD_SIZE'])
        store = _restart_store(rank, world_size)
        torch_dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size,
            **({} if store is None else dict(store=store)))
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    if wrapper.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', MMDistributedDataParallel):
        wrapper['type'] = 'CPUDistributedDataParallel'
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True
