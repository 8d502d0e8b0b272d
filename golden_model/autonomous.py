"""Autonomous training: the data sets resident on the core, a training epoch as one LOOP command.

The host uploads the training and test sets once (:func:`plan_sets`, :func:`set_words`); the
training program draws each step's batch with LOAD (the training stream: the epoch's Feistel
order, golden_model/shuffle.py), runs the forward pass, the integer LOSS and the backward pass with
step keys; the evaluation program draws the test set in order and only counts (LOSS adds to the
loss counters).  :class:`AutonomousTrainer` drives a device with the Machine API plus write_data,
write_labels, set_cursor, loop, progress, read_counters and clear_counters: a few commands per
epoch, whatever its number of steps.  With a golden_model.machine.Machine device it is the
reference the hardware is compared with; tests/test_autonomous.py checks it against
network.ResMLP's train_step on the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import isa
from .config import CoreConfig
from .machine import LossCounters, words_per_row
from .program import (LABELS_SLOT, MlpProgram, encode, forward_program, network_program, read_params,
                      write_params)
from .quant import QTensor


@dataclass(frozen=True)
class DataSet:
    """A set in the data memory: samples base .. base + count - 1 (LOAD's key)."""

    base: int
    count: int


def plan_sets(cfg: CoreConfig, features: int, train: int, test: int) -> tuple[DataSet, DataSet]:
    """The training set from sample 0 and the test set after it; ValueError naming the limit that a
    set beyond the configuration's data memory or label memory breaks."""
    total, stride = train + test, words_per_row(features, cfg.lanes)
    if train < 1 or test < 1:
        raise ValueError(f"autonomous training needs a training and a test set, got {train} and {test} samples")
    if total > cfg.data_samples:
        raise ValueError(f"{train} + {test} samples exceed the label memory of configuration {cfg.name} "
                         f"(data_samples {cfg.data_samples}); use a configuration with more, or --host-loop")
    if total * stride > cfg.data_words:
        raise ValueError(f"{train} + {test} samples of {features} features take {total * stride} data words; "
                         f"configuration {cfg.name} has {cfg.data_words} (data_bytes {cfg.data_bytes}); use a "
                         f"configuration with more, or --host-loop")
    return DataSet(0, train), DataSet(train, test)


def set_words(x: np.ndarray, cfg: CoreConfig) -> np.ndarray:
    """Samples (n, features) int8 as data-memory words: each sample's row padded to whole words."""
    stride = words_per_row(x.shape[1], cfg.lanes)
    padded = np.zeros((x.shape[0], stride * cfg.lanes), dtype=np.int8)
    padded[:, :x.shape[1]] = x
    return padded.reshape(-1, cfg.lanes)


def train_program(program: MlpProgram, lr_shift: int, train: DataSet) -> list[isa.Instruction]:
    """One training step: the batch's labels and samples (training stream), forward, LOSS, backward."""
    loads = [isa.load(LABELS_SLOT, train.base, train.count, labels=True, shuffle=True),
             isa.load(program.slot("x"), train.base, train.count, shuffle=True)]
    return loads + forward_program(program.cfg)[:-1] + program.backward_program(program.mixes(), lr_shift,
                                                                               step_key=True)


def eval_program(program: MlpProgram, test: DataSet) -> list[isa.Instruction]:
    """One evaluation batch: labels and samples (evaluation stream, padded past the end), forward, LOSS."""
    loads = [isa.load(LABELS_SLOT, test.base, test.count, labels=True),
             isa.load(program.slot("x"), test.base, test.count)]
    return loads + forward_program(program.cfg)[:-1] + [isa.loss(program.slot("y"), LABELS_SLOT), isa.halt()]


class AutonomousTrainer:
    """Trains a ResMLP with the integer loss on a device that holds the data: one LOOP per epoch.

    ``train_x``/``test_x`` are the quantized inputs (one exponent, the data format's), the labels
    int classes.  The parameters and the step start from ``model``'s.
    """

    def __init__(self, device, model, batch: int, train_x: QTensor, train_y, test_x: QTensor, test_y):
        if model.arithmetic.loss != "int":
            raise ValueError("autonomous training computes the output error on the core: it needs the integer "
                             "loss (--loss int)")
        program = network_program(model, batch)
        if not isinstance(program, MlpProgram):
            raise ValueError("autonomous training draws one sample per row: the MLP only (the CNN trains with "
                             "--host-loop)")
        if train_x.exp != test_x.exp:
            raise ValueError(f"training and test inputs need one exponent, got {train_x.exp} and {test_x.exp}")
        self.device, self.model, self.cfg, self.batch, self.program = device, model, model.cfg, batch, program
        self.lr_shift = None
        self.train, self.test = plan_sets(self.cfg, train_x.q.shape[1], len(train_x.q), len(test_x.q))
        for name, place in program.places.items():
            exp = model.params[name].exp if name in model.params else (train_x.exp if name == "x" else 0)
            device.set_tensor(place.slot, place.base, place.rows, place.cols, exp)
        write_params(device, program, model)
        device.write_data(0, set_words(np.concatenate([train_x.q, test_x.q]), self.cfg))
        device.write_labels(0, np.concatenate([np.asarray(train_y), np.asarray(test_y)]).astype(np.int8))
        evaluation = encode(eval_program(program, self.test))
        self.eval_pc = self.cfg.program_depth - len(evaluation)
        device.load_program(evaluation, self.eval_pc)
        device.set_keys(model.stream_seed, model.step)
        device.set_cursor(0, 0, 0)
        self._load_train_program()

    def _load_train_program(self) -> None:
        """The training program at pc 0, for the model's learning rate (again when the schedule changes it)."""
        if self.lr_shift != self.model.lr_shift:
            self.lr_shift = self.model.lr_shift
            self.device.load_program(encode(train_program(self.program, self.lr_shift, self.train)), 0)

    def epoch_steps(self) -> int:
        """Steps that finish the training stream's current epoch (the last batch runs into the next)."""
        progress = self.device.progress()
        left = self.train.count - progress.train if progress.train < self.train.count else self.train.count
        return -(-left // self.batch)

    def train_epoch(self, steps: int | None = None) -> LossCounters:
        """``steps`` (default: to the end of the epoch) training steps in one LOOP; the loss counters."""
        self._load_train_program()
        steps = self.epoch_steps() if steps is None else steps
        self.device.clear_counters()
        self.device.loop(0, steps, True)
        return self.device.read_counters()

    def evaluate(self) -> LossCounters:
        """The test set once, in order: the loss counters (the training stream's cursor stays)."""
        progress = self.device.progress()
        self.device.set_cursor(progress.epoch, progress.train, 0)
        self.device.clear_counters()
        self.device.loop(self.eval_pc, -(-self.test.count // self.batch), False)
        return self.device.read_counters()

    def params(self) -> dict[str, QTensor]:
        """Parameters read back, in the model's shapes."""
        return read_params(self.device, self.program, self.model)
