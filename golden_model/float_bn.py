"""float32 references with batch normalization: the networks EOQ replaces by Fixup.

The same residual MLP and ResNet as the Fixup references (float_ref.py,
cnn.FloatResCNN), with a batch normalization after every linear layer or
convolution in place of Fixup's scalars (multiplier and bias) and its
zero-initialized branch ends:

    MLP:  a1 = relu(BN1(x . W1^T)); z = relu(BN2(a1 . W2^T)); r = BN3(z . W3^T)
          a2 = relu(a1 + r);  y = a2 . W4^T
    CNN:  a0 = relu(BN(conv(x))); per block z = relu(BN(conv1(a))), r = BN(conv2(z)),
          sc = a or BN(proj(a)), a' = relu(sc + r); the same head.

Training normalizes with the batch's statistics (mean and biased variance over
the batch, and over the pixels for a convolution: per channel of the pixel
rows); the running statistics (momentum ``MOMENTUM``, unbiased variance) are
what prediction uses.  A batch of one sample leaves a dense layer's batch
variance at zero, which is the failure EOQ's small-batch claim is about.

Initialization: He-normal for every weight feeding a BN (from the Fixup draws
where Fixup draws He, unscaled; Fixup's zero-initialized weights are drawn He
from a generator seeded ``seed + BN_SEED_OFFSET``), gamma 1, beta 0; the
output layer zero as in Fixup.  Plain SGD at 2**-lr_shift on every parameter
(gamma and beta included), the same data order.
"""

from __future__ import annotations

import math

import numpy as np

from .cnn import (ResNetSpec, _float_col2im, _float_im2col, fixup_float_init as cnn_fixup_init, float_head_pool,
                  float_predict, image_rows)
from .data import DIGITS_FORMAT, InputFormat
from .float_ref import FloatNetwork
from .loss import check_labels, cross_entropy, softmax
from .network import fixup_float_init, mlp_sizes
from .ops import MacCounter

EPS = 1e-5
MOMENTUM = 0.1
BN_SEED_OFFSET = 1_000_003


def batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, stats: dict, training: bool):
    """y = gamma * (x - mean) / sqrt(var + EPS) + beta per channel (axis 1) of x (N, C).

    training: the batch's mean and biased variance; stats' running mean and
    unbiased variance move by MOMENTUM towards them.  Otherwise the running
    statistics.  Returns y and the cache (x_hat, 1/std) for :func:`batch_norm_backward`.
    """
    if training:
        mean, var = x.mean(axis=0), x.var(axis=0)
        n = x.shape[0]
        unbiased = var * n / (n - 1) if n > 1 else var
        stats["mean"] = ((1 - MOMENTUM) * stats["mean"] + MOMENTUM * mean).astype(x.dtype)
        stats["var"] = ((1 - MOMENTUM) * stats["var"] + MOMENTUM * unbiased).astype(x.dtype)
    else:
        mean, var = stats["mean"], stats["var"]
    inv_std = (1.0 / np.sqrt(var + EPS)).astype(x.dtype)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, inv_std)


