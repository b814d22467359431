"""Reading mmengine configs: the entries mmet looks for, and their shapes.

Plain Python on dicts (an mmengine ``Config`` is one); only
:func:`load_config` imports mmengine.
"""
import os.path as osp
from typing import Any, List, Optional

HOOK = 'EfficientTrainHook'
LOOP = 'EfficientTrainLoop'


def type_name(entry: Any) -> str:
    """The registry name of a config entry (or of its ``type``), without a
    scope: ``dict(type='mmet.EfficientTrainHook')`` -> ``'EfficientTrainHook'``;
    a class as ``type`` gives its name."""
    kind = entry.get('type', '') if isinstance(entry, dict) else entry
    if isinstance(kind, type):
        return kind.__name__
    return str(kind).split('.')[-1]


def curriculum_hook(cfg) -> Optional[dict]:
    """The ``EfficientTrainHook`` entry of ``custom_hooks``, or None."""
    return next((h for h in cfg.get('custom_hooks') or []
                 if type_name(h) == HOOK), None)


def curriculum_loop(cfg) -> Optional[dict]:
    """``train_cfg`` if it is an ``EfficientTrainLoop``, else None."""
    train_cfg = cfg.get('train_cfg') or {}
    return train_cfg if type_name(train_cfg) == LOOP else None


def backbone_type(cfg) -> str:
    """The registry name of the model's backbone (or of the model)."""
    model = cfg.get('model') or {}
    return type_name(model.get('backbone') or model)


def dataset_pipelines(node) -> List[list]:
    """The pipeline lists of a dataset config, through dataset wrappers
    (``dataset``, ``datasets``)."""
    if not isinstance(node, dict):
        return []
    found = []
    if isinstance(node.get('pipeline'), (list, tuple)):
        found.append(list(node['pipeline']))
    found += dataset_pipelines(node.get('dataset'))
    for sub in node.get('datasets') or ():
        found += dataset_pipelines(sub)
    return found


def per_optimizer(schedulers) -> bool:
    """Whether a ``param_scheduler`` config is a dict of them per optimizer
    name (not one scheduler dict)."""
    return isinstance(schedulers, dict) and 'type' not in schedulers


def scheduler_configs(schedulers) -> List[dict]:
    """The scheduler dicts of a Runner's ``param_scheduler`` (a dict, a list,
    or a dict of those per optimizer); built schedulers are left out."""
    if schedulers is None:
        return []
    if per_optimizer(schedulers):
        return [c for v in schedulers.values()
                for c in scheduler_configs(v)]
    if isinstance(schedulers, dict):
        return [schedulers]
    return [c for c in schedulers if isinstance(c, dict)]


def load_config(path: str):
    """``Config.fromfile``, also for ``mmpretrain::``/``mmdet::`` names.

    ``Config.fromfile`` reads ``package::`` paths only as ``_base_``; here
    they resolve to the config the package installed
    (``<package>/.mim/configs/<path>``), as ``mmengine.hub.get_config`` does,
    without its attempt to install a missing package.
    """
    from mmengine.config import Config
    from mmengine.utils import get_installed_path
    if '::' not in path:
        return Config.fromfile(path)
    package, rel = path.split('::', 1)
    try:
        root = get_installed_path(package)
    except Exception:  # mmengine raises what importlib raises
        raise FileNotFoundError(
            f'{path}: the package {package!r} is not installed.') from None
    full = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(full):
        raise FileNotFoundError(
            f'{path}: {package} ships no config {rel!r} (looked for {full}).')
    return Config.fromfile(full)
