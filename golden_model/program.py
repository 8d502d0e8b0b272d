"""The reference network's training step as core programs.

:class:`MlpLayout` places every tensor of network.ResMLP in the tensor table
and TMEM; :func:`forward_program` and :func:`backward_program` spell out the
step in golden_model.isa instructions; :class:`ProgramTrainer` drives any
device with the host flow (write x, run forward, read logits, host loss,
write error, run backward).  With a golden_model.machine.Machine as device
it reproduces ResMLP.train_step bit for bit (tests/test_machine.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import isa
from .config import CoreConfig
from .loss import output_error
from .machine import words_per_row
from .network import PARAM_IDS, UPDATE_ID_OFFSET, ResMLP
from .prng import tensor_key
from .quant import QTensor

PARAMS = ("fc1", "fc2", "fc3", "scale", "bias", "fc_out")
ACTIVATIONS = ("x", "a1", "z", "r", "sm", "s", "a2", "y")
ERRORS = ("e_y", "e_a2", "e_join", "e_r", "e_z", "e_branch", "e_a1", "tmp")
GRADIENTS = ("g_fc", "g_fc_out", "g_scale", "g_bias")
SLOTS = {name: slot for slot, name in enumerate(PARAMS + ACTIVATIONS + ERRORS + GRADIENTS)}
GRADIENT_SLOT = {"fc1": "g_fc", "fc2": "g_fc", "fc3": "g_fc", "fc_out": "g_fc_out",
                 "scale": "g_scale", "bias": "g_bias"}


@dataclass(frozen=True)
class TensorPlace:
    slot: int
    base: int
    rows: int
    cols: int


class MlpLayout:
    """Tensor table and TMEM placement of the residual MLP for one batch size."""

    def __init__(self, cfg: CoreConfig, batch: int, sizes: dict[str, tuple[int, int]]):
        if not 1 <= batch <= cfg.max_batch:
            raise ValueError(f"batch {batch} outside [1, {cfg.max_batch}] of configuration {cfg.name}")
        hidden, inputs = sizes["fc1"]
        classes = sizes["fc_out"][0]
        shapes = {"fc1": sizes["fc1"], "fc2": sizes["fc2"], "fc3": sizes["fc3"], "fc_out": sizes["fc_out"],
                  "scale": (1, 1), "bias": (1, 1), "x": (batch, inputs), "y": (batch, classes),
                  "e_y": (batch, classes), "g_fc": sizes["fc2"], "g_fc_out": sizes["fc_out"],
                  "g_scale": (1, 1), "g_bias": (1, 1)}
        for name in ACTIVATIONS + ERRORS:
            shapes.setdefault(name, (batch, hidden))
        self.cfg, self.batch, self.shapes = cfg, batch, shapes
        self.places: dict[str, TensorPlace] = {}
        base = 0
        for name, slot in SLOTS.items():
            rows, cols = shapes[name]
            if name == "g_fc_out":
                place_base = self.places["g_fc"].base  # gradients are consumed at once: share words
            else:
                place_base, base = base, base + rows * words_per_row(cols, cfg.lanes)
            self.places[name] = TensorPlace(slot, place_base, rows, cols)
        if base > cfg.tmem_words:
            raise ValueError(f"the network needs {base} TMEM words at batch {batch}; "
                             f"configuration {cfg.name} has {cfg.tmem_words}")
        if len(SLOTS) > cfg.tensor_slots:
            raise ValueError(f"the network needs {len(SLOTS)} tensor slots; configuration has {cfg.tensor_slots}")
        self.words_used = base

    def slot(self, name: str) -> int:
        return self.places[name].slot


def forward_program(cfg: CoreConfig) -> list[isa.Instruction]:
    """Forward pass: x -> logits y (the host reads y when it halts)."""
    s = SLOTS
    return [
        isa.matmul(s["x"], s["fc1"]), isa.quant(s["a1"], relu=True),
        isa.matmul(s["a1"], s["fc2"]), isa.quant(s["z"], relu=True),
        isa.matmul(s["z"], s["fc3"]), isa.quant(s["r"]),
        isa.scale(s["r"], s["scale"]), isa.quant(s["sm"]),
        isa.add(s["sm"], s["bias"]), isa.quant(s["s"]),
        isa.add(s["a1"], s["s"]), isa.quant(s["a2"], relu=True),
        isa.matmul(s["a2"], s["fc_out"]), isa.quant(s["y"]),
        isa.halt(),
    ]


def step_keys(stream_seed: int, step: int) -> dict[str, tuple[int, int]]:
    """(gradient key, update key) per parameter, as ResMLP.key computes them."""
    return {name: (tensor_key(stream_seed, step, PARAM_IDS[name]),
                   tensor_key(stream_seed, step, PARAM_IDS[name] + UPDATE_ID_OFFSET)) for name in PARAMS}


def backward_program(cfg: CoreConfig, keys: dict[str, tuple[int, int]], lr_shift: int) -> list[isa.Instruction]:
    """Backward pass and in-place updates, from the host-written output error e_y."""
    s = SLOTS
    grad_sr = cfg.grad_rounding == "stochastic"
    upd_sr = cfg.update_rounding == "stochastic"

    def gradient_then_update(name: str, product: list[isa.Instruction]) -> list[isa.Instruction]:
        g = s[GRADIENT_SLOT[name]]
        return product + [isa.quant(g, stochastic=grad_sr, key=keys[name][0]),
                          isa.update(s[name], g, lr_shift, stochastic=upd_sr, key=keys[name][1])]

    return [
        # output layer: gradient first, error with the old weights, then the update
        isa.matmul(s["e_y"], s["a2"], transpose_a=True, transpose_b=True),
        isa.quant(s["g_fc_out"], stochastic=grad_sr, key=keys["fc_out"][0]),
        isa.matmul(s["e_y"], s["fc_out"], transpose_b=True), isa.quant(s["e_a2"]),
        isa.update(s["fc_out"], s["g_fc_out"], lr_shift, stochastic=upd_sr, key=keys["fc_out"][1]),
        isa.mask(s["e_join"], s["e_a2"], s["a2"]),
        # Fixup scalar bias and multiplier
        *gradient_then_update("bias", [isa.total(s["e_join"])]),
        isa.dot(s["e_join"], s["r"]),
        isa.quant(s["g_scale"], stochastic=grad_sr, key=keys["scale"][0]),
        isa.scale(s["e_join"], s["scale"]), isa.quant(s["e_r"]),
        isa.update(s["scale"], s["g_scale"], lr_shift, stochastic=upd_sr, key=keys["scale"][1]),
        # branch end fc3
        isa.matmul(s["e_r"], s["z"], transpose_a=True, transpose_b=True),
        isa.quant(s["g_fc"], stochastic=grad_sr, key=keys["fc3"][0]),
        isa.matmul(s["e_r"], s["fc3"], transpose_b=True), isa.quant(s["tmp"]),
        isa.update(s["fc3"], s["g_fc"], lr_shift, stochastic=upd_sr, key=keys["fc3"][1]),
        isa.mask(s["e_z"], s["tmp"], s["z"]),
        # branch start fc2
        isa.matmul(s["e_z"], s["a1"], transpose_a=True, transpose_b=True),
        isa.quant(s["g_fc"], stochastic=grad_sr, key=keys["fc2"][0]),
        isa.matmul(s["e_z"], s["fc2"], transpose_b=True), isa.quant(s["e_branch"]),
        isa.update(s["fc2"], s["g_fc"], lr_shift, stochastic=upd_sr, key=keys["fc2"][1]),
        # residual join and fc1
        isa.add(s["e_join"], s["e_branch"]), isa.quant(s["tmp"]),
        isa.mask(s["e_a1"], s["tmp"], s["a1"]),
        *gradient_then_update("fc1", [isa.matmul(s["e_a1"], s["x"], transpose_a=True, transpose_b=True)]),
        isa.halt(),
    ]


def encode(program: list[isa.Instruction]) -> list[int]:
    return [inst.encode() for inst in program]


class ProgramTrainer:
    """Host flow of a training step over a device exposing the Machine API.

    The device needs: set_tensor, write_tensor, read_tensor, load_program, run.
    """

    def __init__(self, device, model: ResMLP, batch: int):
        self.device, self.cfg = device, model.cfg
        self.model_sizes = model.sizes
        self.stream_seed = model.stream_seed
        self.lr_shift = model.lr_shift
        self.step = model.step
        self.batch = None
        forward = encode(forward_program(self.cfg))
        self.backward_pc = len(forward)
        self.device.load_program(forward, 0)
        self.configure(batch)
        for name in PARAMS:
            param = model.params[name]
            self.device.write_tensor(self.layout.slot(name), QTensor(param.q.reshape(self.layout.shapes[name]), param.exp))

    def configure(self, batch: int) -> None:
        """Write the tensor table for a batch size (weights keep their words)."""
        if batch == self.batch:
            return
        self.layout = MlpLayout(self.cfg, batch, self.model_sizes)
        # A device may offer read_exponent (only the table entry: no TMEM words over the link).
        read_exp = getattr(self.device, "read_exponent", None) or (lambda slot: self.device.read_tensor(slot).exp)
        for name, place in self.layout.places.items():
            exp = read_exp(place.slot) if self.batch is not None and name in PARAMS else 0
            self.device.set_tensor(place.slot, place.base, place.rows, place.cols, exp)
        self.batch = batch

    def forward(self, x: QTensor) -> QTensor:
        self.configure(x.q.shape[0])
        self.device.write_tensor(self.layout.slot("x"), x)
        self.device.run(0)
        return self.device.read_tensor(self.layout.slot("y"))

    def train_step(self, x: QTensor, labels) -> float:
        logits = self.forward(x)
        self.last_logits = logits.q       # the step's logits (running train accuracy)
        error, loss = output_error(logits, labels, self.cfg)
        self.device.write_tensor(self.layout.slot("e_y"), error)
        program = backward_program(self.cfg, step_keys(self.stream_seed, self.step), self.lr_shift)
        self.device.load_program(encode(program), self.backward_pc)
        self.device.run(self.backward_pc)
        self.step += 1
        return loss

    def predict(self, x: QTensor) -> np.ndarray:
        chunks = [self.forward(QTensor(x.q[i:i + self.cfg.max_batch], x.exp)).q
                  for i in range(0, x.q.shape[0], self.cfg.max_batch)]
        return np.argmax(np.concatenate(chunks), axis=1)

    def params(self) -> dict[str, QTensor]:
        """Parameters read back, in ResMLP's shapes (scalars as (1,))."""
        params = {}
        for name in PARAMS:
            t = self.device.read_tensor(self.layout.slot(name))
            params[name] = QTensor(t.q.reshape(-1) if t.q.shape == (1, 1) else t.q, t.exp)
        return params
