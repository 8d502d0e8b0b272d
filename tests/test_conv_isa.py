"""CONV, POOL and UNPOOL in the golden machine, against naive loops written here, and their geometry."""

from __future__ import annotations

import itertools
import os
import random

import numpy as np
import pytest

from golden_model import isa
from golden_model.config import get_config
from golden_model.geometry import Geometry
from golden_model.isa import Op, Status
from golden_model.machine import Machine, MachineError, words_per_row
from golden_model.quant import QTensor

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


def test_geometry_key_is_the_documented_bit_layout():
    g = Geometry(batch=5, height=8, width=6, kh=3, kw=1, stride=2, pad_h=1)
    # height | width << 7 | kh << 14 | kw << 18 | log2(stride) << 22 | pad_h << 23 | pad_w << 25 | batch << 27
    assert g.encode() == 8 | 6 << 7 | 3 << 14 | 1 << 18 | 1 << 22 | 1 << 23 | 0 << 25 | 5 << 27
    assert Geometry.decode(g.encode()) == g
    # Ho = (8 + 2 - 3) // 2 + 1 = 4, Wo = (6 + 0 - 1) // 2 + 1 = 3
    assert (g.out_height, g.out_width, g.taps, g.in_rows, g.out_rows) == (4, 3, 3, 240, 60)


@pytest.mark.parametrize("fields, message", [
    (dict(batch=0, height=4, width=4, kh=3, kw=3), "batch=0"),
    (dict(batch=1, height=2, width=4, kh=5, kw=1), "does not fit"),
    (dict(batch=1, height=4, width=4, kh=3, kw=3, stride=4), "stride=4"),
    (dict(batch=1, height=4, width=4, kh=3, kw=3, pad_w=4), "pad_w=4"),
])
def test_bad_geometry_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        Geometry(**fields)


def test_im2col_hand_worked():
    """A 1x3 signal, 1x3 kernel, pad_w 1: output pixel 0 sees (pad, x0, x1), pixel 2 sees (x1, x2, pad)."""
    g = Geometry(batch=1, height=1, width=3, kh=1, kw=3, pad_w=1)
    assert g.im2col().tolist() == [[-1, 0, 1], [0, 1, 2], [1, 2, -1]]


def naive_conv(x, w, g: Geometry):
    """x (B, H, W, C), w (O, KH, KW, C) -> (B, Ho, Wo, O) by loops."""
    out = np.zeros((g.batch, g.out_height, g.out_width, w.shape[0]), dtype=np.int64)
    for b, yo, xo, o in itertools.product(range(g.batch), range(g.out_height), range(g.out_width), range(w.shape[0])):
        for kh, kw in itertools.product(range(g.kh), range(g.kw)):
            yi, xi = yo * g.stride + kh - g.pad_h, xo * g.stride + kw - g.pad_w
            if 0 <= yi < g.height and 0 <= xi < g.width:
                out[b, yo, xo, o] += int(np.dot(x[b, yi, xi].astype(np.int64), w[o, kh, kw].astype(np.int64)))
    return out


def naive_error(e, w, g: Geometry):
    """e (B, Ho, Wo, O), w (O, KH, KW, C) -> (B, H, W, C): every output pixel sends its error back."""
    out = np.zeros((g.batch, g.height, g.width, w.shape[3]), dtype=np.int64)
    for b, yo, xo in itertools.product(range(g.batch), range(g.out_height), range(g.out_width)):
        for kh, kw in itertools.product(range(g.kh), range(g.kw)):
            yi, xi = yo * g.stride + kh - g.pad_h, xo * g.stride + kw - g.pad_w
            if 0 <= yi < g.height and 0 <= xi < g.width:
                out[b, yi, xi] += e[b, yo, xo].astype(np.int64) @ w[:, kh, kw].astype(np.int64)
    return out


def naive_gradient(e, x, g: Geometry):
    """e (B, Ho, Wo, O), x (B, H, W, C) -> (O, KH, KW, C)."""
    out = np.zeros((e.shape[3], g.kh, g.kw, x.shape[3]), dtype=np.int64)
    for b, yo, xo in itertools.product(range(g.batch), range(g.out_height), range(g.out_width)):
        for kh, kw in itertools.product(range(g.kh), range(g.kw)):
            yi, xi = yo * g.stride + kh - g.pad_h, xo * g.stride + kw - g.pad_w
            if 0 <= yi < g.height and 0 <= xi < g.width:
                out[:, kh, kw] += np.outer(e[b, yo, xo].astype(np.int64), x[b, yi, xi].astype(np.int64))
    return out


