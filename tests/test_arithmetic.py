"""Arithmetic variants (golden_model/arithmetic.py, flag.py, quant.scale_exponent): each quantizer on
hand-worked cases, randomized bounds over seeds, and the default variant bit-identical to the core's
arithmetic before the switches existed (digests recorded with the issue-9 golden model)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from golden_model.arithmetic import (CORE, Arithmetic, ArithmeticConfig, arithmetic_config, master_update,
                                     master_view, normalized_gradient)
from golden_model.config import CoreConfig, get_config
from golden_model.data import load_digits_split

from golden_model.flag import FLAG_EXTRA_BITS, FlagTensor, flag_quantize, quantize_error
from golden_model.loss import output_error
from golden_model.cnn import ResCNN, ResNetSpec
from golden_model.network import ResMLP, mlp_sizes, quantize_input
from golden_model.quant import QTensor, scale_exponent, shift_quantize, update_weights
from golden_model.train import input_rows, int_model

CFG = get_config("default")
NEAREST = arithmetic_config(CFG, Arithmetic(scale="nearest"))
FLAG = arithmetic_config(CFG, Arithmetic(errors="flag"))

#: sha256 prefixes of (every step's int8 logits, the final parameters) recorded with the golden model
#: of commit 7785b6e (issue 9), before the arithmetic switches: (arch, batch, steps, seed, config).
#: The networks are pinned (RECORDED_SPEC, mlp_sizes()), so a later change of the default network
#: does not move them; a change of the arithmetic does.
RECORDED_SPEC = ResNetSpec(stem=8, stages=((8, 1, 1), (16, 2, 2)), head_pool=2)
BEFORE_SWITCHES = {
    ("mlp", 16, 30, 0, "default"): "120a410e850a2fbf",
    ("mlp", 16, 30, 0, "default_nearest"): "af2d0b72657e4531",
    ("mlp", 16, 30, 1, "default"): "5e29672ee98d61ee",
    ("mlp", 16, 30, 1, "default_nearest"): "ff56cdc5e988622d",
    ("mlp", 16, 30, 2, "default"): "8aadd0d827726cbb",
    ("mlp", 16, 30, 2, "default_nearest"): "02e75df8bd0b7904",
    ("mlp", 1, 30, 0, "default"): "db409008ad07a9fc",
    ("mlp", 1, 30, 0, "default_nearest"): "4e8590c0d5e97525",
    ("mlp", 1, 30, 1, "default"): "a3a914a0cafe7cdb",
    ("mlp", 1, 30, 1, "default_nearest"): "30a5b3889416ebba",
    ("mlp", 1, 30, 2, "default"): "7fcf19835e82def6",
    ("mlp", 1, 30, 2, "default_nearest"): "bee662b624d4d3b0",
    ("cnn", 4, 6, 0, "default"): "c1189d048ef47e33",
    ("cnn", 4, 6, 0, "default_nearest"): "d1797af35340102b",
    ("cnn", 4, 6, 1, "default"): "46bf8993d3b08098",
    ("cnn", 4, 6, 1, "default_nearest"): "f03aa5d74a718102",
    ("cnn", 4, 6, 2, "default"): "ac062e2f01195172",
    ("cnn", 4, 6, 2, "default_nearest"): "ec8c8aeafba53ead",
}


def q8(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int8)


# ---- R(x): round up (the core) and round to nearest (WAGE) ---------------------------------------

@pytest.mark.parametrize("peak, up, nearest", [
    (0, 0, 0), (1, 1, 0), (2, 2, 1), (3, 2, 2), (64, 7, 6), (90, 7, 6), (91, 7, 7), (127, 7, 7),
    (128, 8, 7), (181, 8, 7), (182, 8, 8), (300, 9, 8), (2**20, 21, 20), (1482910, 21, 20), (1482911, 21, 21)])
def test_scale_exponent_hand_worked(peak, up, nearest):
    """nearest: round(log2 peak); 90**2 = 8100 < 2**13 <= 91**2, 181**2 = 32761 < 2**15 <= 182**2,
    2**20.5 = 1482910.4."""
    assert scale_exponent(peak, "up") == up
    assert scale_exponent(peak, "nearest") == nearest


def test_scale_exponent_rejects_unknown_rounding():
    with pytest.raises(ValueError, match="scale rounding"):
        scale_exponent(5, "down")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scale_exponent_nearest_matches_float_log2(seed):
    peaks = np.random.default_rng(seed).integers(1, 2**30, 2000)
    for peak in peaks:
        exact = np.log2(float(peak))
        if abs(exact - np.floor(exact) - 0.5) > 1e-9:
            assert scale_exponent(int(peak), "nearest") == int(np.floor(exact + 0.5))


def test_sq_nearest_hand_worked():
    """max 300: up shifts by 2 (75), nearest by 1 (150 saturates to 127, WAGE's clip)."""
    acc = np.array([300, -41, 5])
    up = shift_quantize(acc, 3, "nearest", CFG)
    np.testing.assert_array_equal(up.q, q8([75, -10, 1]))
    assert up.exp == 5
    near = shift_quantize(acc, 3, "nearest", NEAREST)
    np.testing.assert_array_equal(near.q, q8([127, -21, 3]))
    assert near.exp == 4
    same = shift_quantize(np.array([182, 91, -1]), 0, "nearest", NEAREST)       # e = 8 both ways
    np.testing.assert_array_equal(same.q, q8([91, 46, -1]))
    assert same.exp == 1
    clipped = shift_quantize(np.array([181, -90, 3]), 0, "nearest", NEAREST)    # e = 7: no shift, clip
    np.testing.assert_array_equal(clipped.q, q8([127, -90, 3]))
    assert clipped.exp == 0


# ---- flag quantization of errors ---------------------------------------------------------------

def test_flag_quantize_hand_worked_small_shift():
    """peak 1000: shift 3, coarse step 8; -5 is below one step and keeps all its bits on 2**-4."""
    t = flag_quantize(np.array([1000, -300, 37, -5, 0]), 0, CFG)
    assert isinstance(t, FlagTensor) and t.exp == 3 - FLAG_EXTRA_BITS
    np.testing.assert_array_equal(t.q, np.array([125 * 128, -38 * 128, 5 * 128, -80, 0], dtype=np.int16))
    sq = shift_quantize(np.array([1000, -300, 37, -5, 0]), 0, "nearest", CFG)
    np.testing.assert_array_equal(sq.q, q8([125, -38, 5, -1, 0]))


def test_flag_quantize_hand_worked_large_shift():
    """peak 2**20 + 12345: shift 14; 3000 and -1500 are below one step: rounded on 2**7."""
    t = flag_quantize(np.array([2**20 + 12345, 3000, -1500]), 0, CFG)
    assert t.exp == 14 - 7
    np.testing.assert_array_equal(t.q, np.array([65 * 128, 23, -12], dtype=np.int16))
    carry = flag_quantize(np.array([20000, 255, -1]), -3, CFG)      # 255 / 2 = 127.5 rounds to 128 = one step
    assert carry.exp == -3 + 8 - 7
    np.testing.assert_array_equal(carry.q, np.array([78 * 128, 128, -1], dtype=np.int16))


def test_flag_quantize_follows_the_scale_rounding():
    """Under nearest R(x) the coarse grid is that of nearest SQ (max 300: shift 1, 150 saturates)."""
    t = flag_quantize(np.array([300, 1]), 0, NEAREST)
    np.testing.assert_array_equal(t.q, np.array([127 * 128, 64], dtype=np.int16))
    assert t.exp == 1 - 7


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flag_quantize_error_bounds(seed):
    """Each element within half a fine step (below one coarse step) or half a coarse step (others,
    unsaturated) of the input; the SQ error bound is the coarse one for every element."""
    rng = np.random.default_rng(seed)
    acc = (rng.standard_cauchy(500) * 10 ** rng.uniform(0, 5)).astype(np.int64)
    t = flag_quantize(acc, 0, CFG)
    step = 2 ** (t.exp + FLAG_EXTRA_BITS)
    value = t.q.astype(np.int64) * 2.0 ** t.exp
    small = np.abs(acc) < step
    assert np.all(np.abs(value[small] - acc[small]) <= 2.0 ** t.exp / 2)
    assert np.all(np.abs(value[~small] - acc[~small]) <= step / 2)


def test_quantize_error_is_sq_by_default_and_flag_in_the_variant():
    acc = np.array([1000, -5])
    sq, ref = quantize_error(acc, 0, CFG), shift_quantize(acc, 0, "nearest", CFG)
    assert type(sq) is QTensor and sq.exp == ref.exp
    np.testing.assert_array_equal(sq.q, ref.q)
    np.testing.assert_array_equal(quantize_error(acc, 0, FLAG).q, flag_quantize(acc, 0, CFG).q)


def test_flag_tensor_rejects_values_off_both_grids():
    with pytest.raises(ValueError, match="neither fine"):
        FlagTensor(np.array([129], dtype=np.int16), 0)
    with pytest.raises(ValueError, match="int16"):
        FlagTensor(np.array([1], dtype=np.int8), 0)
    FlagTensor(np.array([128, -127 * 128, 5], dtype=np.int16), 0)


# ---- the update: normalized gradient and master weights ------------------------------------------

def test_normalized_update_hand_worked():
    """U = round(G.q * 2**-lr_shift) weight steps: [100, -64] >> 4 = [6, -4]; plain SGD with
    G at 2**-20 moves nothing (100 * 2**(-20 - 4 + 7) rounds to 0)."""
    w, g = QTensor(q8([10, -3]), -7), QTensor(q8([100, -64]), -20)
    moved = update_weights(w, normalized_gradient(g, w), 4, "nearest", CFG)
    np.testing.assert_array_equal(moved.q, q8([4, 1]))
    np.testing.assert_array_equal(update_weights(w, g, 4, "nearest", CFG).q, q8([10, -3]))


def test_master_update_hand_worked():
    """16-bit master at 2**-15: G [100, -64] at 2**-12, lr 2**-4: U = [50, -32] master steps per
    step; after 6 steps 2560 - 300 = 2260 (view 8.83 -> 9), -768 + 192 = -576 (-2.25 -> -2), where
    the int8 weights never move (U = 100 / 512 rounds to 0)."""
    master = np.array([10 << 8, -3 << 8], dtype=np.int64)
    g = QTensor(q8([100, -64]), -12)
    w = QTensor(q8([10, -3]), -7)
    for _ in range(6):
        master = master_update(master, -7, g, 4, 16, "nearest", CFG, None)
        w = update_weights(w, g, 4, "nearest", CFG)
    np.testing.assert_array_equal(master, [2260, -576])
    np.testing.assert_array_equal(master_view(master, 16, -7, CFG).q, q8([9, -2]))
    np.testing.assert_array_equal(w.q, q8([10, -3]))


def test_master_saturates():
    master = np.array([32767 - 10, -32767 + 3], dtype=np.int64)
    g = QTensor(q8([-127, 127]), 0)              # shift -15 + 0 - 0 < 0: a left shift, saturating
    out = master_update(master, -7, g, 0, 16, "nearest", CFG, None)
    np.testing.assert_array_equal(out, [32767, -32767])
    np.testing.assert_array_equal(master_view(out, 16, -7, CFG).q, q8([127, -127]))   # 127.996 -> 128 -> 127


def test_master_weights_in_a_model_start_at_the_int8_weights():
    model = int_model("mlp", CFG, 0, 4, arithmetic=Arithmetic(master_bits=16))
    master = model.parameter_update.master
    for name, p in model.params.items():
        np.testing.assert_array_equal(master[name], p.q.astype(np.int64) << 8)


# ---- the Fixup multiplier's range, the configuration, validation --------------------------------

@pytest.mark.parametrize("arch, name", [("mlp", "scale"), ("cnn", "s1b1.scale")])
@pytest.mark.parametrize("exp, one", [(-6, 64), (-5, 32)])
def test_multiplier_range(arch, name, exp, one):
    model = int_model(arch, CFG, 0, 4, arithmetic=Arithmetic(multiplier_exp=exp))
    assert model.params[name].exp == exp and model.params[name].q[0] == one
    assert model.params[name.replace("scale", "bias")].exp == -7


def test_arithmetic_config():
    assert arithmetic_config(CFG, CORE) is CFG
    assert arithmetic_config(CFG, Arithmetic(update="normalized", master_bits=16)) is CFG
    flag = arithmetic_config(CFG, Arithmetic(errors="flag"))
    assert isinstance(flag, ArithmeticConfig) and flag.error_format == "flag" and flag.scale_rounding == "up"
    assert flag.acc_max == 2 ** (CFG.acc_bits + FLAG_EXTRA_BITS - 1) - 1
    assert NEAREST.acc_max == CFG.acc_max and NEAREST.scale_rounding == "nearest"
    assert CoreConfig.scale_rounding == "up" and CFG.error_format == "sq"
    assert all(getattr(flag, f) == getattr(CFG, f) for f in ("name", "max_batch", "lanes", "seed"))


@pytest.mark.parametrize("change", [{"update": "adam"}, {"master_bits": 7}, {"master_bits": 32}, {"errors": "e2"},
                                    {"scale": "down"}, {"multiplier_exp": -4}])
def test_arithmetic_rejects_unknown_choices(change):
    with pytest.raises(ValueError, match="Arithmetic"):
        Arithmetic(**change)


def test_labels():
    assert CORE.label == "core"
    assert Arithmetic(errors="flag", master_bits=16).label == "master_bits=16,errors=flag"


# ---- whole training steps ---------------------------------------------------------------------

def digest(arch, batch, steps, seed, config, arithmetic=None):
    cfg = get_config(config)
    data = load_digits_split()
    kwargs = {} if arithmetic is None else {"arithmetic": arithmetic}
    model = (ResCNN(cfg, seed, 2, RECORDED_SPEC, **kwargs) if arch == "cnn"
             else ResMLP(cfg, seed, 4, mlp_sizes(), **kwargs))
    rng = np.random.default_rng(seed)
    h = hashlib.sha256()
    for _ in range(steps):
        idx = rng.choice(len(data.train_y), batch, replace=False)
        x = input_rows(data.train_x[idx], model.spec, cfg) if arch == "cnn" else quantize_input(data.train_x[idx], cfg)
        model.train_step(x, data.train_y[idx])
        h.update(model.last_logits.tobytes())
    for name in sorted(model.params):
        h.update(name.encode())
        h.update(model.params[name].q.tobytes())
        h.update(np.int64(model.params[name].exp).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("key", sorted(BEFORE_SWITCHES))
def test_default_variant_trains_bit_identically_to_before(key):
    assert digest(*key) == BEFORE_SWITCHES[key]
    assert digest(*key, arithmetic=Arithmetic()) == BEFORE_SWITCHES[key]


VARIANTS = [Arithmetic(update="normalized"), Arithmetic(master_bits=16), Arithmetic(errors="flag"),
            Arithmetic(scale="nearest"), Arithmetic(multiplier_exp=-5)]


@pytest.mark.parametrize("arithmetic", VARIANTS, ids=lambda a: a.label)
@pytest.mark.parametrize("arch, batch, steps", [("mlp", 16, 30), ("cnn", 4, 6)])
def test_every_variant_trains_differently_and_reproducibly(arithmetic, arch, batch, steps):
    key = (arch, batch, steps, 0, "default")
    first = digest(*key, arithmetic=arithmetic)
    assert first == digest(*key, arithmetic=arithmetic)
    assert first != BEFORE_SWITCHES[key]


def test_flag_errors_reach_the_gradients():
    """In the flag variant the backward pass carries FlagTensors and the gradients stay int8."""
    model = int_model("mlp", CFG, 0, 4, arithmetic=Arithmetic(errors="flag"))
    data = load_digits_split()
    x = quantize_input(data.train_x[:16], model.cfg)
    t = model.forward(x)
    e_y, _ = output_error(t["y"], data.train_y[:16], model.cfg)
    assert isinstance(e_y, FlagTensor)
    grads = model.backward(t, e_y)
    assert all(g.q.dtype == np.int8 for g in grads.values())
