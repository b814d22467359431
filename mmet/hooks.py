"""The hook that applies the curriculum's stage to a Runner.

One job: at each epoch (or, where the plan switches by iteration, each
iteration) it reads the stage from the plan's clock
(:meth:`~mmet.plan.TrainPlan.stage_at`) and sets it through the driver
(:class:`~mmet.driver.StageDriver`), restarting persistent data workers at
a switch; it logs the stage and keeps the plan in checkpoints. The rest it
calls: :mod:`mmet.checks` at start, :mod:`mmet.resume` on a resume.
"""
from typing import Optional, Sequence, Union

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from . import checks, compat, resume
from .driver import StageDriver
from .loops import EfficientTrainLoop
from .curriculum import StageState
from .plan import TrainPlan, resolve_curriculum
from .sizes import hw


@HOOKS.register_module()
class EfficientTrainHook(Hook):
    """Drive the EfficientTrain curriculum: bandwidth B and RandAugment m.

    With mmengine's ``EpochBasedTrainLoop`` it plans the run itself (the
    stages over ``max_epochs``, switching at whole epochs); with
    :class:`~mmet.loops.EfficientTrainLoop` it follows the loop's plan and
    driver (the loop registers it). A stock pipeline is adapted first
    (:mod:`mmet.adapt`); the checks of :mod:`mmet.checks` run at start and
    on the first batch of each stage, so that a curriculum that would not
    take effect fails loudly. Checkpoints record the plan and the trainer's
    random state; a resume that would move the plan is refused unless
    ``allow_curriculum_change`` says otherwise (:mod:`mmet.resume`).

    Args:
        curriculum (str | list[dict], optional): A preset name or stages
            (see :mod:`mmet.curriculum`). Defaults to ``'efficienttrain'``;
            under ``EfficientTrainLoop``, the loop's (give it there).
        low_pass (str): How a stock pipeline gets its low-pass to B:
            ``'fourier'`` or ``'resize'`` (:mod:`mmet.adapt`); under the
            loop, the loop's.
        check_batches (bool): Check the size of the first batch of each
            stage. Defaults to True.
        allow_curriculum_change (bool | str): What a resume that moves the
            plan does: ``False`` refuses it, ``True`` continues on the new
            plan (warned), ``'extend'`` re-plans without going back.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 curriculum: Union[None, str, Sequence[dict]] = None,
                 low_pass: Optional[str] = None,
                 check_batches: bool = True,
                 allow_curriculum_change: Union[bool, str] = False):
        if not (isinstance(allow_curriculum_change, bool)
                or allow_curriculum_change == 'extend'):
            raise ValueError(
                "allow_curriculum_change must be False, True or 'extend', "
                f'got {allow_curriculum_change!r}.')
        self.curriculum, self.low_pass = curriculum, low_pass
        self.check_batches = check_batches
        self.allow_curriculum_change = allow_curriculum_change
        self.driver: Optional[StageDriver] = None
        self.plan: Optional[TrainPlan] = None
        self.applied: Optional[StageState] = None
        self._expected = {}  # stage index -> (h, w) the workers deliver
        self._pending: Optional[StageState] = None  # first batch to check
        self._loaded: Optional[dict] = None  # checkpoint meta, if loaded
        self._epoch = None

    # set-up -----------------------------------------------------------------
    def before_train(self, runner) -> None:
        checks.check_train_loop(runner, EfficientTrainHook)
        loop = runner.train_loop
        if isinstance(loop, EfficientTrainLoop):  # the loop plans the run
            checks.check_hook_follows(self.curriculum, self.low_pass, loop)
            self.driver, self.plan = loop.driver, loop.plan
        else:
            self.driver = StageDriver(
                resolve_curriculum(self.curriculum or 'efficienttrain'),
                self.low_pass or 'fourier').bind(
                    runner.train_dataloader.dataset, runner.model,
                    log=runner.logger.info, seed=runner.seed, rank=get_rank())
            self.plan = TrainPlan(self.driver.curriculum,
                                  full_size=self.driver.full_size,
                                  max_epochs=runner.max_epochs)
        checks.check_drivable(self.driver, warn=runner.logger.warning)
        # a resume (weights alone are never checked) holds to its plan
        record = (self._loaded or {}).get('efficienttrain')
        resumed = self._loaded is not None and bool(runner.epoch or
                                                    runner.iter)
        if resumed:
            resume.check_resume(
                self.plan.clock, record,
                runner.iter if self.plan.clock.by_iter else runner.epoch,
                self.allow_curriculum_change, info=runner.logger.info,
                warn=runner.logger.warning)
        checks.check_model(runner.model, self.driver, self.plan)
        checks.warn_eval_pipelines(runner, 'val')
        self._expected = checks.preflight_pipeline(
            runner.train_dataloader.dataset, self.driver, self.plan)
        self.applied, self._loaded = None, None
        if resumed:  # after the preflight, which draws
            resume.restore_random_state((record or {}).get('random_state'))

    # the clock ---------------------------------------------------------------
    def _enter(self, runner) -> bool:
        """Apply the stage of the current (epoch, iteration); True if it
        changed."""
        state = self.plan.state(self.plan.stage_at(runner.epoch, runner.iter))
        if state == self.applied:
            return False
        self.driver.apply(state)
        if not self.plan.clock.by_iter:  # workers re-fork with the stage
            self._restart_workers(runner.train_dataloader)
        self.applied, self._pending = state, state
        return True

    @staticmethod
    def _restart_workers(loader) -> None:
        compat.restart_workers(loader)

    def before_train_epoch(self, runner) -> None:
        self._epoch = runner.epoch
        self.driver.set_epoch(runner.epoch)
        if not self._enter(runner):
            self.driver.apply(self.applied)  # after_train_epoch reset it
        if not self.plan.clock.by_iter:  # every epoch's first batch
            self._pending = self.applied
        runner.logger.info(
            f'EfficientTrain epoch {runner.epoch + 1}/{runner.max_epochs}: '
            f'{self.applied.describe(span=False)}')
        self._log(runner)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self.plan.clock.by_iter:
            if self._enter(runner):
                runner.logger.info(
                    f'EfficientTrain iteration {runner.iter + 1}/'
                    f'{runner.max_iters}: {self.applied.describe()}')
            self._log(runner)
        state, self._pending = self._pending, None
        if state is not None and self.check_batches:
            prepared = isinstance(data_batch, dict) and \
                data_batch.get('augmented')
            checks.check_first_batch(
                state, data_batch, self._expected.get(state.index),
                None if prepared else self.driver.preprocessor)

    def _log(self, runner) -> None:
        hub, state = runner.message_hub, self.applied
        hub.update_scalar('train/et_stage', state.number)
        hub.update_scalar('train/et_B', hw(state.size)[0]
                          if state.size is not None else state.bandwidth)
        hub.update_scalar('train/et_m', state.magnitude)

    @property
    def current_stage(self) -> Optional[str]:
        """Where training is, ``'stage 4/5 (B=24, m=7), epoch 7/10'``; None
        before the first epoch (``tools/train.py`` logs it on a failure)."""
        if self.applied is None or self._epoch is None:
            return None
        return (f'{self.applied.describe(span=False)}, epoch '
                f'{self._epoch + 1}/{self.plan.max_epochs}')

    # the model at full size for validation, checkpoints and tests ----------
    def _full_model(self, runner) -> None:
        if self.driver is not None:
            self.driver.full_model()

    after_train_epoch = before_val = after_train = _full_model

    def before_test(self, runner) -> None:
        self._full_model(runner)
        checks.warn_eval_pipelines(runner, 'test')

    # checkpoints ------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.plan is None:
            return
        meta = checkpoint.setdefault('meta', {})
        # a checkpoint by iteration resumes into the epoch it was saved in,
        # so that epoch counts as trained
        if self.plan.clock.by_iter:
            trained = meta.get('iter', runner.iter)
        else:
            trained = runner.epoch if self._epoch is None else \
                self._epoch + 1
        meta['efficienttrain'] = dict(
            resume.plan_record(self.plan.clock, trained),
            random_state=resume.random_state())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # only before_train knows whether this is a resume
        self._loaded = checkpoint.get('meta') or {}
