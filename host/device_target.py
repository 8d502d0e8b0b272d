"""The training step as core programs on a device, with the golden network alongside (:class:`DeviceTarget`).

``step`` runs golden_model.program.ProgramTrainer.train_step on the device
and the golden network's train_step (ResMLP or ResCNN) on the same quantized
batch, and records the first step whose logits or loss differ; ``predict``
runs frozen-exponent inference on the device; ``compare_weights`` reads the device's
weights back and compares them with the golden model's.  For checkpoints
(host/checkpoint.py) it exposes the golden model as ``model``, reads the
device's parameters back (``device_params``) and reloads a device from a
checkpoint (``restore``): the program, the tensor table and the weights.
"""

from __future__ import annotations

import numpy as np

from golden_model.arithmetic import CORE, Arithmetic
from golden_model.data import DIGITS_FORMAT, InputFormat
from golden_model.program import ProgramTrainer
from golden_model.quant import QTensor
from golden_model.train import GoldenTarget

from .device import DeviceStats


def _add(a: DeviceStats, b: DeviceStats) -> DeviceStats:
    return DeviceStats(**{k: v + getattr(b, k) for k, v in a.to_dict().items()})


class DeviceTarget:
    """A device behind golden_model.train's Trainable interface, checked against the golden network.

    ``train_stats`` sums the device statistics of the steps only; ``total_stats`` adds everything the
    device did, in earlier sessions of a resumed run too (``stats_before``).
    """

    def __init__(self, device, cfg, seed: int, lr_shift: int, batch: int, arch: str = "mlp",
                 fmt: InputFormat = DIGITS_FORMAT, *, arithmetic: Arithmetic = CORE):
        self.name = device.target
        self.device, self.cfg, self.batch = device, cfg, batch
        self.reference = GoldenTarget(cfg, seed, lr_shift, arch, fmt, arithmetic=arithmetic)
        self.golden = self.reference.model
        self.trainer = ProgramTrainer(device, self.golden, batch)   # copies the initial weights
        self.steps = self.samples = 0
        self.train_stats = DeviceStats()
        self.stats_before = DeviceStats()
        self.first_divergence: int | None = None
        self.last_logits = None

    @property
    def model(self):
        return self.golden

    @property
    def calibrated(self) -> dict[str, int] | None:
        """The frozen inference exponents (golden_model/inference.py), None until calibrated."""
        return self.reference.calibrated

    @calibrated.setter
    def calibrated(self, value: dict[str, int] | None) -> None:
        self.reference.calibrated = value

    @property
    def lr_shift(self) -> int:
        return self.golden.lr_shift

    @lr_shift.setter
    def lr_shift(self, value: int) -> None:
        self.golden.lr_shift = self.trainer.lr_shift = value

    @property
    def macs(self):
        return self.golden.macs

    def step(self, pixels, labels):
        x = self.reference.inputs(pixels)
        before = self.device.stats
        loss = self.trainer.train_step(x, labels)
        self.train_stats = _add(self.train_stats, self.device.stats.minus(before))
        golden_loss = self.golden.train_step(x, labels)
        self.last_logits = self.trainer.last_logits
        if self.first_divergence is None and (loss != golden_loss or
                                              not np.array_equal(self.trainer.last_logits, self.golden.last_logits)):
            self.first_divergence = self.steps
        self.steps += 1
        self.samples += len(labels)
        return loss

    def calibrate(self, pixels) -> None:
        """Frozen inference exponents from the golden network (bit-exact with the device's weights)."""
        self.reference.calibrate(pixels)

    def predict(self, pixels):
        """Frozen-exponent inference on the device once calibrated."""
        return self.trainer.predict(self.reference.inputs(pixels), self.calibrated)

    def logits(self, pixels):
        """Logit mantissas of frozen-exponent inference on the device (after calibrate)."""
        return self.trainer.logits(self.reference.inputs(pixels), self.calibrated)

    def total_stats(self) -> DeviceStats:
        return _add(self.stats_before, self.device.stats)

    def compare_weights(self) -> tuple[bool, str]:
        """Read the device's weights back; (identical, description of the first difference)."""
        params = self.trainer.params()
        for name in self.trainer.program.params:
            got, want = params[name], self.golden.params[name]
            got_q = np.asarray(got.q).reshape(np.shape(want.q))
            if got.exp != want.exp:
                return False, f"{name}: exponent {got.exp} on the device, {want.exp} in the golden model"
            if not np.array_equal(got_q, want.q):
                diff = np.argwhere(got_q != want.q)
                first = tuple(int(i) for i in diff[0])
                return False, (f"{name}: {len(diff)} of {want.q.size} mantissas differ, first at {first}: "
                               f"device {int(got_q[first])}, golden {int(want.q[first])}")
        return True, ""

    # -- checkpoints --
    def device_params(self) -> dict[str, QTensor]:
        """The parameters read back from the device, in the golden model's shapes."""
        return {name: QTensor(np.asarray(t.q).reshape(np.shape(self.golden.params[name].q)), t.exp)
                for name, t in self.trainer.params().items()}

    def counters(self) -> dict:
        return {"steps": self.steps, "samples": self.samples, "first_divergence": self.first_divergence,
                "train_stats": self.train_stats.to_dict(), "total_stats": self.total_stats().to_dict()}

    def reload_weights(self) -> None:
        """Write the golden model's present parameters to the device (weights loaded with --load)."""
        self.device.adopt()
        self.trainer = ProgramTrainer(self.device, self.golden, self.batch)

    def restore(self, device_params: dict[str, QTensor], counters: dict, *, same_session: bool) -> None:
        """Reload the device from a checkpoint (the golden model holds the checkpoint's state already):
        the program, the tensor table and the checkpoint's device weights.  ``same_session``: the device
        statistics so far stay counted (a reload after a reset), else the checkpoint's totals are."""
        self.device.adopt()
        self.trainer = ProgramTrainer(self.device, self.golden, self.batch)
        for name, param in device_params.items():
            golden = self.golden.params[name]
            if param.exp != golden.exp or not np.array_equal(param.q, golden.q):
                shape = self.trainer.program.shapes[name]
                self.device.write_tensor(self.trainer.program.slot(name), QTensor(param.q.reshape(shape), param.exp))
        self.steps, self.samples = counters["steps"], counters["samples"]
        self.first_divergence = counters["first_divergence"]
        self.train_stats = DeviceStats(**counters["train_stats"])
        if not same_session:
            self.stats_before = DeviceStats(**counters["total_stats"])
