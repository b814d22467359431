"""The EfficientTrain++ train loop: a compute budget instead of max_epochs.

``train_cfg=dict(type='EfficientTrainLoop', curriculum='efficienttrain++',
family='resnet', budget=200)`` trains the ten equal-compute stages of
EfficientTrain++ for a budget of E = 200 full-size-equivalent epochs:

- the real epochs are derived (a stage at B runs (E/10)(224/B)^2 of them),
  before the Runner builds its param schedulers, so schedulers, checkpoints
  and logs all see the derived ``max_epochs``;
- the config's ``param_scheduler`` is put on the compute clock
  (:class:`~mmet.schedulers.ComputeClockScheduler`): it is written for a
  full-size run of E epochs, and after spending the compute of k full-size
  epochs the run has that run's values at epoch k;
- an :class:`~mmet.hooks.EfficientTrainHook` that follows the loop's stages
  is registered (or the configured one is checked and given the loop's
  epoch shares), so the loop and the hook cannot disagree;
- optionally, the replay buffer of :mod:`mmet.replay` per stage, kept in
  checkpoints by a :class:`ReplayStateHook`;
- optionally, the official EfficientTrain per-stage batch: stages below full
  size load ``low_res_batch`` times larger batches and accumulate gradients
  over that many times fewer iterations, so the global batch per optimizer
  step, the steps per epoch and the LR per step (on the compute clock) stay
  those of the config.

A resumed run continues the uninterrupted one: the stages and the compute
clock follow the saved epoch and iteration, the replay buffer comes back
from the checkpoint, and a resume from an iteration checkpoint in the middle
of an epoch skips the batches of that epoch already trained.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS

from . import compat
from .curriculum import (BACKBONE_FAMILIES, BASELINE_EPOCHS, ETPP_REPLAY,
                         BudgetPlan, Curriculum, _cost, budget_for_speedup,
                         infer_family)
from .hooks import EfficientTrainHook
from .replay import ReplayBuffer
from .stages import StageDriver, unwrap_model
from .schedulers import scheduler_configs, wrap_param_schedulers

REPLAY_PRESETS = {'efficienttrain++': ETPP_REPLAY}
# MiB of replay buffer contents a checkpoint holds by default; a larger
# buffer is saved without them (its random state only) and refills
REPLAY_CHECKPOINT_MB = 1024


def _fits_budget(cfg: dict, budget: float,
                 epoch_length: int) -> Tuple[float, bool]:
    """Where a scheduler without an ``end`` begins on the compute clock's
    full-size timeline (in iterations), and whether it fits in it.

    Its end defaults to the end of the budget, which must come after its
    begin once converted as :class:`~mmet.schedulers.ComputeClockScheduler`
    and mmengine convert them.
    """
    begin = cfg.get('begin', 0)
    if not cfg.get('by_epoch', True):
        return begin, max(1, round(budget * epoch_length)) > begin
    if cfg.get('convert_to_iter_based', False):
        start = int(begin * epoch_length)
        return start, int(budget * epoch_length) > start
    return begin * epoch_length, budget > begin


def _round_sig(x: float, up: bool, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits, rounded up or down, so that a
    budget (or speedup) in a message is on the side that works."""
    scale = 10.0**(math.floor(math.log10(x)) - digits + 1)
    q = round(x / scale, 9)
    return (math.ceil(q) if up else math.floor(q)) * scale


def switches_by_iter(driver: StageDriver, replay=None,
                     low_res_batch: int = 1) -> bool:
    """Whether ET++ stages switch at iterations rather than whole epochs:
    where every staged transform is in the data preprocessor (no worker
    restart) and no per-stage loader batch (replay, low_res_batch)."""
    return driver.preprocessor is not None and not driver.in_pipeline and \
        not replay and low_res_batch == 1


