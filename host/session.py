"""One eoq-train run with checkpoints: written at every epoch and on Ctrl-C, reloaded after a device reset.

:class:`Session` drives golden_model.train.run_training from a Position
(fresh, or a checkpoint's) with two hooks: after every step it stops at a
Ctrl-C (SIGINT only sets a flag, so a step is never cut in half; a second
Ctrl-C stops at once), at every epoch's end it writes the checkpoint.  With
a checkpoint directory the state is also written when the run starts, so
that there is always one to go back to.

A device reset under the trainer (host.client.DeviceReset: the device's
run_seq is not the seq of the host's last RUN) rewinds the whole run to the
last checkpoint: the golden model, the loop position and the device's
program, table and weights are reloaded, and training goes on from there;
the result is the same as that of a run without the reset.
"""

from __future__ import annotations

import signal
from pathlib import Path

from golden_model.train import EpochRecord, Position, run_training

from .checkpoint import Checkpoint, load, save, state_path
from .client import DeviceReset

#: Reloads after device resets without a new checkpoint in between before the run gives up.
MAX_RELOADS = 3


class Interrupted(Exception):
    """The run stopped at a Ctrl-C (the state is in the checkpoint, if there is a directory)."""

    def __init__(self, position: Position, path: Path | None):
        super().__init__(f"interrupted at epoch {position.epoch}, step {position.step}")
        self.position, self.path = position, path


class ResetWithoutCheckpoint(Exception):
    """The device was reset and there is no checkpoint to reload it from."""


class StopFlag:
    """SIGINT handler for the duration of a ``with`` block: the first Ctrl-C asks the run to stop after
    the current step, the second raises KeyboardInterrupt."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def capture(target, run: dict, position: Position) -> Checkpoint:
    """The state of ``target`` at ``position`` (a device target's parameters are read back)."""
    model = target.model
    params = dict(model.params)          # the models replace their parameters, never change them in place
    device_params = getattr(target, "device_params", None)
    counters = getattr(target, "counters", None)
    return Checkpoint(run, position, params, getattr(model, "step", None),
                      device_params() if device_params else None, counters() if counters else {},
                      getattr(target, "calibrated", None))


def restore(target, checkpoint: Checkpoint, *, same_session: bool) -> None:
    """Put ``target`` (built for the checkpoint's run) in the checkpoint's state."""
    model = target.model
    model.params = dict(checkpoint.model)
    if checkpoint.model_step is not None:
        model.step = checkpoint.model_step
    target.lr_shift = checkpoint.run["lr_shift"]
    if hasattr(target, "calibrated"):
        target.calibrated = checkpoint.inference
    if checkpoint.device is not None:
        target.restore(checkpoint.device, checkpoint.counters, same_session=same_session)


def start_from(target, saved: Checkpoint) -> Position:
    """Put ``target`` in the state of weights saved with --save (a new run starts from them): the
    parameters, the step counter that keys stochastic rounding and the inference exponents; returns
    the Position whose data order continues the saved run's."""
    model = target.model
    model.params = dict(saved.model)
    if saved.model_step is not None:
        model.step = saved.model_step
    if hasattr(target, "calibrated"):
        target.calibrated = saved.inference
    reload_weights = getattr(target, "reload_weights", None)
    if reload_weights is not None:
        reload_weights()
    return Position(rng_state=saved.position.rng_state)


class Session:
    """Train ``target`` for the run ``run`` (host.checkpoint settings), checkpointing into ``directory``."""

    def __init__(self, target, run: dict, *, directory: Path | None, data, progress: bool, log=print):
        self.target, self.run, self.directory, self.data = target, run, directory, data
        self.progress, self.log = progress, log
        self.position = Position()
        self.saved: Path | None = None
        self.stop = StopFlag()

    def resume(self, checkpoint: Checkpoint) -> None:
        restore(self.target, checkpoint, same_session=False)
        self.position = checkpoint.position

    def _save(self, position: Position) -> None:
        if self.directory is None:
            return
        checkpoint = capture(self.target, self.run, position)
        self.saved = save(self.directory, checkpoint)
        self.log(f"eoq-train: checkpoint at {checkpoint.where}: {self.saved}")

    def _on_step(self, position: Position) -> None:
        if self.stop.requested:
            self._save(position)
            raise Interrupted(position, self.saved)

    def _on_epoch(self, position: Position) -> None:
        self.position = position
        self._save(position)
        if self.stop.requested:
            raise Interrupted(position, self.saved)

    def _reload(self, error: DeviceReset) -> None:
        if self.saved is None:
            raise ResetWithoutCheckpoint(f"{error}; there is no checkpoint to reload it from (run with "
                                         f"--checkpoint DIR)") from None
        checkpoint = load(self.directory)
        self.log(f"eoq-train: {error}")
        self.log(f"eoq-train: reloading the device and the golden model from {state_path(self.directory)} "
                 f"({checkpoint.where}) and training on from there")
        restore(self.target, checkpoint, same_session=True)
        self.position = checkpoint.position

    def train(self) -> tuple[list[EpochRecord], float]:
        """Run (or continue) the training; returns the history and the training seconds."""
        self.target.lr_shift = self.run["lr_shift"]
        reloads = 0
        with self.stop:
            self._save(self.position)
            while True:
                start = self.position
                try:
                    return run_training(self.target, self.run["epochs"], self.run["batch"], self.run["seed"],
                                        self.data, progress=self.progress, log=self.log,
                                        train_accuracy="running", max_steps=self.run["steps"], start=start,
                                        on_step=self._on_step, on_epoch=self._on_epoch)
                except DeviceReset as error:
                    reloads = reloads + 1 if self.position is start else 1
                    if reloads > MAX_RELOADS:
                        raise
                    self._reload(error)
