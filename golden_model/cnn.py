"""The small Fixup CNN option for the 8x8 digits, in EOQ integer arithmetic and in float32.

    a0 = x.reshape(B, 1, 8, 8)               int8, exp -7 (network.quantize_input)
    a1 = SQ(relu(conv3x3(a0, W1)))           conv1  1 -> C, pad 1
    z  = SQ(relu(conv3x3(a1, W2)))           conv2  C -> C  (branch, He init)
    r  = SQ(conv3x3(z, W3))                  conv3  C -> C  (branch end, zero init)
    s  = SQ(m * r) + b                       Fixup scalar multiplier and bias
    a2 = SQ(relu(a1 + s))                    residual join
    p  = SQ(sum of each P x P window)        average pooling, exp - log2(P*P)
    f  = p.reshape(B, C * (8/P)**2)          flatten (channel-major)
    y  = SQ(f . W4^T)                        fc_out (zero init), logits (B, 10)

The convolutions are the im2col ops of conv.py (same integer matmul, check_acc
and SQ as the dense ops); scale, bias, residual, ReLU and fc_out are the ops.py
ops used by network.ResMLP, in the same order, with the same stochastic keys
(prng.tensor_key with the same tensor ids: conv1..conv3 take fc1..fc3's ids).

Pooling is a plain average (integer sum of the P*P int8 values, the division
folded into the exponent, one SQ) rather than a stride-2 convolution: it adds
no parameters and its backward pass is exact (the int8 error is replicated
over the window at exponent - log2(P*P), no quantizer).

Sizes and the hardware limits: the default is C = 4 channels and P = 2, so
fc_out has 4 * 4 * 4 = 64 inputs = cfg.max_features of the default core (with
C = 8, P = 2 it would need 128 and is rejected; C = 8, P = 4 gives 32).  The
channel counts and fc_out's in-features are checked against cfg.max_features
and the batch against cfg.max_batch.  Beyond that the CNN does not claim to
fit the hardware's buffers: a conv layer's im2col row is C*9 (36, or 72 with
C = 8) long and one image's activation is C*64 values, which the MLP-shaped
buffers do not hold.  The MLP (network.ResMLP) is the hardware reference
network; the CNN is a golden-model / fp32 option.  Accumulator widths are
still checked on every product (the longest sum is a conv weight gradient
over B*64 pixels = 1024 terms at max_batch 16).

Learning rate: at batch 16 the CNN trains best at 2**-2 (lr_shift 2), not the
MLP's default 2**-4; pass --lr-shift 2 (measured: EOQ int8 0.973 vs fp32 0.976
test accuracy, mean of seeds 0-2, 20 epochs, batch 16).
"""

from __future__ import annotations

import numpy as np

from . import ops
from .config import CoreConfig
from .conv import (avgpool_backward_error, avgpool_forward, col2im, conv2d_backward_error,
                   conv2d_forward, conv2d_weight_gradient, im2col)
from .float_ref import FloatNetwork
from .loss import check_labels, cross_entropy, softmax
from .network import IntegerNetwork, Trace, fixup_float_init
from .quant import QTensor

IMAGE = 8
KERNEL = 3
PAD = 1
CLASSES = 10
PARAM_IDS = {"conv1": 1, "conv2": 2, "conv3": 3, "scale": 4, "bias": 5, "fc_out": 6}
CONV_LAYERS = ("conv1", "conv2", "conv3")


def cnn_sizes(channels: int = 4, pool: int = 2, classes: int = CLASSES) -> dict[str, tuple[int, ...]]:
    """Parameter shapes: convs (O, C, 3, 3), fc_out (classes, channels * (8 / pool)**2)."""
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if pool < 1 or IMAGE % pool:
        raise ValueError(f"pool must divide the image size {IMAGE}, got {pool}")
    pooled = (IMAGE // pool) ** 2
    return {
        "conv1": (channels, 1, KERNEL, KERNEL),
        "conv2": (channels, channels, KERNEL, KERNEL),
        "conv3": (channels, channels, KERNEL, KERNEL),
        "fc_out": (classes, channels * pooled),
    }


def fan_in(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[1:]))