def batch_norm_backward(dy: np.ndarray, gamma: np.ndarray, cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dgamma, dbeta) of training-mode batch normalization (batch statistics)."""
    x_hat, inv_std = cache
    n = dy.shape[0]
    dgamma = (dy * x_hat).sum(axis=0)
    dbeta = dy.sum(axis=0)
    dx = gamma * inv_std / n * (n * dy - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


class BatchNormNetwork(FloatNetwork):
    """What the BN references share: BN parameters and running statistics per normalized layer,
    training-mode steps and inference-mode prediction."""

    def _add_bn(self, name: str, channels: int) -> None:
        self.params[f"{name}.gamma"] = np.ones(channels, dtype=np.float32)
        self.params[f"{name}.beta"] = np.zeros(channels, dtype=np.float32)
        self.stats[name] = {"mean": np.zeros(channels, dtype=np.float32), "var": np.ones(channels, dtype=np.float32)}

    def _bn(self, name: str, x: np.ndarray, t: dict, training: bool) -> np.ndarray:
        y, t[f"{name}.cache"] = batch_norm(x, self.params[f"{name}.gamma"], self.params[f"{name}.beta"],
                                           self.stats[name], training)
        return y

    def _bn_back(self, name: str, dy: np.ndarray, t: dict, g: dict) -> np.ndarray:
        dx, g[f"{name}.gamma"], g[f"{name}.beta"] = batch_norm_backward(dy, self.params[f"{name}.gamma"],
                                                                        t[f"{name}.cache"])
        return dx

    def _output_error(self, t: dict, labels, batch: int) -> tuple[float, np.ndarray]:
        self.last_logits = t["y"]
        labels = check_labels(labels, batch, t["y"].shape[1])
        probs = softmax(t["y"].astype(np.float64))
        e_y = probs.copy()
        e_y[np.arange(batch), labels] -= 1.0
        return cross_entropy(probs, labels), (e_y / batch).astype(t["y"].dtype)


class FloatBNResMLP(BatchNormNetwork):
    """The residual MLP with batch normalization (module docstring)."""

    def __init__(self, seed: int, lr_shift: int, sizes=None):
        self.sizes = sizes = sizes or mlp_sizes()
        self.lr_shift = lr_shift
        fixup = fixup_float_init(sizes, seed)
        extra = np.random.default_rng(seed + BN_SEED_OFFSET)
        init = {"fc1": fixup["fc1"], "fc2": fixup["fc2"], "fc3": _he(extra, sizes["fc3"], sizes["fc3"][1]),
                "fc_out": fixup["fc_out"]}
        self.params = {k: v.astype(np.float32) for k, v in init.items()}
        self.stats: dict[str, dict] = {}
        for name in ("fc1", "fc2", "fc3"):
            self._add_bn(f"bn_{name}", sizes[name][0])
        self.macs = MacCounter()

    @staticmethod
    def input(pixels: np.ndarray, fmt: InputFormat = DIGITS_FORMAT) -> np.ndarray:
        return (np.asarray(pixels) * fmt.scale).astype(np.float32)

    def forward(self, x: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
        p = self.params
        t = {"a0": x}
        t["a1"] = np.maximum(self._bn("bn_fc1", x @ p["fc1"].T, t, training), 0)
        t["z"] = np.maximum(self._bn("bn_fc2", t["a1"] @ p["fc2"].T, t, training), 0)
        t["r"] = self._bn("bn_fc3", t["z"] @ p["fc3"].T, t, training)
        t["a2"] = np.maximum(t["a1"] + t["r"], 0)
        t["y"] = t["a2"] @ p["fc_out"].T
        return t

    def loss_and_grads(self, x: np.ndarray, labels) -> tuple[float, dict[str, np.ndarray]]:
        p = self.params
        t = self.forward(x, training=True)
        loss, e_y = self._output_error(t, labels, x.shape[0])
        g = {"fc_out": e_y.T @ t["a2"]}
        e_join = (e_y @ p["fc_out"]) * (t["a2"] > 0)
        e_r = self._bn_back("bn_fc3", e_join, t, g)
        g["fc3"] = e_r.T @ t["z"]
        e_z = self._bn_back("bn_fc2", (e_r @ p["fc3"]) * (t["z"] > 0), t, g)
        g["fc2"] = e_z.T @ t["a1"]
        e_a1 = self._bn_back("bn_fc1", (e_join + e_z @ p["fc2"]) * (t["a1"] > 0), t, g)
        g["fc1"] = e_a1.T @ x
        return loss, g


class FloatBNResCNN(BatchNormNetwork):
    """The ResNet with batch normalization after every convolution (module docstring); pixel rows
    in, per-channel statistics over batch and pixels."""

    def __init__(self, seed: int, lr_shift: int, spec: ResNetSpec | None = None):
        self.spec = spec = spec or ResNetSpec()
        self.lr_shift = lr_shift
        self.layers = {layer.name: layer for layer in spec.convs}
        fixup = cnn_fixup_init(spec, seed)
        extra = np.random.default_rng(seed + BN_SEED_OFFSET)
        init = {"stem": fixup["stem"], "fc": fixup["fc"]}
        self.stats = {}
        self.params = {}
        for b in spec.blocks:
            init[f"{b.name}.conv1"] = fixup[f"{b.name}.conv1"] * len(spec.blocks) ** 0.5   # undo Fixup's scaling
            w2 = fixup[f"{b.name}.conv2"]
            init[f"{b.name}.conv2"] = _he(extra, w2.shape, b.conv2.fan_in)
            if b.proj:
                init[f"{b.name}.proj"] = fixup[f"{b.name}.proj"]
        for name, value in init.items():
            self.params[name] = value.reshape(value.shape[0], -1).astype(np.float32)
            if name != "fc":
                self._add_bn(f"bn_{name}", value.shape[0])
        self.macs = MacCounter()

    def input(self, pixels: np.ndarray, fmt: InputFormat = DIGITS_FORMAT) -> np.ndarray:
        return (image_rows(pixels, self.spec) * fmt.scale).astype(np.float32)

    def _conv(self, name: str, x: np.ndarray, batch: int) -> np.ndarray:
        return _float_im2col(x, self.layers[name].geometry(batch)) @ self.params[name].T

    def _conv_bn(self, name: str, x: np.ndarray, batch: int, t: dict, training: bool) -> np.ndarray:
        return self._bn(f"bn_{name}", self._conv(name, x, batch), t, training)

    def forward(self, x: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
        s = self.spec
        batch = x.shape[0] // (s.height * s.width)
        t = {"x": x}
        t["a0"] = np.maximum(self._conv_bn("stem", x, batch, t, training), 0)
        a = "a0"
        for b in s.blocks:
            n = b.name
            t[f"{n}.z"] = np.maximum(self._conv_bn(f"{n}.conv1", t[a], batch, t, training), 0)
            t[f"{n}.r"] = self._conv_bn(f"{n}.conv2", t[f"{n}.z"], batch, t, training)
            shortcut = self._conv_bn(f"{n}.proj", t[a], batch, t, training) if b.proj else t[a]
            t[f"{n}.out"] = np.maximum(shortcut + t[f"{n}.r"], 0)
            a = f"{n}.out"
        pooled = float_head_pool(t, a, s, batch)
        t["pooled"] = pooled
        t["y"] = self._conv("fc", t[pooled], batch)
        return t

    def predict(self, x: np.ndarray) -> np.ndarray:
        return float_predict(self.forward, x, self.spec)

    def loss_and_grads(self, x: np.ndarray, labels) -> tuple[float, dict[str, np.ndarray]]:
        p, s = self.params, self.spec
        t = self.forward(x, training=True)
        batch = t["y"].shape[0]
        loss, e_y = self._output_error(t, labels, batch)
        last = t[f"{s.blocks[-1].name}.out"]

        def conv_error(name, e):
            return _float_col2im(e @ p[name], self.layers[name].geometry(batch), self.layers[name].in_channels)

        def conv_grad(name, e, inp):
            return e.T @ _float_im2col(inp, self.layers[name].geometry(batch))

        g = {"fc": conv_grad("fc", e_y, t[t["pooled"]])}
        if t["pooled"] == "g":
            (h, w), (kh, kw) = s.final_size, s.pool_window
            e_g = conv_error("fc", e_y).reshape(batch, h // kh, 1, w // kw, 1, -1) / (kh * kw)
            e_out = np.broadcast_to(e_g, (batch, h // kh, kh, w // kw, kw, e_g.shape[-1])).reshape(last.shape)
            e_out = e_out * (last > 0)
        else:
            e_out = conv_error("fc", e_y) * (last > 0)
        for index in range(len(s.blocks) - 1, -1, -1):
            b, n = s.blocks[index], s.blocks[index].name
            a = "a0" if index == 0 else f"{s.blocks[index - 1].name}.out"
            e_r = self._bn_back(f"bn_{n}.conv2", e_out, t, g)
            g[f"{n}.conv2"] = conv_grad(f"{n}.conv2", e_r, t[f"{n}.z"])
            e_z = self._bn_back(f"bn_{n}.conv1", conv_error(f"{n}.conv2", e_r) * (t[f"{n}.z"] > 0), t, g)
            g[f"{n}.conv1"] = conv_grad(f"{n}.conv1", e_z, t[a])
            shortcut = e_out
            if b.proj:
                e_p = self._bn_back(f"bn_{n}.proj", e_out, t, g)
                g[f"{n}.proj"] = conv_grad(f"{n}.proj", e_p, t[a])
                shortcut = conv_error(f"{n}.proj", e_p)
            e_out = (shortcut + conv_error(f"{n}.conv1", e_z)) * (t[a] > 0)
        e_stem = self._bn_back("bn_stem", e_out, t, g)
        g["stem"] = conv_grad("stem", e_stem, x)
        return loss, g