@LOOPS.register_module()
class EfficientTrainLoop(EpochBasedTrainLoop):
    """Epoch-based training for a compute budget (EfficientTrain++).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The train loader.
        curriculum (str | list[dict] | Curriculum): A preset such as
            ``'efficienttrain++'`` (with ``family``) or
            ``'efficienttrain++deit'``, or stages whose shares are the
            shares of the *compute* budget (e.g. from
            :meth:`Curriculum.equal_compute`). Defaults to
            ``'efficienttrain++'``.
        family (str, optional): Model family of the ET++ preset: ``resnet``,
            ``swin``, ``cswin``, ``deit``, ``convnext`` or ``mae``. Default:
            inferred from the backbone type
            (:func:`~mmet.curriculum.infer_family`).
        budget (float, optional): E, the compute in full-size epochs.
        speedup (float, optional): Instead of ``budget``: the target speedup
            against ``baseline_epochs`` full-size epochs, E = baseline /
            speedup (1.5x, 2x, 3x of 300 give E = 200, 150, 100).
        baseline_epochs (float): The full-size run that ``speedup`` and the
            logged speedup refer to. Defaults to 300.
        replay (str | dict, optional): ``'efficienttrain++'`` for the
            official per-stage setting, or ``dict(times=[R per stage],
            buffer_size=[loaded batches per stage], split=32, fp16=True,
            checkpoint_mb=1024)``. Stages with R > 1 load batches of
            ``batch_size / R`` and make R-fold fewer passes over the data;
            optimizer steps stay the same. Checkpoints keep the buffer's
            random state, its stage and its contents (as stored: float16 or
            uint8) up to ``checkpoint_mb`` MiB, so a resumed run draws what
            the uninterrupted one would; a larger buffer is saved without
            its contents (with a warning) and refills. mmengine saves on
            rank 0 only, so in DDP the other ranks refill theirs.
        low_res_batch (int): Per-GPU batch multiplier of the stages below
            full size (official EfficientTrain: 2). Their gradient
            accumulation (``optim_wrapper.accumulative_counts``, which must
            be divisible by it) is divided by the same factor, so each
            optimizer step sees the same global batch. Not combinable with
            ``replay``. Defaults to 1.
        compute_clock (bool): Put ``param_scheduler`` on the compute clock.
            Defaults to True.
        low_pass (str): How a stock pipeline is adapted: ``'fourier'`` or
            ``'resize'`` (see :class:`~mmet.hooks.EfficientTrainHook`).
        check_batches (bool): Passed to the hook the loop registers.
        val_begin, val_interval, dynamic_intervals: As for
            :class:`EpochBasedTrainLoop`.
        max_epochs: Not accepted: the loop derives it from the budget.

    Stage switches: where every staged transform lives in the data
    preprocessor (the batched path, where a switch costs nothing) and
    neither replay nor ``low_res_batch`` is used, stages switch at
    iterations, so each gets its compute share to within one iteration
    however few the epochs. Otherwise they switch at whole epochs, and a
    plan whose rounding leaves a stage without an epoch is re-planned so
    that every stage gets one (logged, with the compute it adds). A budget
    too small for every stage to get an iteration on the batched path, or
    for the ``param_scheduler`` (e.g. a warm-up longer than E), is refused
    with the smallest budget that works.

    Resume: a checkpoint saved in the middle of an epoch (``CheckpointHook``
    with ``by_epoch=False``) resumes at its iteration. The sampler's order is
    a function of seed and epoch, so the loop skips the epoch's batches
    already trained: it loads them without training them (logged), which
    keeps the run to its planned iterations and the compute clock on the
    iterations trained.
    """

    def __init__(self,
                 runner,
                 dataloader,
                 curriculum: Union[str, Sequence,
                                   Curriculum] = 'efficienttrain++',
                 family: Optional[str] = None,
                 budget: Optional[float] = None,
                 speedup: Optional[float] = None,
                 baseline_epochs: float = BASELINE_EPOCHS,
                 replay: Union[None, str, dict] = None,
                 low_res_batch: int = 1,
                 compute_clock: bool = True,
                 low_pass: str = 'fourier',
                 check_batches: bool = True,
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 max_epochs: Optional[int] = None) -> None:
        if max_epochs is not None:
            raise ValueError(
                f'EfficientTrainLoop derives max_epochs from the compute '
                f'budget; remove max_epochs={max_epochs} from train_cfg (use '
                "train_cfg=dict(_delete_=True, type='EfficientTrainLoop', "
                '...) when inheriting a config) and give budget=E or '
                'speedup=.')
        if (budget is None) == (speedup is None):
            raise ValueError(
                'Give EfficientTrainLoop exactly one of budget=E (full-size-'
                'equivalent epochs, e.g. 200) or speedup= (against '
                f'baseline_epochs={baseline_epochs}, e.g. 1.5, 2 or 3); got '
                f'budget={budget}, speedup={speedup}.')
        self.base_curriculum = Curriculum.build(
            curriculum, family=self._family(runner, curriculum, family))
        self.baseline_epochs = float(baseline_epochs)
        self.budget = float(budget) if budget is not None else \
            budget_for_speedup(speedup, baseline_epochs)
        if speedup is not None and speedup < 1:
            runner.logger.warning(
                f'EfficientTrainLoop: speedup={speedup:g} is below 1: the '
                f'budget E={self.budget:g} full-size epochs costs more than '
                f'the baseline_epochs={self.baseline_epochs:g} it is measured '
                f'against ({1 / speedup:.3g}x its compute).')
        self.replay_cfg = self.replay_settings(replay, len(self.base_curriculum))
        self.low_res_batch = self._check_low_res_batch(
            low_res_batch, runner.optim_wrapper)
        self._base_accumulation: Optional[int] = None
        times = self.replay_cfg['times'] if self.replay_cfg else None
        self.plan: BudgetPlan = self.base_curriculum.plan(self.budget, times)
        super().__init__(
            runner,
            dataloader,
            max_epochs=self.plan.max_epochs,
            val_begin=val_begin,
            val_interval=val_interval,
            dynamic_intervals=dynamic_intervals)
        # adapt and find the staged transforms now: the full size and where
        # they run decide the plan (the hook binds to the same ones)
        driver = StageDriver(self.base_curriculum, low_pass)
        driver.bind(self.dataloader.dataset, runner.model,
                    log=runner.logger.info)
        self.low_pass = low_pass
        self.full_size = driver.full_size
        self.switch_by_iter = switches_by_iter(driver, self.replay_cfg,
                                               self.low_res_batch)
        if not self.switch_by_iter:
            self._replan(self.base_curriculum.plan(self.budget, times,
                                                   every_stage=True))
        self.curriculum = self.plan.curriculum
        self.batch_size = self._loader_batch_size()
        self.epoch_length = len(self.dataloader)
        self.stage_iters = self._stage_iters()
        self._max_iters = sum(n for n, _ in self.stage_iters)
        self.buffer: Optional[ReplayBuffer] = None
        self._buffer_stage: Optional[int] = None
        # a checkpoint's replay state, until run_epoch makes the buffer
        self._saved_replay: Optional[Tuple[dict, Optional[int]]] = None
        self._warned_replay_size: set = set()  # stages saved without it
        self._check_budget(runner.param_schedulers if compute_clock else None)
        if compute_clock:
            runner.param_schedulers = wrap_param_schedulers(
                runner.param_schedulers,
                stages=self.stage_iters,
                timeline_epochs=self.budget,
                iters_per_epoch=self.epoch_length)
        self.hook = self._bind_hook(runner, check_batches)
        if self.replay_cfg and not any(
                isinstance(h, ReplayStateHook) for h in runner.hooks):
            runner.register_hook(ReplayStateHook())
        runner.logger.info(self.summary())

    # set-up ------------------------------------------------------------------
    @staticmethod
    def _family(runner, curriculum, family: Optional[str]) -> Optional[str]:
        """``family``, or the one of the model's backbone for a per-family
        preset."""
        if family is not None or not isinstance(curriculum, str) or \
                curriculum.lower() not in ('efficienttrain++', 'et++'):
            return family
        backbone = getattr(unwrap_model(runner.model), 'backbone', None)
        name = type(backbone).__name__ if backbone is not None else \
            type(unwrap_model(runner.model)).__name__
        inferred = infer_family(name)
        if inferred is None:
            raise ValueError(
                f'EfficientTrainLoop cannot infer the ET++ model family of '
                f'the backbone {name}; give train_cfg family= one of '
                f'{sorted(BACKBONE_FAMILIES)} (the bandwidths of the nearest '
                'kind of model: resnet for ConvNets, deit for ViTs), or '
                'stages of your own as curriculum=.')
        return inferred

    def _replan(self, plan: BudgetPlan) -> None:
        """Train ``plan`` if rounding re-planned it; log what it costs."""
        if not plan.replanned:
            return
        before = self.plan
        self.plan = plan
        self._max_epochs = plan.max_epochs
        self._max_iters = plan.max_epochs * len(self.dataloader)
        compute = plan.compute_epochs(self.full_size)
        self.runner.logger.warning(
            f'EfficientTrainLoop: whole epochs leave ET++ stages without '
            f'an epoch ({before.epochs()} epochs per stage over '
            f'{before.max_epochs}), so every stage gets one: '
            f'{plan.epochs()} over {plan.max_epochs}, '
            f'{compute / plan.budget - 1:+.1%} compute ({compute:.3g} '
            f'full-size epochs for a budget of {plan.budget:g}). The '
            'batched path (DeviceAugmentPreprocessor) switches stages by '
            'iteration and needs no re-plan.')

    @staticmethod
    def replay_settings(replay, num_stages: int) -> Optional[dict]:
        """The checked replay settings of ``replay`` (a preset name or a
        dict) for ``num_stages`` stages; None without replay. Also read by
        ``tools/analyze_curriculum.py``.

        Raises:
            ValueError: an unknown preset or settings that do not fit.
        """
        if replay is None or replay is False:
            return None
        if isinstance(replay, str):
            if replay.lower() not in REPLAY_PRESETS:
                raise ValueError(
                    f'Unknown replay preset {replay!r}; valid: '
                    f'{sorted(REPLAY_PRESETS)}, or dict(times=[...], '
                    'buffer_size=[...]).')
            replay = REPLAY_PRESETS[replay.lower()]
        cfg = dict(split=32, fp16=True, checkpoint_mb=REPLAY_CHECKPOINT_MB)
        cfg.update(replay)
        unknown = set(cfg) - {'times', 'buffer_size', 'split', 'fp16',
                              'checkpoint_mb'}
        if unknown or 'times' not in cfg or 'buffer_size' not in cfg:
            raise ValueError(
                f'replay takes times, buffer_size, split, fp16 and '
                f'checkpoint_mb; got {sorted(replay)}.')
        times = [int(r) for r in cfg['times']]
        sizes = [int(s) for s in cfg['buffer_size']]
        if len(times) != num_stages or len(sizes) != num_stages:
            raise ValueError(
                f'replay needs one R and one buffer size per stage '
                f'({num_stages} stages); got times={times}, '
                f'buffer_size={sizes}.')
        for i, (r, s) in enumerate(zip(times, sizes)):
            if r < 1 or s < 0 or (r > 1 and s < 1):
                raise ValueError(
                    f'Stage {i + 1}: replay times={r}, buffer_size={s}; R '
                    'must be >= 1 and a stage with R > 1 needs a buffer of '
                    'at least 1 loaded batch.')
        cfg['times'], cfg['buffer_size'] = tuple(times), tuple(sizes)
        return cfg

    def _check_low_res_batch(self, factor, optim_wrapper) -> int:
        if isinstance(factor, bool) or not isinstance(factor, int) or \
                factor < 1:
            raise ValueError(
                f'low_res_batch must be an integer >= 1, got {factor!r}.')
        if factor == 1:
            return 1
        if self.replay_cfg:
            raise ValueError(
                'low_res_batch and replay both change the loader batch of '
                'the low-resolution stages; use one of them.')
        counts = compat.accumulative_counts(optim_wrapper)
        if counts % factor:
            raise ValueError(
                f'low_res_batch={factor} multiplies the batch of the stages '
                f'below full size and divides their gradient accumulation '
                f'by {factor}, but optim_wrapper.accumulative_counts='
                f'{counts} is not divisible by it. Set accumulative_counts='
                f'{factor * counts} and divide train_dataloader.batch_size by '
                f'{factor} to keep the global batch.')
        return factor

    def _stage_batch(self, index: int) -> Optional[int]:
        """The loader batch of stage ``index``."""
        if self.batch_size is None:
            return None
        times = self.plan.replay_times[index]
        if times > 1:
            return self.batch_size // times
        if self.curriculum.stages[index].bandwidth < 1:
            return self.batch_size * self.low_res_batch
        return self.batch_size

    def _set_accumulation(self, index: int) -> None:
        """Divide the gradient accumulation by ``low_res_batch`` below full
        size."""
        wrapper = self.runner.optim_wrapper
        if self._base_accumulation is None:
            self._base_accumulation = compat.accumulative_counts(wrapper)
        counts = self._base_accumulation
        if self.curriculum.stages[index].bandwidth < 1:
            counts //= self.low_res_batch
        compat.set_accumulative_counts(wrapper, counts)

    def _loader_batch_size(self) -> Optional[int]:
        bs = getattr(getattr(self.dataloader, 'batch_sampler', None),
                     'batch_size', None)
        if bs is None and (self.replay_cfg or self.low_res_batch > 1):
            raise ValueError(
                'Replay and low_res_batch change the loader batch size per '
                'stage, but the train loader has no batch_sampler.batch_size.')
        if self.replay_cfg:
            for i, r in enumerate(self.replay_cfg['times']):
                if bs % r:
                    raise ValueError(
                        f'Stage {i + 1} replays R={r} times, so it loads '
                        f'batches of batch_size / R; batch_size={bs} is not '
                        'divisible by it.')
        return bs

    def _set_loader_batch(self, batch_size: int) -> None:
        sampler = getattr(self.dataloader, 'batch_sampler', None)
        if sampler is not None and batch_size is not None:
            sampler.batch_size = batch_size

    def _stage_iters(self) -> List[Tuple[int, float]]:
        """(iterations, cost per iteration) of each stage: the counts the
        hook switches at, so the compute clock and the stages agree."""
        if self.switch_by_iter:
            edges = self.curriculum.boundaries(self.max_epochs *
                                               self.epoch_length)
            return [(b - a, _cost(s.bandwidth, self.full_size))
                    for s, a, b in zip(self.curriculum.stages, edges,
                                       edges[1:])]
        out = []
        times = self.plan.replay_times
        for i, (s, n, r) in enumerate(
                zip(self.curriculum.stages, self.plan.epochs(), times)):
            batch = self._stage_batch(i)
            if batch == self.batch_size:
                per_epoch, samples = self.epoch_length, 1
            else:
                self._set_loader_batch(batch)
                per_epoch = len(self.dataloader)
                self._set_loader_batch(self.batch_size)
                # an iteration trains R loaded batches (replay) or a
                # low_res_batch times larger one
                samples = batch * r / self.batch_size
            out.append((n * per_epoch,
                        samples * _cost(s.bandwidth, self.full_size)))
        return out

    def _check_budget(self, param_schedulers) -> None:
        """Refuse a budget too small for the plan, with the smallest that
        works: one that leaves stages of the batched path without an
        iteration (they would be skipped silently), or in which a
        ``param_scheduler`` has no iteration, e.g. the cosine after a
        warm-up longer than E (mmengine would only say that its end is not
        larger than its begin)."""
        problems, floors = [], []
        empty = [i + 1 for i, (n, _) in enumerate(self.stage_iters) if not n]
        if self.switch_by_iter and empty:
            problems.append(
                f'its {self.max_iters} iterations cannot give every stage '
                f'one (stages {empty} of {len(self.stage_iters)} get none)')
            floors.append(self._budget_for_every_stage())
        L, late = self.epoch_length, []
        for cfg in scheduler_configs(param_schedulers):
            if 'end' in cfg:
                continue
            start, fits = _fits_budget(cfg, self.budget, L)
            if not fits:
                unit = 'epoch' if cfg.get('by_epoch', True) else 'iteration'
                late.append(f"{cfg.get('type')} (from {unit} "
                            f"{cfg.get('begin', 0)})")
                floors.append((math.floor(start) + 1) / L)
        if late:
            problems.append(
                'param_scheduler runs on the compute clock as a full-size run '
                f'of E epochs ({self.budget * L:g} iterations of {L}), in '
                f'which {" and ".join(late)} '
                f'{"gets" if len(late) == 1 else "get"} no iteration (a '
                'warm-up longer than E leaves none to what follows it)')
        if not problems:
            return
        smallest = _round_sig(max(floors), up=True)
        raise ValueError(
            f'EfficientTrainLoop: the budget E={self.budget:g} full-size '
            f'epochs (speedup {self.baseline_epochs / self.budget:.4g} '
            f'against baseline_epochs={self.baseline_epochs:g}) is too '
            f'small: {"; ".join(problems)}. The smallest workable budget is '
            f'budget={smallest:g} (speedup='
            f'{_round_sig(self.baseline_epochs / smallest, up=False):g}).')

    def _budget_for_every_stage(self) -> float:
        """The smallest budget whose iterations give every stage one, on the
        batched path (no replay: E / relative compute real epochs)."""
        epochs = self.max_epochs
        while min(self.curriculum.epochs(epochs * self.epoch_length)) < 1:
            epochs += 1
        # Curriculum.plan rounds from half an epoch below
        return (epochs - 0.5) * self.base_curriculum.relative_compute()

    def _bind_hook(self, runner, check_batches: bool) -> EfficientTrainHook:
        """The hook that applies this loop's stages, registered once."""
        hooks = [h for h in runner.hooks if isinstance(h, EfficientTrainHook)]
        mine = [(s.bandwidth, s.magnitude) for s in self.curriculum.stages]
        for hook in hooks:
            theirs = [(s.bandwidth, s.magnitude)
                      for s in hook.curriculum.stages]
            if theirs != mine:
                raise ValueError(
                    'EfficientTrainHook in custom_hooks has another '
                    f'curriculum ({hook.curriculum!r}) than EfficientTrainLoop'
                    f' ({self.base_curriculum!r}). Give the curriculum to the '
                    'loop only and drop the hook from custom_hooks: the loop '
                    'registers it.')
            # same (B, m) stages: the hook follows the loop's epoch shares
            hook.curriculum = self.curriculum
        if not hooks:
            hooks = [EfficientTrainHook(
                curriculum=self.curriculum, low_pass=self.low_pass,
                check_batches=check_batches)]
            runner.register_hook(hooks[0])
        hooks[0].switch_by_iter = self.switch_by_iter
        return hooks[0]

    # reporting ---------------------------------------------------------------
    def compute_epochs(self) -> float:
        """Compute of the whole run in full-size epochs (whole epochs)."""
        return sum(n * c for n, c in self.stage_iters) / self.epoch_length

    def predicted_speedup(self) -> float:
        """FLOPs speedup against ``baseline_epochs`` full-size epochs."""
        return self.baseline_epochs / self.compute_epochs()

    def summary(self) -> str:
        sizes = []
        for row in self.plan.table(self.full_size or 1):
            size = row['size'] if self.full_size else \
                f"{row['bandwidth']:.3g}"
            rep = f" R={row['replay']}" if row['replay'] > 1 else ''
            sizes.append(f"B={size} m={row['magnitude']:g} x{row['epochs']}"
                         f'{rep}')
        return (f'EfficientTrainLoop: budget E={self.budget:g} full-size '
                f'epochs -> {self.max_epochs} real epochs, '
                f'{self.max_iters} iterations; '
                f'{self.compute_epochs():.4g} full-size epochs of compute, '
                f'{self.predicted_speedup():.2f}x vs '
                f'{self.baseline_epochs:g} epochs. Stages: '
                + ', '.join(sizes))

    # training ----------------------------------------------------------------
    def stage(self, epoch: Optional[int] = None) -> int:
        """Stage index of ``epoch`` (default: the current epoch)."""
        epoch = self._epoch if epoch is None else epoch
        return self.curriculum.stage_index(epoch, self.max_epochs)

    def _epoch_start(self, epoch: int) -> int:
        """Iterations before ``epoch``: stages whose loader batch differs
        (replay, low_res_batch) have epochs of other lengths."""
        if self.switch_by_iter:
            return epoch * self.epoch_length
        start, left = 0, epoch
        for (iters, _), epochs in zip(self.stage_iters, self.plan.epochs()):
            n = min(left, epochs)
            if n:
                start += iters // epochs * n
            left -= n
        return start

    def _batches_done(self) -> int:
        """Batches of the current epoch trained before the checkpoint this
        run resumed from: 0 unless it was saved in the middle of the epoch
        (``CheckpointHook(by_epoch=False)``)."""
        start = self._epoch_start(self._epoch)
        length = len(self.dataloader)
        done = self._iter - start
        if not 0 <= done <= length:
            raise RuntimeError(
                f'Resumed at iteration {self._iter} in epoch '
                f'{self._epoch + 1}, whose iterations are {start} to '
                f'{start + length} in this plan: the checkpoint was trained '
                'with another budget, curriculum, replay, batch size or '
                'dataset. Resume with the settings the run started with.')
        return done

    def run_epoch(self) -> None:
        k = self.stage()
        # the configured batch unless replay or low_res_batch change it
        self._set_loader_batch(self._stage_batch(k))
        if self.low_res_batch > 1:
            self._set_accumulation(k)
        if self.replay_cfg and k != self._buffer_stage:
            times = self.replay_cfg['times'][k]
            size = self.replay_cfg['buffer_size'][k]
            if self.buffer is None:
                self.buffer = ReplayBuffer(
                    times, size, split=self.replay_cfg['split'],
                    fp16=self.replay_cfg['fp16'],
                    seed=(self.runner.seed or 0) + 1000 * get_rank())
            else:
                self.buffer.configure(times, size)
            self._buffer_stage = k
            self._restore_replay()
        done = self._batches_done()
        if not done:
            super().run_epoch()
            return
        # EpochBasedTrainLoop would train the whole epoch again
        length = len(self.dataloader)
        how = 'they are loaded, not trained' if done < length else \
            'the epoch is trained; only its end is left'
        self.runner.logger.info(
            f'EfficientTrainLoop: resumed mid-epoch at iteration {self._iter}'
            f' (epoch {self._epoch + 1}, {done} of {length} batches done): '
            f'skipping the {done} batches already trained ({how}).')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        if done < length:
            for idx, data_batch in enumerate(self.dataloader):
                if idx >= done:
                    self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    # replay in checkpoints ---------------------------------------------------
    def replay_state_dict(self) -> Optional[dict]:
        """What a checkpoint keeps of the replay buffer (None without one):
        ``dict(stage=, rank=, buffer=ReplayBuffer.state_dict())``, the
        contents only up to ``replay.checkpoint_mb`` MiB."""
        if self.buffer is None:
            return None
        limit_mb = self.replay_cfg['checkpoint_mb']
        contents = self.buffer.nbytes <= limit_mb * 2**20
        if not contents and self._buffer_stage not in \
                self._warned_replay_size:
            self._warned_replay_size.add(self._buffer_stage)
            self.runner.logger.warning(
                f'EfficientTrainLoop: the replay buffer holds '
                f'{self.buffer.nbytes / 2**20:.0f} MiB, more than '
                f'replay.checkpoint_mb={limit_mb:g}: the checkpoint keeps '
                'its random state but not its contents, so a run resumed '
                'from it refills the buffer. Raise checkpoint_mb to keep '
                'them.')
        return dict(stage=self._buffer_stage, rank=get_rank(),
                    buffer=self.buffer.state_dict(contents=contents))

    def load_replay_state_dict(self, state: dict,
                               iteration: Optional[int]) -> None:
        """Keep a checkpoint's replay state (saved at ``iteration``) until
        :meth:`run_epoch` makes the buffer: after ``after_load_checkpoint``,
        before the loop runs."""
        self._saved_replay = (state, iteration)

    def _restore_replay(self) -> None:
        """Give the buffer just made the state of the checkpoint resumed
        from: its random state always, its contents in the stage they were
        saved in (a new stage starts empty, as in the uninterrupted run)."""
        if self._saved_replay is None:
            return
        state, iteration = self._saved_replay
        self._saved_replay = None
        # weights loaded with load_from start afresh; a resume is at the
        # checkpoint's iteration
        if iteration != self._iter or state['rank'] != get_rank():
            return
        same_stage = state['stage'] == self._buffer_stage
        self.buffer.load_state_dict(state['buffer'], contents=same_stage)
        if same_stage and state['buffer']['chunks'] is None:
            self.runner.logger.warning(
                'EfficientTrainLoop: the checkpoint kept the replay buffer '
                'without its contents (over replay.checkpoint_mb): it '
                'refills, so the next batches replay fewer samples than the '
                'uninterrupted run.')
        if get_world_size() > 1:
            self.runner.logger.warning(
                "EfficientTrainLoop: the checkpoint holds rank 0's replay "
                'buffer only (mmengine saves on rank 0): the other ranks '
                'refill theirs.')

    def run_iter(self, idx, data_batch) -> None:
        if self.buffer is not None and self.buffer.times > 1:
            data_batch = self.buffer.mix(data_batch)
        super().run_iter(idx, data_batch)

    def run(self):
        try:
            return super().run()
        finally:
            self._set_loader_batch(self.batch_size)


@HOOKS.register_module()
class ReplayStateHook(Hook):
    """Keep :class:`EfficientTrainLoop`'s replay buffer in checkpoints.

    The loop registers it when it replays. A checkpoint then holds
    ``replay_buffer``: ``dict(stage=, rank=, buffer=dict(generator=,
    chunks=))`` (see :meth:`EfficientTrainLoop.replay_state_dict`); a resume
    hands it back to the loop, which restores it when it makes the buffer.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = runner.train_loop.replay_state_dict()
        if state is not None:
            checkpoint['replay_buffer'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('replay_buffer')
        if state is not None:
            runner.train_loop.load_replay_state_dict(
                state, checkpoint.get('meta', {}).get('iter'))
