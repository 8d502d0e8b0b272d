"""Training loop on the digits data, for any model with ``train_step`` and ``predict``.

Both the EOQ int8 golden model and the float32 reference are driven through
the same loop (same split, same shuffling from the same seed), so their
accuracies compare like for like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from .cnn import FloatResCNN, ResCNN
from .config import CoreConfig
from .data import Digits, batches, load_digits_split
from .float_ref import FloatResMLP
from .network import ResMLP, quantize_input

DEFAULT_LR_SHIFT = {("mlp", 1): 7, ("mlp", 16): 4, ("cnn", 16): 2}


def scheduled_lr_shift(base: int, epoch: int, epochs: int) -> int:
    """Step decay in powers of two: lr halves once 50% and again once 75% of the epochs are done."""
    done = epoch - 1
    return base + int(2 * done >= epochs) + int(4 * done >= 3 * epochs)


def default_lr_shift(batch: int, arch: str = "mlp") -> int:
    """Learning rate 2**-lr_shift tuned per architecture and batch (errors are batch means).

    Measured: MLP at batch 16 and 1 (bench/accuracy.py), CNN at batch 16;
    other batch sizes take the nearest tuned setting's rule.
    """
    if (arch, batch) in DEFAULT_LR_SHIFT:
        return DEFAULT_LR_SHIFT[(arch, batch)]
    if arch == "cnn":
        return 2 if batch >= 8 else 5
    return 4 if batch >= 8 else 6


class Trainable(Protocol):
    macs_per_step: int

    def step(self, pixels: np.ndarray, labels: np.ndarray) -> float: ...

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

    def __init__(self, cfg: CoreConfig, seed: int, lr_shift: int, arch: str = "mlp"):
        if arch != "mlp":
            super().__init__(ResCNN(cfg, seed, lr_shift))
        else:
            super().__init__(ResMLP(cfg, seed, lr_shift))
        self.cfg = cfg

    def inputs(self, pixels):
        return quantize_input(pixels, self.cfg)


class FloatTarget(ModelTarget):
    """The float32 reference behind the Trainable interface."""

    name = "fp32"

    def __init__(self, seed: int, lr_shift: int, arch: str = "mlp"):
        if arch != "mlp":
            super().__init__(FloatResCNN(seed, lr_shift))
        else:
            super().__init__(FloatResMLP(seed, lr_shift))

    def inputs(self, pixels):
        return FloatResMLP.input(pixels)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float


def accuracy(target, pixels: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(target.predict(pixels) == labels))


TRAIN_ACCURACY_MODES = ("full", "running")


def run_training(target, epochs: int, batch: int, seed: int, data: Digits | None = None,
                 progress: bool = True, log=print, train_accuracy: str = "full",
                 max_steps: int | None = None) -> tuple[list[EpochRecord], float]:
    """Train for ``epochs``; returns per-epoch records and the training wall time (s).

    train_accuracy  "full": after each epoch, predict the whole training set;
                    "running": the accuracy of the logits each step already
                    computed, over the epoch's batches (weights change during
                    the epoch; needs ``target.last_logits``).  The test set is
                    evaluated once per epoch either way.
    max_steps       stop each epoch after this many batches (smoke tests); the
                    shuffling is the same as a full epoch's.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if train_accuracy not in TRAIN_ACCURACY_MODES:
        raise ValueError(f"train_accuracy must be one of {TRAIN_ACCURACY_MODES}, got {train_accuracy!r}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    data = data or load_digits_split()
    rng = np.random.default_rng(seed)
    history = []
    seconds = 0.0
    steps_per_epoch = -(-len(data.train_y) // batch)
    if max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, max_steps)
    bar = None
    if progress:
        bar = tqdm(total=epochs * steps_per_epoch, unit="step", desc=f"{target.name}", leave=False)
    base_lr_shift = target.lr_shift
    for epoch in range(1, epochs + 1):
        target.lr_shift = scheduled_lr_shift(base_lr_shift, epoch, epochs)
        losses = []
        correct = seen = 0
        start = time.perf_counter()
        for step, idx in enumerate(batches(len(data.train_y), batch, rng)):
            if step == steps_per_epoch:
                break
            losses.append(target.step(data.train_x[idx], data.train_y[idx]))
            if train_accuracy == "running":
                correct += int(np.sum(np.argmax(target.last_logits, axis=1) == data.train_y[idx]))
                seen += len(idx)
            if bar is not None:
                bar.update(1)
        seconds += time.perf_counter() - start
        train_acc = correct / seen if train_accuracy == "running" else accuracy(target, data.train_x, data.train_y)
        record = EpochRecord(epoch, float(np.mean(losses)), float(train_acc),
                             accuracy(target, data.test_x, data.test_y))
        history.append(record)
        if log is not None:
            message = (f"epoch {epoch:3d}  loss {record.loss:.4f}  train acc {record.train_accuracy:.4f}  "
                       f"test acc {record.test_accuracy:.4f}")
            if bar is not None:
                bar.write(message)
            else:
                log(message)
    if bar is not None:
        bar.close()
    return history, seconds
