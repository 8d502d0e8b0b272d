"""Training loop on the digits data, for any model with ``train_step`` and ``predict``.

Both the EOQ int8 golden model and the float32 reference are driven through
the same loop (same split, same shuffling from the same seed), so their
accuracies compare like for like.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from tqdm import tqdm

from .arithmetic import CORE, Arithmetic
from .cnn import FloatResCNN, ResCNN, ResNetSpec, input_rows
from .config import CONFIGS, CoreConfig
from .data import DIGITS_FORMAT, DataError, Dataset, InputFormat, batches, load_digits_split
from .float_bn import FloatBNResCNN, FloatBNResMLP
from .float_ref import FloatResMLP
from .inference import calibrate
from .machine import Machine
from .network import ResMLP, mlp_sizes, quantize_input
from .program import ProgramTrainer, largest_batch, network_program

DEFAULT_LR_SHIFT = {("mlp", 1): 7, ("mlp", 16): 4, ("cnn", 16): 3, ("cnn", 1): 6}


def scheduled_lr_shift(base: int, epoch: int, epochs: int) -> int:
    """Step decay in powers of two: lr halves once 50% and again once 75% of the epochs are done."""
    done = epoch - 1
    return base + int(2 * done >= epochs) + int(4 * done >= 3 * epochs)


def default_lr_shift(batch: int, arch: str = "mlp") -> int:
    """Learning rate 2**-lr_shift tuned per architecture and batch (errors are batch means).

    Measured at batch 16 and 1 for both networks (bench/accuracy.py; the CNN
    at batch 16 also at 2^-2: int8 97.31% mean of seeds 0-2, 97.78% at 2^-3);
    other batch sizes take the nearest tuned setting's rule.
    """
    if (arch, batch) in DEFAULT_LR_SHIFT:
        return DEFAULT_LR_SHIFT[(arch, batch)]
    if arch == "cnn":
        return 3 if batch >= 8 else 6
    return 4 if batch >= 8 else 6


def network_shape(arch: str, fmt: InputFormat):
    """The MLP's layer sizes or the ResNet description for a data format (channels as the defaults)."""
    if arch == "cnn":
        spec = ResNetSpec(height=fmt.height, width=fmt.width, in_channels=fmt.channels, classes=fmt.classes,
                          head_pool=1)
        h, w = spec.final_size           # pool 2x2 (2 along a 1-D signal) where the last map allows it
        return replace(spec, head_pool=2) if (h == 1 or h % 2 == 0) and w % 2 == 0 else spec
    return mlp_sizes(inputs=fmt.features, classes=fmt.classes)


def int_model(arch: str, cfg: CoreConfig, seed: int, lr_shift: int, fmt: InputFormat = DIGITS_FORMAT, *,
              arithmetic: Arithmetic = CORE):
    """The EOQ int8 network for ``arch`` and the data format (in an arithmetic variant if given)."""
    shape = network_shape(arch, fmt)
    model = ResCNN if arch == "cnn" else ResMLP
    return model(cfg, seed, lr_shift, shape, arithmetic=arithmetic)


def check_fits(arch: str, fmt: InputFormat, cfg: CoreConfig, batch: int) -> None:
    """DataError naming the limit when the network for this data does not fit ``cfg`` at ``batch``
    (a device target's layout included), and the configurations that would hold it."""
    def problem(config: CoreConfig, batch: int = batch) -> str | None:
        try:
            if batch > config.max_batch:
                return f"batch {batch} exceeds max_batch {config.max_batch}"
            network_program(int_model(arch, config, 0, 0, fmt), batch)
        except ValueError as error:
            return str(error)
        return None

    reason = problem(cfg)
    if reason is None:
        return
    holding = [name for name, config in CONFIGS.items() if problem(config) is None]
    hint = (f"configuration {', '.join(holding)} holds it (--config {holding[0]})" if holding
            else "no configuration holds it: lower the batch or the image size")
    smaller = next((b for b in range(min(batch - 1, cfg.max_batch), 0, -1) if problem(cfg, b) is None), None)
    if smaller is not None:
        hint = f"configuration {cfg.name} holds batch {smaller} (--batch {smaller}); {hint}"
    raise DataError(f"samples of {fmt.channels}x{fmt.height}x{fmt.width} in {fmt.classes} classes, {arch} at batch "
                    f"{batch}: {reason}; {hint}")


