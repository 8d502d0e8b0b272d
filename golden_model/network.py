"""The reference network in EOQ integer arithmetic: a Fixup residual MLP.

    a0 = x                                   (B, 64) int8, exp -7
    a1 = SQ(relu(a0 . W1^T))                 fc1
    z  = SQ(relu(a1 . W2^T))                 fc2   (branch, He init)
    r  = SQ(z . W3^T)                        fc3   (branch end, zero init)
    s  = SQ(m * r) + b                       Fixup scalar multiplier and bias
    a2 = SQ(relu(a1 + s))                    residual join
    y  = SQ(a2 . W4^T)                       fc_out (zero init), logits (B, 10)

No batch normalization anywhere.  Every tensor is a QTensor; every weight,
multiplier and bias has a fixed exponent chosen at initialization and is
updated in place by quant.update_weights (or a variant, golden_model/arithmetic.py).  ``train_step`` runs forward, the
host-side loss (loss.py), backward and the update, and can record every
integer tensor entering and leaving every op (a trace).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import ops
from .arithmetic import CORE, Arithmetic, ParameterUpdate, arithmetic_config
from .config import CoreConfig
from .data import DIGITS_FORMAT, InputFormat
from .prng import tensor_key, update_key
from .quant import QTensor, direct_quantize

INPUT_EXP = DIGITS_FORMAT.exp      # the digits input grid
PARAM_IDS = {"fc1": 1, "fc2": 2, "fc3": 3, "scale": 4, "bias": 5, "fc_out": 6}


def weight_exponent(fan_in: int, data_bits: int = 8) -> int:
    """Fixed exponent of a weight tensor: the int8 range covers 4 He standard deviations."""
    return math.ceil(math.log2(4 * math.sqrt(2.0 / fan_in))) - (data_bits - 1)


def quantize_input(pixels: np.ndarray, cfg: CoreConfig, fmt: InputFormat = DIGITS_FORMAT) -> QTensor:
    """Samples (batch, features) to int8 by the format's rule: value pixels * scale on the grid 2**exp,
    saturating (digits: pixels 0..16 / 16 on the grid 2**-7, 16 saturates to 127)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"input must be (batch, features), got shape {pixels.shape}")
    return direct_quantize(pixels * fmt.scale, fmt.exp, cfg)


def fixup_float_init(sizes: dict[str, tuple[int, int]], seed: int) -> dict[str, np.ndarray]:
    """Fixup initialization in float (shared by the int8 model and the fp32 reference).

    He-normal for fc1 and the first branch layer, scaled by L**(-1/(2m-2)) with
    L = 1 residual branch of m = 2 layers (a factor of 1 here); zero for the
    last layer of the branch and for the output layer; multiplier 1, bias 0.
    """
    rng = np.random.default_rng(seed)
    branches, layers_per_branch = 1, 2
    fixup_scale = branches ** (-1.0 / (2 * layers_per_branch - 2))

    def he(shape):
        return rng.normal(0.0, math.sqrt(2.0 / shape[1]), size=shape)

    return {
        "fc1": he(sizes["fc1"]),
        "fc2": he(sizes["fc2"]) * fixup_scale,
        "fc3": np.zeros(sizes["fc3"]),
        "scale": np.ones(1),
        "bias": np.zeros(1),
        "fc_out": np.zeros(sizes["fc_out"]),
    }


def mlp_sizes(inputs: int = 64, hidden: int = 64, classes: int = 10) -> dict[str, tuple[int, int]]:
    return {"fc1": (hidden, inputs), "fc2": (hidden, hidden), "fc3": (hidden, hidden), "fc_out": (classes, hidden)}