def padded_weights(w, lanes):
    """(O, KH, KW, C) -> the stored (O, KH*KW*Cp) with each tap padded to whole words."""
    cp = -(-w.shape[3] // lanes) * lanes
    stored = np.zeros(w.shape[:3] + (cp,), dtype=w.dtype)
    stored[..., :w.shape[3]] = w
    return stored.reshape(w.shape[0], -1)


def machine_with(cfg, tensors):
    """Slots 0.. hold the given int8 matrices, packed from word 0, exponents 0, -1, -2, ..."""
    m, base = Machine(cfg), 0
    for slot, t in enumerate(tensors):
        m.set_tensor(slot, base, t.shape[0], t.shape[1], -slot)
        m.write_tensor(slot, QTensor(t.astype(np.int8), -slot))
        base += t.shape[0] * words_per_row(t.shape[1], cfg.lanes)
    return m


GEOMETRIES = [
    dict(batch=2, height=5, width=4, kh=3, kw=3, stride=1, pad_h=1, pad_w=1),
    dict(batch=1, height=6, width=7, kh=3, kw=3, stride=2, pad_h=1, pad_w=1),
    dict(batch=3, height=4, width=4, kh=1, kw=1, stride=2),
    dict(batch=2, height=1, width=9, kh=1, kw=3, stride=1, pad_w=1),    # a 1-D signal
    dict(batch=1, height=3, width=5, kh=3, kw=3, stride=1),
]


@pytest.mark.parametrize("config", ["small4x4", "default", "wide8x16"])
@pytest.mark.parametrize("fields", GEOMETRIES)
def test_conv_products_match_loops(config, fields):
    cfg = get_config(config)
    g = Geometry(**fields)
    rng = np.random.default_rng(SEED)
    channels, outputs = int(rng.integers(1, 11)), int(rng.integers(1, 7))
    x = rng.integers(-128, 128, size=(g.batch, g.height, g.width, channels))
    w = rng.integers(-128, 128, size=(outputs, g.kh, g.kw, channels))
    e = rng.integers(-128, 128, size=(g.batch, g.out_height, g.out_width, outputs))
    m = machine_with(cfg, [x.reshape(g.in_rows, channels), padded_weights(w, cfg.lanes),
                           e.reshape(g.out_rows, outputs), np.zeros((g.in_rows, channels))])
    what = f"{fields} C={channels} O={outputs} (EOQ_SEED={SEED})"

    m.execute(isa.conv(0, 1, g))
    assert np.array_equal(m.acc, naive_conv(x, w, g).reshape(g.out_rows, outputs)), what
    assert m.acc_exp == 0 + -1
    m.execute(isa.conv(2, 1, g, mode="error", dst=3))
    assert np.array_equal(m.acc, naive_error(e, w, g).reshape(g.in_rows, channels)), what
    m.execute(isa.conv(2, 0, g, mode="gradient"))
    assert np.array_equal(m.acc, padded_weights(naive_gradient(e, x, g), cfg.lanes)), what
    assert m.acc_exp == -2 + 0


def test_conv_shape_checks_and_modes():
    cfg = get_config("default")
    g = Geometry(batch=1, height=4, width=4, kh=3, kw=3, pad_h=1, pad_w=1)
    m = machine_with(cfg, [np.ones((16, 8)), np.ones((5, 72)), np.ones((16, 5)), np.ones((16, 8)), np.ones((15, 8))])
    for inst, status in [(isa.conv(4, 1, g), Status.SHAPE_MISMATCH),                 # 15 rows, not 16 pixels
                         (isa.conv(0, 2, g), Status.SHAPE_MISMATCH),                 # weights 5x5, not 9 taps x 8
                         (isa.conv(2, 1, g, mode="error", dst=4), Status.SHAPE_MISMATCH),
                         (isa.conv(1, 1, g, mode="gradient"), Status.SHAPE_MISMATCH)]:
        with pytest.raises(MachineError) as error:
            m.execute(inst)
        assert error.value.status == status
    assert isa.illegal(isa.Instruction(Op.CONV, a=0, b=1, f0=1, f1=0, key=g.encode()).encode())
    assert "batch=0" in isa.illegal(isa.Instruction(Op.CONV, a=0, b=1, key=0).encode())


def test_pool_and_unpool_hand_worked():
    """One 2x2 image, 2 channels, one 2x2 window: the sum, then the error spread back."""
    cfg = get_config("default")
    g = Geometry(batch=1, height=2, width=2, kh=2, kw=2)
    x = np.array([[1, -2], [3, 4], [5, 6], [-7, 8]])
    m = machine_with(cfg, [x, np.zeros((4, 2))])
    m.execute(isa.pool(0, g))
    assert m.acc.tolist() == [[2, 16]] and m.acc_exp == 0 - 2          # average = sum * 2**-2
    m.set_tensor(2, 10, 1, 2, 5)
    m.write_tensor(2, QTensor(np.array([[9, -3]], dtype=np.int8), 5))
    m.execute(isa.unpool(1, 2, g))
    assert m.read_tensor(1).q.tolist() == [[9, -3]] * 4 and m.read_tensor(1).exp == 5 - 2


def test_pool_needs_tiling_power_of_two_windows():
    for fields in (dict(batch=1, height=6, width=6, kh=3, kw=3), dict(batch=1, height=4, width=4, kh=2, kw=2, pad_h=1),
                   dict(batch=1, height=5, width=4, kh=2, kw=2)):
        assert isa.illegal(isa.pool(0, Geometry(**fields)).encode())
    assert isa.illegal(isa.pool(0, Geometry(batch=3, height=4, width=8, kh=4, kw=8)).encode()) is None


def test_unpool_refuses_a_destination_over_its_source():
    cfg = get_config("default")
    g = Geometry(batch=1, height=2, width=2, kh=2, kw=2)
    m = machine_with(cfg, [np.ones((4, 2)), np.ones((1, 2))])
    m.set_tensor(2, 3, 4, 2, 0)                   # words 3..6 cover slot 1 (word 4)
    with pytest.raises(MachineError) as error:
        m.execute(isa.unpool(2, 1, g))
    assert error.value.status == Status.OVERLAP