class Trainable(Protocol):
    macs_per_step: int

    def step(self, pixels: np.ndarray, labels: np.ndarray) -> float: ...

    def calibrate(self, pixels: np.ndarray) -> None: ...

    def predict(self, pixels: np.ndarray) -> np.ndarray: ...


class ModelTarget:
    """A model behind the Trainable interface; subclasses say how pixels enter it."""

    name = "model"

    def __init__(self, model):
        self.model = model

    def inputs(self, pixels):
        raise NotImplementedError

    def step(self, pixels, labels):
        return self.model.train_step(self.inputs(pixels), labels)

    def calibrate(self, pixels) -> None:
        """Fix what inference needs from the training set (the float model needs nothing)."""

    def predict(self, pixels):
        return self.model.predict(self.inputs(pixels))

    @property
    def last_logits(self):
        return self.model.last_logits

    @property
    def macs(self):
        return self.model.macs

    @property
    def lr_shift(self) -> int:
        return self.model.lr_shift

    @lr_shift.setter
    def lr_shift(self, value: int) -> None:
        self.model.lr_shift = value


class GoldenTarget(ModelTarget):
    """The EOQ int8 golden model behind the Trainable interface."""

    name = "golden"

    def __init__(self, cfg: CoreConfig, seed: int, lr_shift: int, arch: str = "mlp",
                 fmt: InputFormat = DIGITS_FORMAT, *, arithmetic: Arithmetic = CORE):
        super().__init__(int_model(arch, cfg, seed, lr_shift, fmt, arithmetic=arithmetic))
        self.cfg, self.arch, self.fmt = cfg, arch, fmt
        self.calibrated: dict[str, int] | None = None

    def calibrate(self, pixels) -> None:
        """Freeze the inference exponents on the training set (golden_model/inference.py)."""
        self.calibrated = calibrate(self.model, self.inputs(pixels))

    def predict(self, pixels):
        """Frozen-exponent inference on a golden Machine once calibrated, else the training forward pass."""
        if self.calibrated is None:
            return super().predict(pixels)
        return np.argmax(self.logits(pixels), axis=1)

    def logits(self, pixels) -> np.ndarray:
        """Logit mantissas of frozen-exponent inference on a golden Machine (needs calibrate first)."""
        trainer = ProgramTrainer(Machine(self.cfg), self.model, largest_batch(self.model))
        return trainer.logits(self.inputs(pixels), self.calibrated)

    def inputs(self, pixels):
        if self.arch != "mlp":
            return input_rows(pixels, self.model.spec, self.cfg, self.fmt)
        return quantize_input(pixels, self.cfg, self.fmt)


FLOAT_MODELS = {("mlp", "fixup"): FloatResMLP, ("cnn", "fixup"): FloatResCNN,
                ("mlp", "bn"): FloatBNResMLP, ("cnn", "bn"): FloatBNResCNN}


class FloatTarget(ModelTarget):
    """The float32 reference behind the Trainable interface: Fixup (``norm="fixup"``, the same network
    as the int8 model) or batch normalization (``norm="bn"``, golden_model/float_bn.py)."""

    name = "fp32"

    def __init__(self, seed: int, lr_shift: int, arch: str = "mlp", fmt: InputFormat = DIGITS_FORMAT, *,
                 norm: str = "fixup"):
        if (arch, norm) not in FLOAT_MODELS:
            raise ValueError(f"no float reference for arch {arch!r} with norm {norm!r}; known: {sorted(FLOAT_MODELS)}")
        super().__init__(FLOAT_MODELS[(arch, norm)](seed, lr_shift, network_shape(arch, fmt)))
        self.fmt = fmt

    def inputs(self, pixels):
        return self.model.input(pixels, self.fmt)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float


def accuracy(target, pixels: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(target.predict(pixels) == labels))


TRAIN_ACCURACY_MODES = ("full", "running")


@dataclass
class Position:
    """Where a run stands, enough to continue it bit for bit.

    The next batch is number ``step`` (0-based) of epoch ``epoch`` (1-based);
    ``rng_state`` is the data-order generator's state at the start of that
    epoch (None: a fresh ``np.random.default_rng(seed)``), so the epoch's
    batch order is drawn again identically.  ``losses``, ``correct`` and
    ``seen`` are what the epoch recorded so far, ``seconds`` the training
    time of the run and ``history`` its finished epochs.  ``epoch`` past the
    last epoch means the run is complete.
    """

    epoch: int = 1
    step: int = 0
    rng_state: dict | None = None
    losses: list[float] = field(default_factory=list)
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    history: list[EpochRecord] = field(default_factory=list)