@dataclass
class Trace:
    """Every integer tensor entering and leaving every op of one step."""

    records: list[tuple[str, dict[str, QTensor], dict[str, QTensor]]] = field(default_factory=list)

    def add(self, op: str, inputs: dict[str, QTensor], outputs: dict[str, QTensor]) -> None:
        self.records.append((op, inputs, outputs))

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping: '<nn>_<op>/<in|out>/<name>/q' and '.../exp'."""
        flat = {}
        for index, (op, inputs, outputs) in enumerate(self.records):
            for direction, tensors in (("in", inputs), ("out", outputs)):
                for name, t in tensors.items():
                    prefix = f"{index:03d}_{op}/{direction}/{name}"
                    flat[f"{prefix}/q"] = t.q
                    flat[f"{prefix}/exp"] = np.array(t.exp, dtype=np.int64)
        return flat

    def save(self, path) -> None:
        np.savez_compressed(path, **self.arrays())


class IntegerNetwork:
    """What every EOQ int8 network shares: parameters with fixed exponents, the
    stochastic-rounding keys, the in-place update, the training step and
    chunked prediction.  Subclasses define ``forward``, ``backward`` and
    ``check_input``; ``param_ids`` maps parameter names to tensor ids.
    ``arithmetic`` selects a variant of the arithmetic (golden_model/arithmetic.py);
    the default is the core's."""

    param_ids: dict[str, int] = PARAM_IDS

    def __init__(self, cfg: CoreConfig, seed: int, lr_shift: int, init: dict[str, np.ndarray], fan_in, *,
                 arithmetic: Arithmetic = CORE):
        if lr_shift < 0:
            raise ValueError(f"learning rate must be 2**-lr_shift with integer lr_shift >= 0, got {lr_shift}")
        self.arithmetic = arithmetic
        self.cfg = cfg = arithmetic_config(cfg, arithmetic)
        self.lr_shift = lr_shift
        self.stream_seed = (cfg.seed ^ seed) & 0xFFFF_FFFF
        self.params: dict[str, QTensor] = {}
        for name, value in init.items():
            self.params[name] = direct_quantize(value, self.param_exponent(name, value.shape, fan_in), cfg)
        self.step = 0
        self.parameter_update = ParameterUpdate(arithmetic, cfg, self.params)
        self.macs = ops.MacCounter()
        if not hasattr(self, "batch_limit"):
            self.batch_limit = cfg.max_batch     # the largest batch the network runs in (predict's chunks)

    @staticmethod
    def scalar_exponent(name: str) -> int:
        """Multiplier on 2**-6 (range +-2, init 1 = 64); bias on 2**-7 (range +-1)."""
        return {"scale": -6, "bias": -7}[name]

    def param_exponent(self, name: str, shape: tuple[int, ...], fan_in) -> int:
        """A parameter's fixed exponent: the scalars' (by the name's last part, "b1.scale" -> scale),
        else weight_exponent of its fan-in."""
        kind = name.rsplit(".", 1)[-1]
        if kind == "scale":
            return self.arithmetic.multiplier_exp
        return self.scalar_exponent(kind) if kind in ("scale", "bias") else weight_exponent(fan_in(shape))

    def key(self, name: str, update: bool = False) -> int:
        """Key of a parameter's gradient rounding this step; with update=True the key of its
        weight update, update_key(gradient key) (what the fused QUPDATE derives in hardware)."""
        key = tensor_key(self.stream_seed, self.step, self.param_ids[name])
        return update_key(key) if update else key

    def check_input(self, x: QTensor) -> None:
        raise NotImplementedError

    def batch_of(self, x: QTensor) -> int:
        """Samples in an input tensor (rows of a dense input; images of pixel rows in the CNN)."""
        return x.q.shape[0]

    def update(self, grads: dict[str, QTensor], trace: Trace | None = None) -> None:
        """W <- saturate(W - SR(lr * G)) for every parameter, in place."""
        for name, grad in grads.items():
            old = self.params[name]
            new = self.parameter_update(name, old, grad, self.lr_shift, self.key(name, update=True))
            self.params[name] = new
            if trace is not None:
                trace.add(f"{name}_update", {"w": old, "g": grad}, {"w": new})

    def train_step(self, x: QTensor, labels, trace: Trace | None = None) -> float:
        """One SGD step on a batch; returns the batch's mean cross-entropy."""
        t = self.forward(x, trace)
        self.last_logits = t["y"].q       # the step's logits (running train accuracy)
        e_y, loss = self.arithmetic.output_error(t["y"], labels, self.cfg)
        if trace is not None:
            trace.add("host_output_error", {"y": t["y"]}, {"e": e_y})
        self.update(self.backward(t, e_y, trace), trace)
        self.step += 1
        return loss

    def predict(self, x: QTensor) -> np.ndarray:
        """Class predictions (argmax of the int8 logits; ties go to the lower class).

        Runs in chunks of ``batch_limit``, as the core would; not counted in ``macs``.
        """
        self.check_input(x)
        counted, self.macs = self.macs, ops.MacCounter()
        try:
            chunks = [self.forward(QTensor(x.q[i:i + self.batch_limit], x.exp))["y"].q
                      for i in range(0, x.q.shape[0], self.batch_limit)]
        finally:
            self.macs = counted
        return np.argmax(np.concatenate(chunks), axis=1)


