"""The EfficientTrain loop: a plan of epochs or of a compute budget.

``train_cfg=dict(type='EfficientTrainLoop', curriculum='efficienttrain',
max_epochs=300)`` trains EfficientTrain's five stages over 300 epochs;
``train_cfg=dict(type='EfficientTrainLoop', budget=200)`` trains
EfficientTrain++'s ten equal-compute stages (the model's family) for a
budget of E = 200 full-size epochs.

The loop makes the run's plan (:mod:`mmet.plan`) before the Runner builds
its optimizer and param schedulers, so that ``max_epochs``, the schedulers
(on the compute clock for a budget, :mod:`mmet.schedulers`), checkpoints
and logs all follow it. Training is mmengine's ``EpochBasedTrainLoop``;
through its template the loop only

- sets each stage's loader batch and gradient accumulation (the per-stage
  micro-batch, or replay's smaller loaded batch);
- runs the device pipeline one batch ahead of the model
  (:mod:`mmet.prefetch`);
- mixes replayed samples into each batch (:mod:`mmet.replay`);
- resumed in the middle of an epoch, skips the batches already trained
  (they are loaded, not trained: the sampler's order is a function of the
  seed and the epoch).

The stages themselves are set by :class:`~mmet.hooks.EfficientTrainHook`,
which reads the same plan (the loop registers one if the config has none).
"""
from typing import List, Optional, Sequence, Tuple, Union

from mmengine.dist import get_rank
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop

from . import compat
from .curriculum import BASELINE_EPOCHS, Curriculum
from .driver import StageDriver
from .pipelines import unwrap_model
from .plan import LoaderFacts, plan_from_loop_args, resolve_curriculum
from .prefetch import DevicePrefetcher
from .replay import ReplayStateHook, StageReplay
from .schedulers import wrap_param_schedulers