def steps_per_epoch(samples: int, batch: int, max_steps: int | None = None) -> int:
    """Batches an epoch takes (``max_steps`` caps it)."""
    steps = -(-samples // batch)
    return steps if max_steps is None else min(steps, max_steps)


def run_training(target, epochs: int, batch: int, seed: int, data: Dataset | None = None,
                 progress: bool = True, log=print, train_accuracy: str = "full",
                 max_steps: int | None = None, *, start: Position | None = None, on_step=None,
                 on_epoch=None) -> tuple[list[EpochRecord], float]:
    """Train for ``epochs``; returns per-epoch records and the training wall time (s).

    train_accuracy  "full": after each epoch, predict the whole training set;
                    "running": the accuracy of the logits each step already
                    computed, over the epoch's batches (weights change during
                    the epoch; needs ``target.last_logits``).  The test set is
                    evaluated once per epoch either way.
    max_steps       stop each epoch after this many batches (smoke tests); the
                    shuffling is the same as a full epoch's.
    start           continue from this Position (the target must hold the
                    state it had there, its ``lr_shift`` the run's base).
    on_step         called with the Position after every step, on_epoch with
                    the Position that starts the next epoch (checkpoints); an
                    exception they raise stops the run.
    After each epoch the target calibrates its inference on the training set
    (int8: frozen exponents, golden_model/inference.py), then predicts.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if train_accuracy not in TRAIN_ACCURACY_MODES:
        raise ValueError(f"train_accuracy must be one of {TRAIN_ACCURACY_MODES}, got {train_accuracy!r}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    data = data or load_digits_split()
    rng = np.random.default_rng(seed)
    position = copy.deepcopy(start) if start is not None else Position(rng_state=rng.bit_generator.state)
    if position.rng_state is not None:
        rng.bit_generator.state = position.rng_state
    per_epoch = steps_per_epoch(len(data.train_y), batch, max_steps)
    bar = None
    if progress:
        done = (position.epoch - 1) * per_epoch + position.step
        bar = tqdm(total=epochs * per_epoch, initial=min(done, epochs * per_epoch), unit="step",
                   desc=f"{target.name}", leave=False)
    base_lr_shift = target.lr_shift
    for epoch in range(position.epoch, epochs + 1):
        target.lr_shift = scheduled_lr_shift(base_lr_shift, epoch, epochs)
        _train_epoch(target, data, batch, rng, position, per_epoch, train_accuracy, on_step, bar)
        target.calibrate(data.train_x)
        train_acc = (position.correct / position.seen if train_accuracy == "running"
                     else accuracy(target, data.train_x, data.train_y))
        record = EpochRecord(epoch, float(np.mean(position.losses)), float(train_acc),
                             accuracy(target, data.test_x, data.test_y))
        position = Position(epoch + 1, 0, rng.bit_generator.state, [], 0, 0, position.seconds,
                            position.history + [record])
        if log is not None:
            message = (f"epoch {epoch:3d}  loss {record.loss:.4f}  train acc {record.train_accuracy:.4f}  "
                       f"test acc {record.test_accuracy:.4f}")
            if bar is not None:
                bar.write(message)
            else:
                log(message)
        if on_epoch is not None:
            on_epoch(position)
    if bar is not None:
        bar.close()
    return position.history, position.seconds


def _train_epoch(target, data: Dataset, batch: int, rng, position: Position, per_epoch: int, train_accuracy: str,
                 on_step, bar) -> None:
    """The rest of ``position``'s epoch: draw its batch order, skip the batches done, train the others."""
    start, seconds = time.perf_counter(), position.seconds
    for step, idx in enumerate(batches(len(data.train_y), batch, rng)):
        if step == per_epoch:
            break
        if step < position.step:
            continue
        position.losses.append(target.step(data.train_x[idx], data.train_y[idx]))
        if train_accuracy == "running":
            position.correct += int(np.sum(np.argmax(target.last_logits, axis=1) == data.train_y[idx]))
            position.seen += len(idx)
        position.step = step + 1
        position.seconds = seconds + time.perf_counter() - start
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(position)
    position.seconds = seconds + time.perf_counter() - start
