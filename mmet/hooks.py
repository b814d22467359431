"""The hook that applies a :class:`~mmet.curriculum.Curriculum` to a Runner.

One job: map the training clock to a stage. The pieces it connects live
elsewhere: :mod:`mmet.stages` finds, adapts and drives the staged transforms
(and owns the full size and the stage text), :mod:`mmet.checks` holds the
checks, :mod:`mmet.resume` whether a resume continues the plan its checkpoint
trained, :mod:`mmet.swin` the Swin windows that follow B.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS

from . import compat
from .checks import (check_drivable, check_first_batch,
                     check_patch_multiples, eval_fourier_crops,
                     preflight_model, preflight_pipeline)
from .curriculum import Curriculum
from .mae import check_mae_model
from .resume import check_resume, plan_record
from .stages import (StageDriver, StageSchedule, StageState, Size,
                     unwrap_model)
from .swin import SwinWindowHook, SwinWindows

DATA_BATCH = Optional[Union[dict, tuple, list]]


def _hw(size) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


@HOOKS.register_module()
class EfficientTrainHook(Hook):
    """Drive the EfficientTrain curriculum: bandwidth B and RandAugment m.

    Before each train epoch it sets the stage of that epoch on every staged
    transform of the train loader's pipelines and of the model's data
    preprocessor (:class:`~mmet.stages.StageDriver`). The stage is a pure
    function of the epoch (or, where :class:`~mmet.loops.EfficientTrainLoop`
    switches the batched path by iteration, of the iteration), so every DDP
    rank agrees without communication and a resumed run lands in the right
    stage.

    On a stock pipeline (no staged transform) it first adapts the pipeline
    (:func:`mmet.adapt.adapt_pipeline`: ``RandAugment`` becomes
    ``StagedRandAug``, and a ``FourierCrop`` is inserted, or
    ``RandomResizedCrop`` becomes the cheap path), and logs it before and
    after. The model side is automatic too: Swin's window follows B (unless
    a :class:`~mmet.swin.SwinWindowHook` is registered), a patch-embedding
    backbone must get multiples of its patch, a stock MAE is refused, and
    one forward and backward per B below full size runs at start.

    Persistent data workers hold a copy of the pipeline made when they
    started, so at each stage switch the hook restarts them (as mmpretrain's
    ``SwitchRecipeHook`` does). The first batch of every epoch is then
    checked against the stage's size: a curriculum that does not reach the
    workers fails loudly.

    Each checkpoint records the plan it trained (``meta['efficienttrain']``:
    the curriculum, ``max_epochs``, ``epoch_length`` where stages switch by
    iteration, the stage ``edges`` and the epochs or iterations
    ``trained``). A resume that would change the stage of an epoch (or
    iteration) already trained, or move B or m back from the last trained
    stage, is refused unless ``allow_curriculum_change`` says otherwise; so
    is resuming a checkpoint trained without the hook (at full size) into a
    stage below it. Loading weights only (``load_from`` without
    ``resume``, ``tools/test.py``) starts a fresh plan and is not checked.

    Args:
        curriculum (str | list[dict]): A preset name (``'efficienttrain'``)
            or a list of ``dict(share=, bandwidth=, magnitude=)``; see
            :mod:`mmet.curriculum`. Bandwidths are relative to each staged
            transform's configured (full) size.
        low_pass (str): How a stock pipeline gets its low-pass to B:
            ``'fourier'`` (a ``FourierCrop``) or ``'resize'`` (the cheap
            path, ``StagedRandomResizedCrop``). Defaults to ``'fourier'``.
        check_batches (bool): Verify the spatial size of the first batch of
            each epoch. Defaults to True.
        allow_curriculum_change (bool | str): What a resume that moves the
            plan (another curriculum, ``max_epochs`` or stage switching)
            does. ``False`` refuses it, naming the cause. ``True``
            continues on the new plan, with a warning. ``'extend'``
            re-plans without going back: each remaining epoch (or
            iteration) trains the later of its new stage and the last
            trained one, so B and m never decrease; the new stage spans
            are logged. Defaults to False.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 curriculum: Union[str, Sequence[dict]] = 'efficienttrain',
                 low_pass: str = 'fourier',
                 check_batches: bool = True,
                 allow_curriculum_change: Union[bool, str] = False):
        if not (isinstance(allow_curriculum_change, bool)
                or allow_curriculum_change == 'extend'):
            raise ValueError(
                "allow_curriculum_change must be False, True or 'extend', "
                f'got {allow_curriculum_change!r}.')
        self.curriculum = Curriculum.build(curriculum)
        self.driver = StageDriver(self.curriculum, low_pass)
        self.low_pass = low_pass
        self.check_batches = check_batches
        self.allow_curriculum_change = allow_curriculum_change
        # set by EfficientTrainLoop for the batched path: stages switch at
        # iterations, not epochs
        self.switch_by_iter = False
        self.schedule: Optional[StageSchedule] = None
        self._applied: Optional[StageState] = None
        self._expected_hw: Dict[int, Optional[Tuple[int, int]]] = {}
        self._pending_check: Optional[StageState] = None
        self._swin: Optional[SwinWindows] = None
        self._max_epochs: Optional[int] = None
        self._epoch: Optional[int] = None
        self._warned_eval: set = set()
        # the meta of the checkpoint loaded last, until before_train
        self._loaded: Optional[dict] = None

    # set-up -----------------------------------------------------------------
    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if not isinstance(loop, EpochBasedTrainLoop):
            raise TypeError(
                f'EfficientTrainHook needs an EpochBasedTrainLoop, got '
                f'{type(loop).__name__}. The curriculum switches stages between '
                'epochs; an iteration-based loop caches one data iterator and '
                'runs before_train_epoch once, so stages would never switch. '
                'Use train_cfg=dict(by_epoch=True, max_epochs=...).')
        drivers = [h for h in runner.hooks if isinstance(h, EfficientTrainHook)]
        if len(drivers) > 1:
            raise RuntimeError(
                f'{len(drivers)} EfficientTrainHooks are registered; they '
                'would fight over the same transforms. Keep one in '
                'custom_hooks (check the _base_ configs you inherit).')

        dataset = runner.train_dataloader.dataset
        self._max_epochs = runner.max_epochs
        self.bind(dataset, runner.model, log=runner.logger.info,
                  warn=runner.logger.warning)
        self.schedule = StageSchedule(
            self.curriculum, runner.max_epochs, self.full_size,
            len(runner.train_dataloader) if self.switch_by_iter else None)
        self._check_resume(runner)
        self._check_model(runner)
        self._warn_eval_pipelines(runner, 'val')
        self._expected_hw = preflight_pipeline(dataset, self.driver,
                                               self.schedule)
        self._applied = None

    def bind(self, dataset, model=None, log=None, warn=None) -> None:
        """Adapt and find the staged transforms of ``dataset``'s pipelines
        and ``model``'s data preprocessor (see :meth:`StageDriver.bind`).

        Also wraps each pipeline in a :class:`~mmet.stages.StagedPipeline`,
        so that a sample that fails names its file and the stage. This must
        happen before the data workers fork, i.e. in ``before_train``.

        Raises:
            RuntimeError: if the pipeline cannot express the curriculum.
        """
        # the loop may have given the hook its own epoch shares
        self.driver.curriculum = self.curriculum
        self.driver.bind(dataset, model, log=log)
        check_drivable(self.driver, warn=warn)

    def _check_model(self, runner) -> None:
        """The model side: MAE, patch multiples, Swin windows, preflight."""
        if not self.driver.lowers_bandwidth:
            return
        model = unwrap_model(runner.model)
        check_mae_model(model)
        states = self.schedule.states()
        if self.full_size is None:
            return
        check_patch_multiples(model, states)
        if not any(isinstance(h, SwinWindowHook) for h in runner.hooks):
            self._swin = SwinWindows.find(model)
        sizes = [s.size for s in states if s.bandwidth < 1]
        try:
            for size in dict.fromkeys(sizes):
                if self._swin is not None:
                    self._swin.set_size(size)
                preflight_model(model, [size])
        finally:
            if self._swin is not None:
                self._swin.reset()

    def _warn_eval_pipelines(self, runner, mode: str) -> None:
        """Warn (once per mode) about a FourierCrop in an eval pipeline."""
        loader = compat.built_eval_dataloader(runner, mode)
        if loader is None or mode in self._warned_eval:
            return
        crops = eval_fourier_crops(loader.dataset)
        if crops:
            self._warned_eval.add(mode)
            runner.logger.warning(
                f'The {mode} pipeline contains {crops[0]!r}. Evaluation '
                'normally runs at full size; EfficientTrainHook only drives '
                'the train pipeline, so this crop stays at its configured '
                f'size. Remove it from the {mode}_dataloader pipeline unless '
                'you mean it.')

    @property
    def full_size(self) -> Optional[Size]:
        """The full input size (after bind; see StageDriver.full_size)."""
        return self.driver.full_size

    @property
    def current_size(self) -> Optional[Size]:
        """B in pixels of the stage applied last (None before the first)."""
        return self._applied.size if self._applied else None

    @property
    def current_stage(self) -> Optional[str]:
        """Where training is: ``'stage 4/5 (B=24, m=7), epoch 7/10'``.

        ``None`` before the first train epoch. ``tools/train.py`` logs it
        when training fails, e.g. after a data worker was killed.
        """
        if self._applied is None or self._epoch is None:
            return None
        epoch = f'epoch {self._epoch + 1}'
        if self._max_epochs:
            epoch += f'/{self._max_epochs}'
        return f'{self._applied.describe(span=False)}, {epoch}'

    def apply_stage(self, index: int) -> StageState:
        """Set stage ``index`` (from 0) on the bound transforms."""
        if self.schedule is None or self.schedule.max_epochs != \
                self._max_epochs:
            self.schedule = StageSchedule(self.curriculum, self._max_epochs,
                                          self.full_size)
        state = self.schedule.state(index)
        self.driver.apply(state)
        return state

    # the clock ---------------------------------------------------------------
    def _enter(self, runner, index: int) -> None:
        """Make stage ``index`` the current one (no-op if it is)."""
        state = self.schedule.state(index)
        if state == self._applied:
            return
        self.driver.apply(state)
        # workers re-fork with the stage (and its text for failures); the
        # batched path switching mid-epoch has nothing staged in them
        if not self.switch_by_iter:
            self._restart_workers(runner.train_dataloader)
        if self._swin is not None:
            self._swin.set_size(state.size)
        self._applied = state
        self._pending_check = state if self.check_batches else None

    def before_train_epoch(self, runner) -> None:
        self._epoch, self._max_epochs = runner.epoch, runner.max_epochs
        tick = runner.iter if self.switch_by_iter else runner.epoch
        self._enter(runner, self.schedule.index_at(tick))
        if self._swin is not None:  # validation reset the windows
            self._swin.set_size(self._applied.size)
        if not self.switch_by_iter:
            self._pending_check = self._applied if self.check_batches \
                else None
        runner.logger.info(
            f'EfficientTrain epoch {runner.epoch + 1}/{runner.max_epochs}: '
            f'{self._applied.describe(span=False)}')
        self._log_scalars(runner)

    def _log_scalars(self, runner) -> None:
        hub, state = runner.message_hub, self._applied
        hub.update_scalar('train/et_stage', state.number)
        hub.update_scalar('train/et_B', _hw(state.size)[0])
        hub.update_scalar('train/et_m', state.magnitude)

    @staticmethod
    def _restart_workers(loader) -> None:
        """Make persistent workers re-fork with the updated pipeline."""
        compat.restart_workers(loader)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        if self.switch_by_iter:
            before = self._applied
            self._enter(runner, self.schedule.index_at(runner.iter))
            if self._applied is not before:
                runner.logger.info(
                    f'EfficientTrain iteration {runner.iter + 1}/'
                    f'{runner.max_iters}: {self._applied.describe()}')
            self._log_scalars(runner)
        state, self._pending_check = self._pending_check, None
        if state is not None:
            check_first_batch(state, data_batch,
                              self._expected_hw.get(state.index),
                              self.driver.preprocessor)

    # the model at full size outside training ---------------------------------
    def _full_windows(self) -> None:
        if self._swin is not None:
            self._swin.reset()

    def after_train_epoch(self, runner) -> None:
        self._full_windows()  # validation and checkpoints see the full model

    def before_val(self, runner) -> None:
        self._full_windows()
        self._warn_eval_pipelines(runner, 'val')

    def before_test(self, runner) -> None:
        self._full_windows()
        self._warn_eval_pipelines(runner, 'test')

    def after_train(self, runner) -> None:
        self._full_windows()

    # checkpoints ------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.setdefault('meta', {})
        # a checkpoint by iteration resumes into the epoch it was saved in,
        # so that epoch counts as trained
        if self.schedule is not None and self.schedule.by_iter:
            trained = meta.get('iter', runner.iter)
        else:
            trained = runner.epoch if self._epoch is None else \
                self._epoch + 1
        meta['efficienttrain'] = plan_record(self.curriculum, self.schedule,
                                             self.full_size, trained)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # only before_train knows whether this is a resume (the loop's epoch
        # then is the checkpoint's); weights alone are never checked
        self._loaded = checkpoint.get('meta') or {}

    def _check_resume(self, runner) -> None:
        """Hold a resume to the plan its checkpoint trained on (see
        :mod:`mmet.resume`); runs once the loop has the checkpoint's epoch.
        """
        meta, self._loaded = self._loaded, None
        if meta is None or not (runner.epoch or runner.iter):
            return  # nothing trained yet: load_from starts a fresh plan
        tick = runner.iter if self.schedule.by_iter else runner.epoch
        check_resume(self.schedule, meta.get('efficienttrain'), tick,
                     self.allow_curriculum_change, info=runner.logger.info,
                     warn=runner.logger.warning)