@LOOPS.register_module()
class EfficientTrainLoop(EpochBasedTrainLoop):
    """Epoch-based training of a curriculum's plan.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The train loader.
        curriculum (str | list[dict] | Curriculum, optional): A preset or
            stages: shares of the epochs with ``max_epochs``, of the compute
            with a budget. Default: ``'efficienttrain'`` with
            ``max_epochs``, else ``'efficienttrain++'``.
        family (str, optional): The model family of an ET++ preset
            (``resnet``, ``swin``, ``cswin``, ``deit``, ``convnext``,
            ``mae``). Default: the backbone's.
        max_epochs (int, optional): The epochs of an EfficientTrain run.
        budget (float, optional): Instead: E, the compute in full-size
            epochs (EfficientTrain++), from which the loop derives its
            epochs (a stage at B runs (E/10)(224/B)^2 of them).
        speedup (float, optional): Instead of ``budget``: E =
            ``baseline_epochs / speedup``.
        baseline_epochs (float): The full-size run a budget is measured
            against. Defaults to 300.
        replay (str | dict, optional): EfficientTrain++'s replay buffer:
            ``'efficienttrain++'`` or ``dict(times=, buffer_size=, split=32,
            fp16=True, checkpoint_mb=1024)`` (see :mod:`mmet.replay`).
        micro_batch (str | int, optional): The per-stage micro-batch:
            ``'auto'`` runs each stage below full size at about the pixels
            per micro-batch of the full size, by dividing the gradient
            accumulation (the global batch, optimizer steps and LR and WD
            schedules stay as configured); see
            :class:`~mmet.plan.TrainPlan`. Defaults to None.
        max_micro_batch (int, optional): A cap on it, in images.
        prefetch (bool | str): Run the device pipeline one batch ahead on a
            side CUDA stream: ``'auto'`` (default) where the model is on
            CUDA and the data preprocessor is a
            ``DeviceAugmentPreprocessor``; True wherever it is.
        compute_clock (bool): Put ``param_scheduler`` on the plan's clock
            where it needs one. Defaults to True.
        low_pass (str): How a stock pipeline is adapted: ``'fourier'`` or
            ``'resize'`` (:mod:`mmet.adapt`).
        val_begin, val_interval, dynamic_intervals: As for
            ``EpochBasedTrainLoop``.
    """

    def __init__(self,
                 runner,
                 dataloader,
                 curriculum: Union[None, str, Sequence, Curriculum] = None,
                 family: Optional[str] = None,
                 max_epochs: Optional[int] = None,
                 budget: Optional[float] = None,
                 speedup: Optional[float] = None,
                 baseline_epochs: float = BASELINE_EPOCHS,
                 replay: Union[None, str, dict] = None,
                 micro_batch: Union[None, str, int] = None,
                 max_micro_batch: Optional[int] = None,
                 prefetch: Union[bool, str] = 'auto',
                 compute_clock: bool = True,
                 low_pass: str = 'fourier',
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 low_res_batch: Optional[int] = None) -> None:
        if low_res_batch is not None:
            raise ValueError(
                f'EfficientTrainLoop(low_res_batch={low_res_batch}) is now '
                f"micro_batch: give micro_batch={low_res_batch}, or 'auto'.")
        loader = compat.build_train_dataloader(runner, dataloader)
        model = unwrap_model(runner.model)
        backbone = type(getattr(model, 'backbone', None) or model).__name__
        default = 'efficienttrain' if max_epochs is not None else \
            'efficienttrain++'
        self.driver = StageDriver(
            resolve_curriculum(curriculum or default, family, backbone),
            low_pass).bind(loader.dataset, runner.model,
                           log=runner.logger.info, seed=runner.seed,
                           rank=get_rank())
        batch = getattr(loader.batch_sampler, 'batch_size', None)
        if batch is None and (replay or micro_batch):
            raise ValueError(
                'replay and micro_batch change the loader batch per stage, '
                'but the train loader has no batch_sampler.batch_size.')
        facts = LoaderFacts(
            batch or 1, lambda b: _epoch_length(loader, b),
            compat.accumulative_counts(runner.optim_wrapper))
        self.plan = plan_from_loop_args(
            self.driver.curriculum, self.driver, loader=facts,
            max_epochs=max_epochs, budget=budget, speedup=speedup,
            baseline_epochs=baseline_epochs, replay=replay,
            micro_batch=micro_batch, max_micro_batch=max_micro_batch,
            param_schedulers=runner.param_schedulers
            if compute_clock else None)
        super().__init__(runner, loader, max_epochs=self.plan.max_epochs,
                         val_begin=val_begin, val_interval=val_interval,
                         dynamic_intervals=dynamic_intervals)
        if compute_clock and self.plan.needs_clock:
            runner.param_schedulers = wrap_param_schedulers(
                runner.param_schedulers, stages=self.plan.clock_stages(),
                timeline_epochs=self.plan.budget or self.plan.max_epochs,
                iters_per_epoch=self.plan.epoch_length)
        self.replay = StageReplay(
            self.plan.replay, (runner.seed or 0) + 1000 * get_rank(),
            runner.logger) if self.plan.replay else None
        pre = self.driver.preprocessor
        self.prefetch = hasattr(pre, 'augment_batch') and not self.replay \
            and (prefetch is True or prefetch == 'auto' and
                 pre.device.type == 'cuda')
        self._skip = 0  # batches of this epoch trained before a resume
        self._register_hooks(runner)
        self._log_plan(runner)

    def _register_hooks(self, runner) -> None:
        names = {type(h).__name__ for h in runner.hooks}
        if 'EfficientTrainHook' not in names:
            runner.register_hook(dict(type='mmpretrain.EfficientTrainHook'))
        if self.replay and 'ReplayStateHook' not in names:
            runner.register_hook(ReplayStateHook())

    def _log_plan(self, runner) -> None:
        runner.logger.info(f'EfficientTrainLoop: {self.plan.summary()}')
        for text in self.plan.warnings():
            runner.logger.warning(f'EfficientTrainLoop: {text}')

    @property
    def max_iters(self) -> int:
        """Iterations of the whole plan (stages may load other batches)."""
        return self.plan.max_iters

    # training ----------------------------------------------------------------
    def run_epoch(self) -> None:
        index = self.plan.stage_at(self.epoch, self.iter)
        stage = self.plan.stages[index]
        if not self.plan.clock.by_iter and stage.batch is not None:
            self.dataloader.batch_sampler.batch_size = stage.batch
            compat.set_accumulative_counts(self.runner.optim_wrapper,
                                           stage.accumulation)
        if self.replay:
            self.replay.enter(index, self.iter)
        self._start = self.plan.iters_before(self.epoch)
        self._skip = self._batches_done()
        loader = self.dataloader
        if self.prefetch:
            self.dataloader = DevicePrefetcher(
                loader, self._prepare, self.driver.preprocessor.device)
        try:
            super().run_epoch()
        finally:
            self.dataloader, self._skip = loader, 0

    def _batches_done(self) -> int:
        """Batches of this epoch trained before the checkpoint this run
        resumed from: 0 unless it was saved in the middle of the epoch."""
        length = self.plan.epoch_batches(self.epoch)
        done = self.iter - self._start
        if not 0 <= done <= length:
            raise RuntimeError(
                f'Resumed at iteration {self.iter} in epoch {self.epoch + 1},'
                f' whose iterations are {self._start} to '
                f'{self._start + length} in this plan: the checkpoint was '
                'trained with another budget, curriculum, replay, batch size '
                'or dataset. Resume with the settings the run started with.')
        if done:
            how = 'they are loaded, not trained' if done < length else \
                'the epoch is trained; only its end is left'
            self.runner.logger.info(
                f'EfficientTrainLoop: resumed mid-epoch at iteration '
                f'{self.iter} (epoch {self.epoch + 1}, {done} of {length} '
                f'batches done): skipping the {done} batches already '
                f'trained ({how}).')
        return done

    def _prepare(self, data_batch, idx: int):
        """The device pipeline of batch ``idx``, at its own stage."""
        if idx < self._skip:
            return data_batch
        index = self.plan.stage_at(self.epoch, self._start + idx)
        pre = self.driver.preprocessor
        pre.set_stage(self.plan.curriculum.stages[index])
        return pre.augment_batch(data_batch)

    def run_iter(self, idx, data_batch) -> None:
        if idx < self._skip:
            return
        if self.replay:
            data_batch = self.replay.mix(data_batch)
        super().run_iter(idx, data_batch)

    def run(self):
        try:
            return super().run()
        finally:
            if self.plan.loader is not None and \
                    self.dataloader.batch_sampler is not None:
                self.dataloader.batch_sampler.batch_size = \
                    self.plan.loader.batch_size


def _epoch_length(loader, batch_size: int) -> int:
    """``len(loader)`` at another batch size."""
    sampler = loader.batch_sampler
    before = getattr(sampler, 'batch_size', None)
    if before is None or before == batch_size:
        return len(loader)
    sampler.batch_size = batch_size
    try:
        return len(loader)
    finally:
        sampler.batch_size = before