class ResMLP(IntegerNetwork):
    """Fixup residual MLP in EOQ int8 arithmetic (see module docstring)."""

    def __init__(self, cfg: CoreConfig, seed: int, lr_shift: int, sizes=None, *, arithmetic: Arithmetic = CORE):
        self.sizes = sizes or mlp_sizes()
        for name, (out_f, in_f) in self.sizes.items():
            if max(out_f, in_f) > cfg.max_features:
                raise ValueError(f"layer {name} is {out_f}x{in_f}; configuration {cfg.name} holds at most {cfg.max_features} features")
        super().__init__(cfg, seed, lr_shift, fixup_float_init(self.sizes, seed), fan_in=lambda shape: shape[1],
                         arithmetic=arithmetic)

    def check_input(self, x: QTensor) -> None:
        if x.q.ndim != 2 or x.q.shape[1] != self.sizes["fc1"][1]:
            raise ValueError(f"input must be (batch, {self.sizes['fc1'][1]}), got {x.q.shape}")

    def forward(self, x: QTensor, trace: Trace | None = None) -> dict[str, QTensor]:
        cfg, p, macs = self.cfg, self.params, self.macs
        self.check_input(x)
        if x.q.shape[0] > cfg.max_batch:
            raise ValueError(f"batch {x.q.shape[0]} exceeds max_batch {cfg.max_batch} of configuration {cfg.name}")
        t = {"a0": x}
        t["a1"] = ops.linear_forward(x, p["fc1"], cfg, relu=True, macs=macs)
        t["z"] = ops.linear_forward(t["a1"], p["fc2"], cfg, relu=True, macs=macs)
        t["r"] = ops.linear_forward(t["z"], p["fc3"], cfg, macs=macs)
        t["sm"] = ops.scale_forward(t["r"], p["scale"], cfg, macs=macs)
        t["s"] = ops.bias_forward(t["sm"], p["bias"], cfg)
        t["a2"] = ops.residual_add(t["a1"], t["s"], cfg, relu=True)
        t["y"] = ops.linear_forward(t["a2"], p["fc_out"], cfg, macs=macs)
        if trace is not None:
            trace.add("fc1_forward", {"x": x, "w": p["fc1"]}, {"y": t["a1"]})
            trace.add("fc2_forward", {"x": t["a1"], "w": p["fc2"]}, {"y": t["z"]})
            trace.add("fc3_forward", {"x": t["z"], "w": p["fc3"]}, {"y": t["r"]})
            trace.add("scale_forward", {"x": t["r"], "m": p["scale"]}, {"y": t["sm"]})
            trace.add("bias_forward", {"x": t["sm"], "b": p["bias"]}, {"y": t["s"]})
            trace.add("residual_forward", {"a": t["a1"], "b": t["s"]}, {"y": t["a2"]})
            trace.add("fc_out_forward", {"x": t["a2"], "w": p["fc_out"]}, {"y": t["y"]})
        return t

    def backward(self, t: dict[str, QTensor], e_y: QTensor, trace: Trace | None = None) -> dict[str, QTensor]:
        """Errors and int8 gradients of every parameter, from the output error e_y."""
        cfg, p, macs = self.cfg, self.params, self.macs
        g = {}
        g["fc_out"] = ops.linear_weight_gradient(e_y, t["a2"], cfg, self.key("fc_out"), macs)
        e_a2 = ops.linear_backward_error(e_y, p["fc_out"], cfg, macs)
        e_join = ops.relu_backward(e_a2, t["a2"])
        g["bias"] = ops.bias_gradient(e_join, cfg, self.key("bias"))
        g["scale"] = ops.scale_gradient(e_join, t["r"], cfg, self.key("scale"), macs)
        e_r = ops.scale_backward_error(e_join, p["scale"], cfg, macs)
        g["fc3"] = ops.linear_weight_gradient(e_r, t["z"], cfg, self.key("fc3"), macs)
        e_z = ops.relu_backward(ops.linear_backward_error(e_r, p["fc3"], cfg, macs), t["z"])
        g["fc2"] = ops.linear_weight_gradient(e_z, t["a1"], cfg, self.key("fc2"), macs)
        e_branch = ops.linear_backward_error(e_z, p["fc2"], cfg, macs)
        e_a1 = ops.relu_backward(ops.error_add(e_join, e_branch, cfg), t["a1"])
        g["fc1"] = ops.linear_weight_gradient(e_a1, t["a0"], cfg, self.key("fc1"), macs)
        if trace is not None:
            trace.add("fc_out_gradient", {"e": e_y, "x": t["a2"]}, {"g": g["fc_out"]})
            trace.add("fc_out_error", {"e": e_y, "w": p["fc_out"]}, {"e": e_a2})
            trace.add("join_relu_backward", {"e": e_a2, "a": t["a2"]}, {"e": e_join})
            trace.add("bias_gradient", {"e": e_join}, {"g": g["bias"]})
            trace.add("scale_gradient", {"e": e_join, "x": t["r"]}, {"g": g["scale"]})
            trace.add("scale_error", {"e": e_join, "m": p["scale"]}, {"e": e_r})
            trace.add("fc3_gradient", {"e": e_r, "x": t["z"]}, {"g": g["fc3"]})
            trace.add("fc3_error_relu", {"e": e_r, "w": p["fc3"], "a": t["z"]}, {"e": e_z})
            trace.add("fc2_gradient", {"e": e_z, "x": t["a1"]}, {"g": g["fc2"]})
            trace.add("fc2_error", {"e": e_z, "w": p["fc2"]}, {"e": e_branch})
            trace.add("skip_join_relu_backward", {"a": e_join, "b": e_branch, "act": t["a1"]}, {"e": e_a1})
            trace.add("fc1_gradient", {"e": e_a1, "x": t["a0"]}, {"g": g["fc1"]})
        return g
