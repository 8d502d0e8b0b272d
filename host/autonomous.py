"""`eoq-train --autonomous`: the core trains whole epochs on its own (golden_model/autonomous.py).

The host uploads the data once, then sends one LOOP per epoch and one per evaluation, and reads the
loss counters; the golden machine runs the same commands alongside.  Each epoch's counters and, at
the end, the weights and the progress must equal the golden machine's (``bit_exact``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from golden_model.arithmetic import Arithmetic
from golden_model.autonomous import AutonomousTrainer
from golden_model.int_loss import LOG_FRAC
from golden_model.machine import LossCounters
from golden_model.network import ResMLP, quantize_input
from golden_model.train import EpochRecord, network_shape, scheduled_lr_shift

from .device import DeviceStats, GoldenDevice, open_device


def mean_loss(counters: LossCounters) -> float:
    """The mean cross-entropy in nats of the counted rows (loss_bits: -log2 p in Q16)."""
    return counters.loss_bits / 2**LOG_FRAC * math.log(2) / max(counters.samples, 1)


@dataclass
class AutonomousRun:
    """What an autonomous run measured: per-epoch records, the device's statistics, the verdict."""

    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    upload: object = None          # device statistics after the setup (data upload included)
    train: object = None           # statistics of the training LOOPs alone
    total: object = None
    bit_exact: bool | None = None
    difference: str = ""


def train_autonomous(run: dict, cfg, *, log=print, device=None) -> AutonomousRun:
    """Train ``run``'s MLP for run["epochs"] epochs on the target's device with the data resident."""
    data = run["dataset"]
    fmt = data.format
    sets = (quantize_input(data.train_x, cfg, fmt), data.train_y, quantize_input(data.test_x, cfg, fmt), data.test_y)

    def trainer_on(dev):
        model = ResMLP(cfg, run["seed"], run["lr_shift"], network_shape("mlp", fmt),
                       arithmetic=Arithmetic(loss="int"))
        return AutonomousTrainer(dev, model, run["batch"], *sets)

    device = device or open_device(run["target"], cfg)
    result = AutonomousRun()
    try:
        start = time.monotonic()
        trainer, golden = trainer_on(device), trainer_on(GoldenDevice(cfg))
        result.upload = device.stats
        train_bytes = DeviceStats()
        for epoch in range(run["epochs"]):
            for side in (trainer, golden):        # the host loop's schedule (golden_model.train.run_training)
                side.model.lr_shift = scheduled_lr_shift(run["lr_shift"], epoch, run["epochs"])
            steps = trainer.epoch_steps()
            if run.get("steps"):
                steps = min(steps, run["steps"])
            before = device.stats
            counts = (trainer.train_epoch(steps), golden.train_epoch(steps))
            spent = device.stats.minus(before)
            train_bytes = train_bytes.plus(spent)
            tests = (trainer.evaluate(), golden.evaluate())
            result.steps += steps
            if counts[0] != counts[1] or tests[0] != tests[1]:
                result.bit_exact = False
                result.difference = (f"epoch {epoch}: loss counters (train, test) {counts[0]}, {tests[0]}; "
                                     f"golden {counts[1]}, {tests[1]}")
                break
            train, test = counts[0], tests[0]
            record = EpochRecord(epoch, mean_loss(train), train.correct / max(train.samples, 1),
                                 test.correct / max(test.samples, 1))
            result.history.append(record)
            log(f"epoch {epoch}: {steps} steps on the core, loss {record.loss:.4f}, train acc "
                f"{record.train_accuracy:.3f}, test acc {record.test_accuracy:.3f}")
        result.seconds = time.monotonic() - start
        result.train = train_bytes
        if result.bit_exact is None:
            result.bit_exact, result.difference = _compare(trainer, golden)
        result.total = device.stats
    finally:
        device.close()
    return result


def _compare(trainer, golden) -> tuple[bool, str]:
    got, want = trainer.params(), golden.params()
    for name, w in want.items():
        if got[name].exp != w.exp or not (got[name].q == w.q).all():
            return False, f"parameter {name}"
    if trainer.device.progress() != golden.device.progress():
        return False, f"progress {trainer.device.progress()}, golden {golden.device.progress()}"
    return True, ""