def cnn_float_init(sizes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Fixup initialization (network.fixup_float_init on the im2col weight matrices).

    Each conv weight is drawn as its (O, C*K*K) matrix (He-normal with fan-in
    C*K*K, the last conv of the branch zero) and reshaped to (O, C, K, K);
    shared by the int8 model and the float32 reference, same seed -> same init.
    """
    as_matrix = {"fc1": "conv1", "fc2": "conv2", "fc3": "conv3", "fc_out": "fc_out"}
    flat = {mlp: (sizes[name][0], fan_in(sizes[name])) for mlp, name in as_matrix.items()}
    init = fixup_float_init(flat, seed)
    out = {}
    for mlp, name in as_matrix.items():
        out[name] = init[mlp].reshape(sizes[name])
    out["scale"], out["bias"] = init["scale"], init["bias"]
    return out


def _check_input(x_shape: tuple[int, ...], what: str = "input x") -> None:
    if len(x_shape) != 2 or x_shape[1] != IMAGE * IMAGE:
        raise ValueError(f"{what} must be (batch, {IMAGE * IMAGE}) pixels of 8x8 images, got {tuple(x_shape)}")


class ResCNN(IntegerNetwork):
    """Fixup residual CNN in EOQ int8 arithmetic (see module docstring); interface of network.ResMLP."""

    param_ids = PARAM_IDS

    def __init__(self, cfg: CoreConfig, seed: int, lr_shift: int, channels: int = 4, pool: int = 2):
        self.pool = pool
        self.sizes = cnn_sizes(channels, pool)
        if channels > cfg.max_features:
            raise ValueError(f"{channels} channels exceed configuration {cfg.name}'s max_features {cfg.max_features}")
        if self.sizes["fc_out"][1] > cfg.max_features:
            raise ValueError(f"fc_out has {self.sizes['fc_out'][1]} inputs ({channels} channels x "
                             f"{IMAGE // pool}x{IMAGE // pool}); configuration {cfg.name} holds at most "
                             f"{cfg.max_features} features: use fewer channels or a larger pool")
        super().__init__(cfg, seed, lr_shift, cnn_float_init(self.sizes, seed), fan_in=fan_in)

    def check_input(self, x: QTensor) -> None:
        _check_input(x.q.shape)

    def forward(self, x: QTensor, trace: Trace | None = None) -> dict[str, QTensor]:
        cfg, p, macs = self.cfg, self.params, self.macs
        _check_input(x.q.shape)
        if x.q.shape[0] > cfg.max_batch:
            raise ValueError(f"batch {x.q.shape[0]} exceeds max_batch {cfg.max_batch} of configuration {cfg.name}")
        batch = x.q.shape[0]
        t = {"x": x, "a0": QTensor(x.q.reshape(batch, 1, IMAGE, IMAGE), x.exp)}
        t["a1"] = conv2d_forward(t["a0"], p["conv1"], cfg, PAD, relu=True, macs=macs)
        t["z"] = conv2d_forward(t["a1"], p["conv2"], cfg, PAD, relu=True, macs=macs)
        t["r"] = conv2d_forward(t["z"], p["conv3"], cfg, PAD, macs=macs)
        t["sm"] = ops.scale_forward(t["r"], p["scale"], cfg, macs=macs)
        t["s"] = ops.bias_forward(t["sm"], p["bias"], cfg)
        t["a2"] = ops.residual_add(t["a1"], t["s"], cfg, relu=True)
        t["p"] = avgpool_forward(t["a2"], cfg, self.pool)
        t["f"] = QTensor(t["p"].q.reshape(batch, -1), t["p"].exp)
        t["y"] = ops.linear_forward(t["f"], p["fc_out"], cfg, macs=macs)
        if trace is not None:
            trace.add("conv1_forward", {"x": t["a0"], "w": p["conv1"]}, {"y": t["a1"]})
            trace.add("conv2_forward", {"x": t["a1"], "w": p["conv2"]}, {"y": t["z"]})
            trace.add("conv3_forward", {"x": t["z"], "w": p["conv3"]}, {"y": t["r"]})
            trace.add("scale_forward", {"x": t["r"], "m": p["scale"]}, {"y": t["sm"]})
            trace.add("bias_forward", {"x": t["sm"], "b": p["bias"]}, {"y": t["s"]})
            trace.add("residual_forward", {"a": t["a1"], "b": t["s"]}, {"y": t["a2"]})
            trace.add("avgpool_forward", {"x": t["a2"]}, {"y": t["p"]})
            trace.add("fc_out_forward", {"x": t["f"], "w": p["fc_out"]}, {"y": t["y"]})
        return t

    def backward(self, t: dict[str, QTensor], e_y: QTensor, trace: Trace | None = None) -> dict[str, QTensor]:
        """Errors and int8 gradients of every parameter, from the output error e_y."""
        cfg, p, macs = self.cfg, self.params, self.macs
        g = {}
        g["fc_out"] = ops.linear_weight_gradient(e_y, t["f"], cfg, self.key("fc_out"), macs)
        e_f = ops.linear_backward_error(e_y, p["fc_out"], cfg, macs)
        e_p = QTensor(e_f.q.reshape(t["p"].q.shape), e_f.exp)
        e_a2 = avgpool_backward_error(e_p, self.pool)
        e_join = ops.relu_backward(e_a2, t["a2"])
        g["bias"] = ops.bias_gradient(e_join, cfg, self.key("bias"))
        g["scale"] = ops.scale_gradient(e_join, t["r"], cfg, self.key("scale"), macs)
        e_r = ops.scale_backward_error(e_join, p["scale"], cfg, macs)
        g["conv3"] = conv2d_weight_gradient(e_r, t["z"], KERNEL, cfg, self.key("conv3"), PAD, macs)
        e_z = ops.relu_backward(conv2d_backward_error(e_r, p["conv3"], t["z"].q.shape, cfg, PAD, macs), t["z"])
        g["conv2"] = conv2d_weight_gradient(e_z, t["a1"], KERNEL, cfg, self.key("conv2"), PAD, macs)
        e_branch = conv2d_backward_error(e_z, p["conv2"], t["a1"].q.shape, cfg, PAD, macs)
        e_a1 = ops.relu_backward(ops.residual_add(e_join, e_branch, cfg), t["a1"])
        g["conv1"] = conv2d_weight_gradient(e_a1, t["a0"], KERNEL, cfg, self.key("conv1"), PAD, macs)
        if trace is not None:
            trace.add("fc_out_gradient", {"e": e_y, "x": t["f"]}, {"g": g["fc_out"]})
            trace.add("fc_out_error", {"e": e_y, "w": p["fc_out"]}, {"e": e_f})
            trace.add("avgpool_error", {"e": e_p}, {"e": e_a2})
            trace.add("join_relu_backward", {"e": e_a2, "a": t["a2"]}, {"e": e_join})
            trace.add("bias_gradient", {"e": e_join}, {"g": g["bias"]})
            trace.add("scale_gradient", {"e": e_join, "x": t["r"]}, {"g": g["scale"]})
            trace.add("scale_error", {"e": e_join, "m": p["scale"]}, {"e": e_r})
            trace.add("conv3_gradient", {"e": e_r, "x": t["z"]}, {"g": g["conv3"]})
            trace.add("conv3_error_relu", {"e": e_r, "w": p["conv3"], "a": t["z"]}, {"e": e_z})
            trace.add("conv2_gradient", {"e": e_z, "x": t["a1"]}, {"g": g["conv2"]})
            trace.add("conv2_error", {"e": e_z, "w": p["conv2"]}, {"e": e_branch})
            trace.add("skip_join_relu_backward", {"a": e_join, "b": e_branch, "act": t["a1"]}, {"e": e_a1})
            trace.add("conv1_gradient", {"e": e_a1, "x": t["a0"]}, {"g": g["conv1"]})
        return g


def _conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Float 3x3 'same' convolution (cross-correlation) via im2col: (B, C, H, W) -> (B, O, H, W)."""
    b, _, h, wd = x.shape
    y = im2col(x, KERNEL, PAD) @ w.reshape(w.shape[0], -1).T
    return y.reshape(b, h, wd, w.shape[0]).transpose(0, 3, 1, 2)


def _rows(e: np.ndarray) -> np.ndarray:
    return e.transpose(0, 2, 3, 1).reshape(-1, e.shape[1])


def _conv_error(e: np.ndarray, w: np.ndarray, shape) -> np.ndarray:
    return col2im(_rows(e) @ w.reshape(w.shape[0], -1), tuple(shape), KERNEL, PAD)


def _conv_grad(e: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (_rows(e).T @ im2col(x, KERNEL, PAD)).reshape(e.shape[1], x.shape[1], KERNEL, KERNEL)


class FloatResCNN(FloatNetwork):
    """float32 reference of ResCNN: same init from the same seed, plain SGD at lr 2**-lr_shift.

    Gradients are written by hand (checked against finite differences in
    tests/test_cnn.py).  The computation follows the dtype of the parameters
    (float32; a float64 copy is used for the gradient check).
    """

    def __init__(self, seed: int, lr_shift: int, channels: int = 4, pool: int = 2):
        self.sizes = cnn_sizes(channels, pool)
        self.pool = pool
        self.lr_shift = lr_shift
        self.params = {k: v.astype(np.float32) for k, v in cnn_float_init(self.sizes, seed).items()}
        self.macs = ops.MacCounter()

    @staticmethod
    def input(pixels: np.ndarray) -> np.ndarray:
        return (np.asarray(pixels) / 16.0).astype(np.float32)

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        p = self.params
        _check_input(np.shape(x))
        batch, k = x.shape[0], self.pool
        t = {"a0": x.reshape(batch, 1, IMAGE, IMAGE)}
        t["a1"] = np.maximum(_conv(t["a0"], p["conv1"]), 0)
        t["z"] = np.maximum(_conv(t["a1"], p["conv2"]), 0)
        t["r"] = _conv(t["z"], p["conv3"])
        t["s"] = p["scale"][0] * t["r"] + p["bias"][0]
        t["a2"] = np.maximum(t["a1"] + t["s"], 0)
        c, h = t["a2"].shape[1], IMAGE // k
        t["p"] = t["a2"].reshape(batch, c, h, k, h, k).mean(axis=(3, 5))
        t["f"] = t["p"].reshape(batch, -1)
        t["y"] = t["f"] @ p["fc_out"].T
        return t

    def loss_and_grads(self, x: np.ndarray, labels) -> tuple[float, dict[str, np.ndarray]]:
        p = self.params
        t = self.forward(x)
        self.last_logits = t["y"]         # the step's logits (running train accuracy)
        batch, k = x.shape[0], self.pool
        labels = check_labels(labels, batch, t["y"].shape[1])
        probs = softmax(t["y"].astype(np.float64))
        e_y = probs.copy()
        e_y[np.arange(batch), labels] -= 1.0
        e_y = (e_y / batch).astype(t["y"].dtype)
        g = {"fc_out": e_y.T @ t["f"]}
        e_p = (e_y @ p["fc_out"]).reshape(t["p"].shape)
        e_a2 = np.repeat(np.repeat(e_p, k, axis=2), k, axis=3) / (k * k)
        e_join = e_a2 * (t["a2"] > 0)
        g["bias"] = np.array([e_join.sum()], dtype=e_join.dtype)
        g["scale"] = np.array([(e_join * t["r"]).sum()], dtype=e_join.dtype)
        e_r = e_join * p["scale"][0]
        g["conv3"] = _conv_grad(e_r, t["z"])
        e_z = _conv_error(e_r, p["conv3"], t["z"].shape) * (t["z"] > 0)
        g["conv2"] = _conv_grad(e_z, t["a1"])
        e_a1 = (e_join + _conv_error(e_z, p["conv2"], t["a1"].shape)) * (t["a1"] > 0)
        g["conv1"] = _conv_grad(e_a1, t["a0"])
        return cross_entropy(probs, labels), g
