"""The convolutional Fixup ResNet, in EOQ integer arithmetic and in float32, from a network description.

    x (B*H*W, Cin)                                       pixel rows, int8, exp -7
    a0 = SQ(relu(conv3x3(x, W_stem)))                    stem
    per residual block (channels C, stride s; the stage's first block may downsample):
      z  = SQ(relu(conv3x3(a, W1, stride s)))            W1 He init x L**-1/2 (Fixup, L blocks)
      r  = SQ(conv3x3(z, W2))                            W2 zero init: the branch starts at 0
      s  = SQ(SQ(m * r) + b)                             Fixup scalar multiplier (1) and bias (0)
      sc = a, or SQ(conv1x1(a, Wp, stride s))            projection when the shape changes (He init)
      a' = SQ(relu(sc + s))                              residual join
    g  = SQ(avgpool_PxP(a_last))                         the head's pooling window P (head_pool; none if 1):
                                                         window sum, exponent - log2(P*P)
    y  = SQ(conv_KxK(g, W_fc))                           the classifier, W_fc zero init: a convolution whose
                                                         kernel is the whole pooled map (no padding), i.e. a
                                                         fully connected layer over it; logits (B, classes)

No batch normalization.  Images are pixel rows (golden_model/geometry.py) and
every convolution is one integer product on the core (golden_model/conv.py):
conv weights are stored (O, KH*KW*Cp), each tap's channels padded to whole
memory words (``cfg.lanes``) with zero weights, which stay zero.  The float32
reference is the same network on dense weights (the padding changes nothing
in float), from the same Fixup draws.

Of Fixup's scalar parameters each block keeps the multiplier and the bias
after it (where batch normalization's affine parameters sat), as the MLP
does: docs/eoq_arithmetic.md says why.  A 1-D signal (H = 1) uses 1 x K
kernels padded along the width only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import conv, ops
from .arithmetic import CORE, Arithmetic
from .config import CoreConfig
from .data import DIGITS_FORMAT, InputFormat
from .float_ref import FloatNetwork
from .geometry import Geometry
from .loss import check_labels, cross_entropy, softmax
from .network import IntegerNetwork, Trace, quantize_input, weight_exponent
from .quant import QTensor


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of the network: its parameter name, channels and per-image geometry."""

    name: str
    in_channels: int
    out_channels: int
    height: int          # of the input image
    width: int
    kernel: tuple[int, int]
    stride: int = 1
    same: bool = True    # zero padding (K - 1) / 2 keeps the size at stride 1; False: no padding

    def geometry(self, batch: int) -> Geometry:
        kh, kw = self.kernel
        pad_h, pad_w = ((kh - 1) // 2, (kw - 1) // 2) if self.same else (0, 0)
        return Geometry(batch=batch, height=self.height, width=self.width, kh=kh, kw=kw, stride=self.stride,
                        pad_h=pad_h, pad_w=pad_w)

    @property
    def out_size(self) -> tuple[int, int]:
        g = self.geometry(1)
        return g.out_height, g.out_width

    @property
    def fan_in(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.in_channels


@dataclass(frozen=True)
class Block:
    """A residual block: two convolutions, the Fixup scalars, and a projection when the shape changes."""

    name: str
    conv1: ConvLayer
    conv2: ConvLayer
    proj: ConvLayer | None


@dataclass(frozen=True)
class ResNetSpec:
    """The network description: image size, channels, and per stage (channels, blocks, stride).

    The default: a 3x3 stem to 8 channels, one block of two 3x3 convolutions at 8
    channels, two at 24 channels, the first with stride 2 (a 1x1 stride-2
    projection on its shortcut), and the head: average pooling by ``head_pool``
    x ``head_pool`` (2: the 4x4 map to 2x2), then a fully connected layer over
    the pooled map (a convolution whose kernel is that map).  ``head_pool`` equal
    to the last map's side is global average pooling (the paper's ResNets; on
    8x8 digits it learns poorly, docs/eoq_arithmetic.md); 1 pools nothing.
    """

    height: int = 8
    width: int = 8
    in_channels: int = 1
    stem: int = 8
    stages: tuple[tuple[int, int, int], ...] = ((8, 1, 1), (24, 2, 2))
    classes: int = 10
    head_pool: int = 2
    blocks: tuple[Block, ...] = field(init=False, repr=False, compare=False)
    stem_layer: ConvLayer = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if min(self.height, self.width, self.in_channels, self.stem, self.classes) < 1 or not self.stages:
            raise ValueError(f"network description needs positive sizes and at least one stage: {self}")
        kernel = (1, 3) if self.height == 1 else (3, 3)
        stem = ConvLayer("stem", self.in_channels, self.stem, self.height, self.width, kernel)
        blocks, channels, (h, w) = [], self.stem, (self.height, self.width)
        for stage, (out, count, stride) in enumerate(self.stages, 1):
            if min(out, count) < 1 or stride not in (1, 2):
                raise ValueError(f"stage {stage}: channels and blocks must be positive and stride 1 or 2, "
                                 f"got {(out, count, stride)}")
            for index in range(count):
                s = stride if index == 0 else 1
                name = f"s{stage}b{index + 1}"
                conv1 = ConvLayer(f"{name}.conv1", channels, out, h, w, kernel, s)
                h, w = conv1.out_size
                conv2 = ConvLayer(f"{name}.conv2", out, out, h, w, kernel)
                proj = (ConvLayer(f"{name}.proj", channels, out, conv1.height, conv1.width, (1, 1), s)
                        if s != 1 or channels != out else None)
                blocks.append(Block(name, conv1, conv2, proj))
                channels = out
        object.__setattr__(self, "blocks", tuple(blocks))
        object.__setattr__(self, "stem_layer", stem)
        (kh, kw), area = self.pool_window, self.pool_window[0] * self.pool_window[1]
        if self.head_pool < 1 or h % kh or w % kw or area & (area - 1):
            raise ValueError(f"head_pool {self.head_pool} must tile the last {h}x{w} map with a power-of-two area")

    @property
    def convs(self) -> list[ConvLayer]:
        layers = [self.stem_layer]
        for block in self.blocks:
            layers += [block.conv1, block.conv2] + ([block.proj] if block.proj else [])
        return layers + [self.head_layer]

    @property
    def pool_window(self) -> tuple[int, int]:
        """The head's pooling window (KH, KW): head_pool on both axes (the width only for a 1-D signal)."""
        return (1 if self.height == 1 else self.head_pool, self.head_pool)

    @property
    def pooled_size(self) -> tuple[int, int]:
        (h, w), (kh, kw) = self.final_size, self.pool_window
        return h // kh, w // kw

    @property
    def head_layer(self) -> ConvLayer:
        """The classifier: a convolution with the pooled map's size as kernel, one output pixel per image."""
        h, w = self.pooled_size
        return ConvLayer("fc", self.channels, self.classes, h, w, (h, w), same=False)

    def head_pool_geometry(self, batch: int) -> Geometry | None:
        """The head's average pooling over the last map, or None when head_pool is 1."""
        (h, w), (kh, kw) = self.final_size, self.pool_window
        return None if kh * kw == 1 else Geometry(batch=batch, height=h, width=w, kh=kh, kw=kw)

    @property
    def channels(self) -> int:
        """Channels of the last block."""
        return self.blocks[-1].conv2.out_channels

    @property
    def final_size(self) -> tuple[int, int]:
        return self.blocks[-1].conv2.height, self.blocks[-1].conv2.width

    @property
    def param_names(self) -> list[str]:
        names = ["stem"]
        for b in self.blocks:
            names += [f"{b.name}.conv1", f"{b.name}.conv2", f"{b.name}.scale", f"{b.name}.bias"]
            names += [f"{b.name}.proj"] if b.proj else []
        return names + ["fc"]

    def param_ids(self) -> dict[str, int]:
        """The stochastic-rounding tensor id of every parameter (prng.tensor_key), 1.. in order."""
        return {name: index for index, name in enumerate(self.param_names, 1)}

    def check(self, cfg: CoreConfig, batch: int) -> None:
        """ValueError naming the first limit of ``cfg`` the network exceeds at ``batch`` images."""
        for layer in self.convs:
            g = layer.geometry(batch)
            rows = max(g.in_rows, g.out_rows)
            cols = g.taps * conv.padded_channels(layer.in_channels, cfg.lanes)
            words = max(g.out_rows * -(-layer.out_channels // cfg.lanes),          # forward
                        g.in_rows * -(-layer.in_channels // cfg.lanes),            # error
                        layer.out_channels * -(-cols // cfg.lanes))                # gradient
            for what, value, limit, knob in (("pixel rows (batch x height x width)", rows, cfg.max_dim, "max_dim"),
                                             ("weight columns (taps x channels)", cols, cfg.max_dim, "max_dim"),
                                             ("accumulator words", words, cfg.acc_words, "acc_elements")):
                if value > limit:
                    needed = value * cfg.lanes if knob == "acc_elements" else value
                    raise ValueError(f"layer {layer.name} needs {value} {what} at batch {batch}; configuration "
                                     f"{cfg.name} holds {limit} ({knob}): lower the batch or the channels, or "
                                     f"use a configuration with {knob} >= {needed}")


def _fits(spec: ResNetSpec, cfg: CoreConfig, batch: int) -> bool:
    try:
        spec.check(cfg, batch)
    except ValueError:
        return False
    return True


def fixup_float_init(spec: ResNetSpec, seed: int) -> dict[str, np.ndarray]:
    """Fixup initialization, float: He-normal (fan-in KH*KW*C) for the stem and projections, the
    blocks' first convolution scaled by L**(-1/2) (L blocks, two layers each), zero for the second
    and for fc, multipliers 1, biases 0.  Conv weights are drawn (O, KH, KW, C)."""
    rng = np.random.default_rng(seed)
    scale = len(spec.blocks) ** -0.5

    def he(layer: ConvLayer):
        kh, kw = layer.kernel
        return rng.normal(0.0, math.sqrt(2.0 / layer.fan_in), size=(layer.out_channels, kh, kw, layer.in_channels))

    init = {"stem": he(spec.stem_layer)}
    for b in spec.blocks:
        init[f"{b.name}.conv1"] = he(b.conv1) * scale
        init[f"{b.name}.conv2"] = np.zeros((b.conv2.out_channels,) + b.conv2.kernel + (b.conv2.in_channels,))
        init[f"{b.name}.scale"], init[f"{b.name}.bias"] = np.ones(1), np.zeros(1)
        if b.proj:
            init[f"{b.name}.proj"] = he(b.proj)
    init["fc"] = np.zeros((spec.classes,) + spec.head_layer.kernel + (spec.channels,))
    return init


def padded_weights(w: np.ndarray, lanes: int) -> np.ndarray:
    """(O, KH, KW, C) -> the core's (O, KH*KW*Cp), each tap's channels padded to words with zeros."""
    cp = conv.padded_channels(w.shape[3], lanes)
    out = np.zeros(w.shape[:3] + (cp,), dtype=w.dtype)
    out[..., :w.shape[3]] = w
    return out.reshape(w.shape[0], -1)


def image_rows(pixels: np.ndarray, spec: ResNetSpec) -> np.ndarray:
    """(B, C*H*W or H*W) flattened images -> pixel rows (B*H*W, C); channel-major input (C, H, W) order."""
    pixels = np.asarray(pixels)
    batch = pixels.shape[0]
    return pixels.reshape(batch, spec.in_channels, spec.height * spec.width).transpose(0, 2, 1).reshape(
        batch * spec.height * spec.width, spec.in_channels)


class ResCNN(IntegerNetwork):
    """The Fixup ResNet in EOQ int8 arithmetic (see the module docstring); interface of network.ResMLP."""

    def __init__(self, cfg: CoreConfig, seed: int, lr_shift: int, spec: ResNetSpec | None = None, *,
                 arithmetic: Arithmetic = CORE):
        self.spec = spec = spec or ResNetSpec()
        spec.check(cfg, 1)
        self.batch_limit = max(b for b in range(1, cfg.max_batch + 1) if _fits(spec, cfg, b))
        self.param_ids = spec.param_ids()
        self.layers = {layer.name: layer for layer in spec.convs}
        init = fixup_float_init(spec, seed)
        stored = {name: padded_weights(value, cfg.lanes) if name in self.layers else value
                  for name, value in init.items()}
        super().__init__(cfg, seed, lr_shift, stored, fan_in=lambda shape: shape[1], arithmetic=arithmetic)

    def param_exponent(self, name, shape, fan_in) -> int:
        if name in self.layers:
            return weight_exponent(self.layers[name].fan_in)
        return super().param_exponent(name, shape, fan_in)

    def check_input(self, x: QTensor) -> None:
        s = self.spec
        if x.q.ndim != 2 or x.q.shape[1] != s.in_channels or x.q.shape[0] % (s.height * s.width):
            raise ValueError(f"input must be pixel rows (B*{s.height}*{s.width}, {s.in_channels}), got {x.q.shape}")

    def batch_of(self, x: QTensor) -> int:
        return x.q.shape[0] // (self.spec.height * self.spec.width)

    def forward(self, x: QTensor, trace: Trace | None = None) -> dict[str, QTensor]:
        cfg, p, macs, s = self.cfg, self.params, self.macs, self.spec
        self.check_input(x)
        batch = self.batch_of(x)
        if batch > cfg.max_batch:
            raise ValueError(f"batch {batch} exceeds max_batch {cfg.max_batch} of configuration {cfg.name}")
        if batch > self.batch_limit:
            s.check(cfg, batch)
        t = {"x": x}
        t["a0"] = conv.conv_forward(x, p["stem"], s.stem_layer.geometry(batch), cfg, relu=True, macs=macs)
        a = "a0"
        for b in s.blocks:
            n = b.name
            t[f"{n}.z"] = conv.conv_forward(t[a], p[f"{n}.conv1"], b.conv1.geometry(batch), cfg, relu=True, macs=macs)
            t[f"{n}.r"] = conv.conv_forward(t[f"{n}.z"], p[f"{n}.conv2"], b.conv2.geometry(batch), cfg, macs=macs)
            t[f"{n}.sm"] = ops.scale_forward(t[f"{n}.r"], p[f"{n}.scale"], cfg, macs=macs)
            t[f"{n}.s"] = ops.bias_forward(t[f"{n}.sm"], p[f"{n}.bias"], cfg)
            shortcut = a
            if b.proj:
                t[f"{n}.p"] = conv.conv_forward(t[a], p[f"{n}.proj"], b.proj.geometry(batch), cfg, macs=macs)
                shortcut = f"{n}.p"
            t[f"{n}.out"] = ops.residual_add(t[shortcut], t[f"{n}.s"], cfg, relu=True)
            a = f"{n}.out"
        pool = s.head_pool_geometry(batch)
        if pool is not None:
            t["g"] = conv.avgpool_forward(t[a], pool, cfg)
        t["y"] = conv.conv_forward(t["g" if pool else a], p["fc"], s.head_layer.geometry(batch), cfg, macs=macs)
        if trace is not None:
            for name, value in t.items():
                trace.add(name, {}, {"y": value})
        return t

    def backward(self, t: dict[str, QTensor], e_y: QTensor, trace: Trace | None = None) -> dict[str, QTensor]:
        """Errors and int8 gradients of every parameter from the output error, in the programs' order."""
        cfg, p, macs, s = self.cfg, self.params, self.macs, self.spec
        batch = self.batch_of(t["x"])
        g, e = {}, {}
        last = s.blocks[-1].name
        head, pool = s.head_layer.geometry(batch), s.head_pool_geometry(batch)
        pooled = "g" if pool else f"{last}.out"
        e_head = conv.conv_backward_error(e_y, p["fc"], head, s.channels, cfg, macs)
        g["fc"] = conv.conv_weight_gradient(e_y, t[pooled], head, cfg, self.key("fc"), macs)
        if pool is not None:
            e["e_g"] = e_head
            e[f"{last}.e_out"] = conv.avgpool_backward_error(e_head, pool)
        else:
            e[f"{last}.e_out"] = e_head
        e_out = ops.relu_backward(e[f"{last}.e_out"], t[f"{last}.out"])      # the last join's ReLU
        for index in range(len(s.blocks) - 1, -1, -1):
            b, n = s.blocks[index], s.blocks[index].name
            a = "a0" if index == 0 else f"{s.blocks[index - 1].name}.out"
            e[f"{n}.e_join"] = e_out
            g[f"{n}.bias"] = ops.bias_gradient(e_out, cfg, self.key(f"{n}.bias"))
            g[f"{n}.scale"] = ops.scale_gradient(e_out, t[f"{n}.r"], cfg, self.key(f"{n}.scale"), macs)
            e[f"{n}.e_r"] = ops.scale_backward_error(e_out, p[f"{n}.scale"], cfg, macs)
            e[f"{n}.e_z"] = ops.relu_backward(conv.conv_backward_error(
                e[f"{n}.e_r"], p[f"{n}.conv2"], b.conv2.geometry(batch), b.conv2.in_channels, cfg, macs),
                t[f"{n}.z"])
            g[f"{n}.conv2"] = conv.conv_weight_gradient(e[f"{n}.e_r"], t[f"{n}.z"], b.conv2.geometry(batch), cfg,
                                                        self.key(f"{n}.conv2"), macs)
            e[f"{n}.e_branch"] = conv.conv_backward_error(e[f"{n}.e_z"], p[f"{n}.conv1"], b.conv1.geometry(batch),
                                                          b.conv1.in_channels, cfg, macs)
            g[f"{n}.conv1"] = conv.conv_weight_gradient(e[f"{n}.e_z"], t[a], b.conv1.geometry(batch), cfg,
                                                        self.key(f"{n}.conv1"), macs)
            shortcut = e_out
            if b.proj:
                shortcut = e[f"{n}.e_short"] = conv.conv_backward_error(e_out, p[f"{n}.proj"], b.proj.geometry(batch),
                                                                        b.proj.in_channels, cfg, macs)
                g[f"{n}.proj"] = conv.conv_weight_gradient(e_out, t[a], b.proj.geometry(batch), cfg,
                                                           self.key(f"{n}.proj"), macs)
            e_out = ops.relu_backward(ops.error_add(shortcut, e[f"{n}.e_branch"], cfg), t[a])
            e[f"{s.blocks[index - 1].name}.e_join" if index else "e_a0"] = e_out
        g["stem"] = conv.conv_weight_gradient(e_out, t["x"], s.stem_layer.geometry(batch), cfg, self.key("stem"),
                                              macs)
        if trace is not None:
            for name, value in e.items():
                trace.add(name, {}, {"e": value})
            for name, value in g.items():
                trace.add(f"gradient_{name}", {}, {"g": value})
        return g

    def predict(self, x: QTensor) -> np.ndarray:
        """Class predictions in chunks of batch_limit images (argmax of the int8 logits)."""
        self.check_input(x)
        pixels = self.spec.height * self.spec.width
        counted, self.macs = self.macs, ops.MacCounter()
        try:
            step = self.batch_limit * pixels
            chunks = [self.forward(QTensor(x.q[i:i + step], x.exp))["y"].q for i in range(0, x.q.shape[0], step)]
        finally:
            self.macs = counted
        return np.argmax(np.concatenate(chunks), axis=1)


def input_rows(pixels: np.ndarray, spec: ResNetSpec, cfg: CoreConfig, fmt: InputFormat = DIGITS_FORMAT) -> QTensor:
    """Samples as int8 pixel rows by the format's rule (network.quantize_input, then the layout)."""
    x = quantize_input(pixels, cfg, fmt)
    return QTensor(image_rows(x.q, spec), x.exp)


# ---- the float32 reference ------------------------------------------------------------------------

def _float_im2col(x: np.ndarray, g: Geometry) -> np.ndarray:
    """(B*Ho*Wo, taps * C) float, zero in the padding."""
    padded = np.concatenate([x, np.zeros((1, x.shape[1]), dtype=x.dtype)])
    return padded[g.im2col()].reshape(g.out_rows, -1)


def _float_col2im(pieces: np.ndarray, g: Geometry, channels: int) -> np.ndarray:
    out = np.zeros((g.in_rows + 1, channels), dtype=pieces.dtype)
    np.add.at(out, g.im2col(), pieces.reshape(g.out_rows, g.taps, channels))
    return out[:g.in_rows]


CHUNK = 16


def float_head_pool(t: dict, a: str, spec: ResNetSpec, batch: int) -> str:
    """The float head's average pooling of ``t[a]`` into ``t["g"]`` (none when head_pool is 1); the key
    the classifier reads."""
    if spec.head_pool_geometry(batch) is None:
        return a
    (h, w), (kh, kw) = spec.final_size, spec.pool_window
    blocks = t[a].reshape(batch, h // kh, kh, w // kw, kw, -1)
    t["g"] = blocks.mean(axis=(2, 4)).reshape(batch * (h // kh) * (w // kw), -1)
    return "g"


def float_predict(forward, x: np.ndarray, spec: ResNetSpec) -> np.ndarray:
    """Class predictions of a float ResNet's ``forward`` in chunks of CHUNK images."""
    rows = CHUNK * spec.height * spec.width
    return np.concatenate([np.argmax(forward(x[i:i + rows])["y"], axis=1) for i in range(0, x.shape[0], rows)])


class FloatResCNN(FloatNetwork):
    """float32 reference of ResCNN: the same network and Fixup draws on dense (O, KH*KW*C) weights,
    plain SGD at lr 2**-lr_shift; gradients written by hand (tests/test_cnn.py checks them against
    finite differences).  Inputs are pixel rows of pixels / 16."""

    def __init__(self, seed: int, lr_shift: int, spec: ResNetSpec | None = None):
        self.spec = spec = spec or ResNetSpec()
        self.lr_shift = lr_shift
        self.layers = {layer.name: layer for layer in spec.convs}
        self.params = {name: (value.reshape(value.shape[0], -1) if name in self.layers else value).astype(np.float32)
                       for name, value in fixup_float_init(spec, seed).items()}
        self.macs = ops.MacCounter()

    def input(self, pixels: np.ndarray, fmt: InputFormat = DIGITS_FORMAT) -> np.ndarray:
        return (image_rows(pixels, self.spec) * fmt.scale).astype(np.float32)

    def _geometry(self, name: str, batch: int) -> Geometry:
        return self.layers[name].geometry(batch)

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        p, s = self.params, self.spec
        batch = x.shape[0] // (s.height * s.width)

        def conv_(name, inp):
            return _float_im2col(inp, self._geometry(name, batch)) @ p[name].T

        t = {"x": x, "a0": np.maximum(conv_("stem", x), 0)}
        a = "a0"
        for b in s.blocks:
            n = b.name
            t[f"{n}.z"] = np.maximum(conv_(f"{n}.conv1", t[a]), 0)
            t[f"{n}.r"] = conv_(f"{n}.conv2", t[f"{n}.z"])
            t[f"{n}.s"] = p[f"{n}.scale"][0] * t[f"{n}.r"] + p[f"{n}.bias"][0]
            shortcut = conv_(f"{n}.proj", t[a]) if b.proj else t[a]
            t[f"{n}.out"] = np.maximum(shortcut + t[f"{n}.s"], 0)
            a = f"{n}.out"
        pooled = float_head_pool(t, a, s, batch)
        t["y"] = conv_("fc", t[pooled])
        return t

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class predictions in chunks of CHUNK images (a geometry holds at most 31 images)."""
        return float_predict(self.forward, x, self.spec)

    def loss_and_grads(self, x: np.ndarray, labels) -> tuple[float, dict[str, np.ndarray]]:
        p, s = self.params, self.spec
        t = self.forward(x)
        self.last_logits = t["y"]
        batch = t["y"].shape[0]
        labels = check_labels(labels, batch, t["y"].shape[1])
        probs = softmax(t["y"].astype(np.float64))
        e_y = probs.copy()
        e_y[np.arange(batch), labels] -= 1.0
        e_y = (e_y / batch).astype(t["y"].dtype)
        last = t[f"{s.blocks[-1].name}.out"]

        def conv_error(name, e):
            layer = self.layers[name]
            return _float_col2im(e @ p[name], self._geometry(name, batch), layer.in_channels)

        def conv_grad(name, e, inp):
            return e.T @ _float_im2col(inp, self._geometry(name, batch))

        if s.head_pool_geometry(batch) is not None:
            (h, w), (kh, kw) = s.final_size, s.pool_window
            g = {"fc": conv_grad("fc", e_y, t["g"])}
            e_g = conv_error("fc", e_y).reshape(batch, h // kh, 1, w // kw, 1, -1) / (kh * kw)
            e_out = np.broadcast_to(e_g, (batch, h // kh, kh, w // kw, kw, e_g.shape[-1])).reshape(last.shape)
            e_out = e_out * (last > 0)
        else:
            g = {"fc": conv_grad("fc", e_y, last)}
            e_out = conv_error("fc", e_y) * (last > 0)

        for index in range(len(s.blocks) - 1, -1, -1):
            b, n = s.blocks[index], s.blocks[index].name
            a = "a0" if index == 0 else f"{s.blocks[index - 1].name}.out"
            g[f"{n}.bias"] = np.array([e_out.sum()], dtype=e_out.dtype)
            g[f"{n}.scale"] = np.array([(e_out * t[f"{n}.r"]).sum()], dtype=e_out.dtype)
            e_r = e_out * p[f"{n}.scale"][0]
            e_z = conv_error(f"{n}.conv2", e_r) * (t[f"{n}.z"] > 0)
            g[f"{n}.conv2"] = conv_grad(f"{n}.conv2", e_r, t[f"{n}.z"])
            g[f"{n}.conv1"] = conv_grad(f"{n}.conv1", e_z, t[a])
            shortcut = e_out
            if b.proj:
                shortcut = conv_error(f"{n}.proj", e_out)
                g[f"{n}.proj"] = conv_grad(f"{n}.proj", e_out, t[a])
            e_out = (shortcut + conv_error(f"{n}.conv1", e_z)) * (t[a] > 0)
        g["stem"] = conv_grad("stem", e_out, x)
        return cross_entropy(probs, labels), g
