"""Tests of the EOQ integer quantizers (golden_model/quant.py) and CoreConfig validation.

Hand-worked cases first, then Hypothesis properties checked against plain-Python
references built on ``fractions.Fraction`` (exact, independent of NumPy), then
statistical checks of stochastic rounding.  Any NumPy random stimulus comes
from the ``rng`` fixture, which prints its seed (set TEST_SEED to replay).

"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golden_model.config import CONFIGS, ROUNDING_MODES, CoreConfig, get_config
from golden_model.prng import random_words
from golden_model.quant import (
    QTensor,
    align_add,
    bit_length,
    check_acc,
    check_int8,
    direct_quantize,
    fixed_point,
    round_shift,
    saturate,
    shift_quantize,
    shift_to_exp,
    sq_shift,
    to_int8,
    update_weights,
)

CFG = CoreConfig()
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- fixtures / references

def qt(values, exp=0) -> QTensor:
    return QTensor(np.array(values, dtype=np.int8), exp)


def ref_round_half_away(q: Fraction) -> int:
    """Exact round-half-away-from-zero of a rational."""
    mag = math.floor(abs(q) + Fraction(1, 2))
    return mag if q >= 0 else -mag


def ref_clip(v: int) -> int:
    return max(-127, min(127, v))


def ref_shift_nearest(x: int, s: int) -> int:
    return ref_round_half_away(Fraction(x, 2**s))


def ints(values) -> list[int]:
    return [int(v) for v in np.asarray(values).ravel()]


# --------------------------------------------------------------------------- round_shift: hand cases

@pytest.mark.parametrize(
    "shift, x, expected",
    [
        # exact ties x.5, both signs: half away from zero
        (1, [1, 3, 5, 7, -1, -3, -5, -7], [1, 2, 3, 4, -1, -2, -3, -4]),
        (2, [2, 6, 10, -2, -6, -10], [1, 2, 3, -1, -2, -3]),
        (3, [4, 12, 20, -4, -12, -20], [1, 2, 3, -1, -2, -3]),
        (7, [64, 192, -64, -192], [1, 2, -1, -2]),
        # just below / above ties
        (3, [3, 5, -3, -5, 11, 13, -11, -13], [0, 1, 0, -1, 1, 2, -1, -2]),
        # non-tie negatives (would differ from a truncating or flooring shift)
        (2, [-1, -5, -7, -9], [0, -1, -2, -2]),
        # shift 0: identity, no rounding at all
        (0, [-128, -1, 0, 1, 127, INT32_MIN, INT32_MAX], [-128, -1, 0, 1, 127, INT32_MIN, INT32_MAX]),
        # int32 accumulator extremes
        (24, [INT32_MIN, INT32_MAX], [-128, 128]),
        (25, [INT32_MIN, INT32_MAX], [-64, 64]),
        (30, [INT32_MIN, INT32_MAX], [-2, 2]),
        (31, [INT32_MIN, INT32_MAX, 2**30, -(2**30), 2**30 - 1], [-1, 1, 1, -1, 0]),
    ],
)
def test_round_shift_nearest_hand_cases(shift, x, expected):
    out = round_shift(np.array(x, dtype=np.int64), shift, "nearest", CFG)
    assert out.dtype == np.int64
    assert ints(out) == expected


def test_round_shift_zero_tensor_any_shift():
    for s in (0, 1, 7, 31, 32):
        assert ints(round_shift(np.zeros(5, np.int64), s, "nearest", CFG)) == [0] * 5
        assert ints(round_shift(np.zeros(5, np.int64), s, "stochastic", CFG, key=123)) == [0] * 5


def test_round_shift_flushes_above_max_shift():
    x = np.array([INT32_MIN, INT32_MAX, 1, -1], dtype=np.int64)
    # shift 32: -2**31 / 2**32 = -0.5 would round to -1; the hardware flushes to zero instead
    assert ints(round_shift(x, 32, "nearest", CFG)) == [0, 0, 0, 0]
    assert ints(round_shift(x, 40, "stochastic", CFG, key=7)) == [0, 0, 0, 0]
    # flush is governed by cfg.max_shift, even when the true value is large
    small = CFG.replace(max_shift=8)
    big = np.array([2**20, -(2**20)], dtype=np.int64)
    assert ints(round_shift(big, 8, "nearest", small)) == [4096, -4096]
    assert ints(round_shift(big, 9, "nearest", small)) == [0, 0]


def test_round_shift_does_not_alias_input():
    x = np.array([5, -5], dtype=np.int64)
    out = round_shift(x, 0, "nearest", CFG)
    out[0] = 99
    assert x[0] == 5


def test_round_shift_stochastic_hand_case():
    """5/4 = 1.25 rounds up iff the low 2 bits of r are 3; -5/4 = -1.25 (floor -2, frac .75)
    rounds up to -1 iff the low 2 bits are >= 1 (r + 3 >= 4)."""
    key, n = 0xDEADBEEF, 64
    low = random_words(key, n).astype(np.int64) & 3
    up = round_shift(np.full(n, 5), 2, "stochastic", CFG, key=key)
    assert ints(up) == [2 if v == 3 else 1 for v in low]
    down = round_shift(np.full(n, -5), 2, "stochastic", CFG, key=key)
    assert ints(down) == [-1 if v >= 1 else -2 for v in low]
    # both outcomes occur in 64 draws for this key (sanity that the stream is used)
    assert set(ints(up)) == {1, 2}


def test_round_shift_stochastic_exact_values_unchanged():
    x = np.arange(-50, 50, dtype=np.int64) * 8
    for key in (0, 1, 0xFFFFFFFF, 0x12345678):
        assert ints(round_shift(x, 3, "stochastic", CFG, key=key)) == ints(x // 8)


def test_round_shift_bad_inputs():
    x = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="non-negative shift"):
        round_shift(x, -1, "nearest", CFG)
    with pytest.raises(ValueError, match="rounding mode"):
        round_shift(x, 2, "floor", CFG)
    with pytest.raises(ValueError, match="rounding mode"):
        round_shift(x, 2, "Nearest", CFG)
    with pytest.raises(ValueError, match="key"):
        round_shift(x, 2, "stochastic", CFG)
    with pytest.raises(ValueError, match="32-bit"):
        round_shift(x, 2, "stochastic", CFG, key=-1)
    with pytest.raises(ValueError, match="32-bit"):
        round_shift(x, 2, "stochastic", CFG, key=2**32)


@pytest.mark.parametrize("shift", [0, 32])
def test_round_shift_rejects_bad_mode_at_any_shift(shift):
    with pytest.raises(ValueError):
        round_shift(np.array([3]), shift, "bogus", CFG)


# --------------------------------------------------------------------------- saturate / sq_shift

def test_saturate_both_ends_never_minus_128():
    x = np.array([-(2**40), INT32_MIN, -300, -129, -128, -127, 0, 127, 128, 300, INT32_MAX, 2**40])
    out = saturate(x, CFG)
    assert out.dtype == np.int8
    assert ints(out) == [-127, -127, -127, -127, -127, -127, 0, 127, 127, 127, 127, 127]


@pytest.mark.parametrize(
    "acc, shift",
    [
        ([0, 0, 0], 0), ([], 0), ([1], 0), ([63, -64], 0), ([127], 0), ([-127], 0),
        ([128], 1), ([-128], 1), ([255], 1), ([-255], 1), ([256], 2), ([-256, 3], 2),
        ([INT32_MAX], 24), ([INT32_MIN], 25), ([2**24 - 1], 17), ([2**24], 18),
    ],
)
def test_sq_shift_hand_cases(acc, shift):
    assert sq_shift(np.array(acc, dtype=np.int64), CFG) == shift


def test_bit_length():
    assert [bit_length(m) for m in (0, 1, 2, 3, 127, 128, 2**31)] == [0, 1, 2, 2, 7, 8, 32]
    with pytest.raises(ValueError, match="non-negative"):
        bit_length(-1)


# --------------------------------------------------------------------------- shift_quantize: hand cases

@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("exp", [-13, 0, 9])
def test_sq_of_zeros_gives_zeros_and_same_exponent(mode, relu, exp):
    t = shift_quantize(np.zeros((3, 4), dtype=np.int64), exp, mode, CFG, key=1, relu=relu)
    assert t.q.dtype == np.int8 and t.q.shape == (3, 4)
    assert not t.q.any()
    assert t.exp == exp


@pytest.mark.parametrize(
    "acc, exp, q, out_exp",
    [
        # fits already: no shift, no change
        ([127, -127, 3, 0], -5, [127, -127, 3, 0], -5),
        ([5, -1], 2, [5, -1], 2),
        # 127.5 -> 128 -> saturates to 127;  -127.5 -> -128 -> saturates to -127
        ([255, -255], 3, [127, -127], 4),
        ([255, 1, -1, 2, -3], 0, [127, 1, -1, 1, -2], 1),
        # -128 inputs never give -128 out
        ([-128], 0, [-64], 1),
        ([-128, 127], -7, [-64, 64], -6),
        # ties at shift 2 (x.5 both signs) beside a peak that fixes the shift
        ([2, -2, 6, -6, 10, -10, 256], 0, [1, -1, 2, -2, 3, -3, 64], 2),
        # int32 accumulator extremes
        ([INT32_MAX], 0, [127], 24),
        ([INT32_MIN], 0, [-64], 25),
        ([INT32_MIN, INT32_MAX, 2**24, -(2**25) - 2**24, -(2**24) - 2**23], -20, [-64, 64, 1, -2, -1], 5),
    ],
)
def test_sq_nearest_hand_cases(acc, exp, q, out_exp):
    t = shift_quantize(np.array(acc, dtype=np.int64), exp, "nearest", CFG)
    assert t.q.dtype == np.int8
    assert ints(t.q) == q
    assert t.exp == out_exp


def test_sq_relu():
    acc = np.array([-300, 100, 200, -1])
    t = shift_quantize(acc, 0, "nearest", CFG, relu=True)
    assert ints(t.q) == [0, 50, 100, 0] and t.exp == 1  # peak 200 after relu
    t = shift_quantize(acc, 0, "nearest", CFG, relu=False)
    assert ints(t.q) == [-75, 25, 50, 0] and t.exp == 2  # peak 300 (-1/4 -> 0)
    t = shift_quantize(np.array([-(2**30), -5]), 4, "nearest", CFG, relu=True)
    assert ints(t.q) == [0, 0] and t.exp == 4


def test_sq_stochastic_saturation_and_shape():
    acc = np.full((40, 50), 255, dtype=np.int64)
    acc[::2] *= -1
    t = shift_quantize(acc, 0, "stochastic", CFG, key=0xABCDEF)
    assert t.q.shape == (40, 50) and t.exp == 1
    # +127.5 -> 127 or 128 -> 127; -127.5 -> -128 or -127 -> -127
    assert (t.q[::2] == -127).all() and (t.q[1::2] == 127).all()


def test_sq_bad_mode_and_missing_key():
    with pytest.raises(ValueError, match="rounding mode"):
        shift_quantize(np.array([1000]), 0, "truncate", CFG)
    with pytest.raises(ValueError, match="key"):
        shift_quantize(np.array([1000]), 0, "stochastic", CFG)


def test_sq_zero_dim_input():
    t = shift_quantize(np.array(300), 0, "nearest", CFG)
    assert int(t.q) == 75 and t.exp == 2


# --------------------------------------------------------------------------- align_add

def test_align_add_same_exponent():
    t = align_add(qt([10, -20, 0], -3), qt([5, 5, 0], -3), CFG)
    assert ints(t.q) == [15, -15, 0] and t.exp == -3


def test_align_add_different_exponents_both_orders():
    a = qt([3, -3, 5, 100, -7], -2)  # 0.75, -0.75, 1.25, 25, -1.75
    b = qt([1, 1, 1, 1, 0], 0)
    # a at exp 0: [1, -1, 1, 25, -2]; sum [2, 0, 2, 26, -2]
    for t in (align_add(a, b, CFG), align_add(b, a, CFG)):
        assert ints(t.q) == [2, 0, 2, 26, -2] and t.exp == 0


def test_align_add_alignment_ties_round_away():
    t = align_add(qt([1, -1, 3, -3, 5, -5], 0), qt([0] * 6, 1), CFG)
    assert ints(t.q) == [1, -1, 2, -2, 3, -3] and t.exp == 1


def test_align_add_nine_bit_sum_requantized():
    t = align_add(qt([127, -127, 1, -2], 0), qt([127, -127, 0, -1], 0), CFG)
    # [254, -254, 1, -3] >> 1 nearest: [127, -127, 1 (0.5), -2 (-1.5)]
    assert ints(t.q) == [127, -127, 1, -2] and t.exp == 1
    t = align_add(qt([-128, 5], 0), qt([-128, 0], 0), CFG)
    assert ints(t.q) == [-64, 1] and t.exp == 2  # -256 -> -64, 5/4 -> 1


def test_align_add_broadcast_scalar():
    a = QTensor(np.array([[10, -10], [0, 100]], dtype=np.int8), -1)  # 5, -5, 0, 50
    b = QTensor(np.array(3, dtype=np.int8), 0)  # scalar 3
    t = align_add(a, b, CFG)
    assert t.q.shape == (2, 2) and t.exp == 0
    assert t.q.tolist() == [[8, -2], [3, 53]]
    # scalar with the finer exponent: 5 * 2**-2 = 1.25 -> 1
    t = align_add(qt([4, -4], 0), QTensor(np.array(5, dtype=np.int8), -2), CFG)
    assert ints(t.q) == [5, -3] and t.exp == 0
    # relu after the add
    t = align_add(qt([4, -4], 0), QTensor(np.array(-1, dtype=np.int8), 0), CFG, relu=True)
    assert ints(t.q) == [3, 0] and t.exp == 0


def test_align_add_huge_exponent_gap_flushes_smaller():
    t = align_add(qt([100, -100], 0), qt([100, 1], 40), CFG)
    assert ints(t.q) == [100, 1] and t.exp == 40


def test_shift_to_exp_only_coarsens():
    with pytest.raises(ValueError, match="coarsens"):
        shift_to_exp(qt([1], 3), 2, CFG)
    assert ints(shift_to_exp(qt([-3, 3], -1), 0, CFG)) == [-2, 2]


# --------------------------------------------------------------------------- fixed_point / direct_quantize

def test_fixed_point_ties_and_scales():
    assert ints(fixed_point([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, -0.49], 0)) == [1, 2, 3, -1, -2, -3, 0, 0]
    assert ints(fixed_point([0.125, -0.375, 0.1, -0.0], -2)) == [1, -2, 0, 0]  # 0.5, -1.5, 0.4, -0
    assert ints(fixed_point([6.0, -10.0, 1.9, 2.0], 2)) == [2, -3, 0, 1]  # 1.5, -2.5, 0.475, 0.5
    assert ints(fixed_point([1000.0, -1000.0], 0)) == [1000, -1000]  # unclipped
    assert fixed_point([1.0], 0).dtype == np.int64


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_direct_quantize_saturation_both_ends():
    t = direct_quantize([127.5, -127.5, 127.49, -127.49, 126.5, -128.0, 1000.0, -1e20, 0.0], 0, CFG)
    assert t.q.dtype == np.int8 and t.exp == 0
    assert ints(t.q) == [127, -127, 127, -127, 127, -127, 127, -127, 0]
    t = direct_quantize([0.75, -0.75, 40.0], -1, CFG)
    assert ints(t.q) == [2, -2, 80] and t.exp == -1


@pytest.mark.parametrize("x", [1e20, 2.0**63, -1e20])
def test_direct_quantize_huge_saturates(x):
    assert ints(direct_quantize([x], 0, CFG).q) == [127 if x > 0 else -127]


@pytest.mark.parametrize("x", [float("nan"), float("inf"), float("-inf")])
def test_direct_quantize_rejects_non_finite(x):
    with pytest.raises(ValueError, match="NaN or infinity"):
        direct_quantize([x], 0, CFG)


@pytest.mark.parametrize("x, expected", [(0.49999999999999994, 0), (-0.49999999999999994, 0),
                                         (2.0**53 - 1, 2**53 - 1)])
def test_fixed_point_no_double_rounding(x, expected):
    assert ints(fixed_point([x], 0)) == [expected]


def test_direct_quantize_scalar():
    assert int(direct_quantize(1.5, 0, CFG).q) == 2


# --------------------------------------------------------------------------- update_weights: hand cases

def test_update_positive_shift_nearest():
    w = qt([10, -10, 0, 50, 0, 0], -7)
    g = qt([64, -64, 3, -3, 2, -6], -7)
    t = update_weights(w, g, 2, "nearest", CFG)  # U = g/4 = [16, -16, .75, -.75, .5, -1.5]
    assert ints(t.q) == [10 - 16, -10 + 16, -1, 51, -1, 2]
    assert t.exp == -7 and t.q.dtype == np.int8


def test_update_negative_shift():
    # shift = w.exp + lr_shift - g.exp = -7 + 1 + 3 = -3: U = g * 8
    t = update_weights(qt([10, -10, 0], -7), qt([1, -2, 0], -3), 1, "nearest", CFG)
    assert ints(t.q) == [2, 6, 0] and t.exp == -7
    # very negative shift: U saturates to +-127 before the subtraction
    t = update_weights(qt([100, -100, 5], 0), qt([1, -1, 0], 10), 0, "stochastic", CFG, key=9)
    assert ints(t.q) == [100 - 127, -100 + 127, 5]


def test_update_saturates_w_both_ends():
    t = update_weights(qt([-120, 120, -127, 127, -128], 0), qt([100, -100, 127, -127, 1], 0), 0, "nearest", CFG)
    assert ints(t.q) == [-127, 127, -127, 127, -127]
    # U itself saturated: g=-128 -> U=-127, W=0+127
    t = update_weights(qt([0, 0], 0), qt([-128, 127], 0), 0, "nearest", CFG)
    assert ints(t.q) == [127, -127]


def test_update_tiny_updates():
    w = qt([3, -3], 0)
    # shift 40 > max_shift: flushed, W unchanged
    assert ints(update_weights(w, qt([127, -127], -40), 0, "nearest", CFG).q) == [3, -3]
    # 1/8 of an LSB: nearest never moves W
    assert ints(update_weights(w, qt([1, -1], 0), 3, "nearest", CFG).q) == [3, -3]


def test_update_bad_inputs():
    w, g = qt([1, 2], 0), qt([1, 2], 0)
    with pytest.raises(ValueError, match="shape"):
        update_weights(w, qt([1, 2, 3], 0), 0, "nearest", CFG)
    with pytest.raises(ValueError, match="lr_shift"):
        update_weights(w, g, -1, "nearest", CFG)  # lr = 2 (or a non-power-of-two encoded negatively)
    with pytest.raises(ValueError, match="rounding mode"):
        update_weights(w, g, 1, "sr", CFG)
    with pytest.raises(ValueError, match="key"):
        update_weights(w, g, 1, "stochastic", CFG)
    with pytest.raises(ValueError, match="QTensor.q"):
        update_weights(w, QTensor(np.array([1, 2], dtype=np.int16), 0), 0, "nearest", CFG)


def test_update_rejects_bad_mode_with_negative_shift():
    with pytest.raises(ValueError):
        update_weights(qt([1], 0), qt([1], 5), 0, "bogus", CFG)


def test_update_rejects_fractional_lr_shift():
    with pytest.raises(ValueError):
        update_weights(qt([1], 0), qt([1], 0), 0.5, "nearest", CFG)


# --------------------------------------------------------------------------- QTensor / to_int8 / check_acc

@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16, np.int32, np.int64, np.uint8, np.bool_])
def test_qtensor_rejects_wrong_dtype(dtype):
    with pytest.raises(ValueError, match=r"QTensor\.q.*dtype int8"):
        QTensor(np.zeros(3, dtype=dtype), 0)


def test_qtensor_rejects_non_arrays_and_bad_exp():
    with pytest.raises(ValueError, match=r"QTensor\.q"):
        QTensor([1, 2, 3], 0)
    with pytest.raises(ValueError, match=r"QTensor\.exp"):
        QTensor(np.zeros(3, np.int8), 1.0)
    with pytest.raises(ValueError, match=r"QTensor\.exp"):
        QTensor(np.zeros(3, np.int8), True)
    t = QTensor(np.zeros(3, np.int8), np.int64(-4))
    assert type(t.exp) is int and t.exp == -4


def test_check_int8_names_the_tensor():
    with pytest.raises(ValueError, match="weights_l2"):
        check_int8("weights_l2", np.zeros(2, np.int16))


def test_to_int8():
    out = to_int8("acts", [-128, 0, 127])
    assert out.dtype == np.int8 and ints(out) == [-128, 0, 127]
    assert to_int8("acts", np.array([], dtype=np.int64)).size == 0
    with pytest.raises(ValueError, match=r"acts.*\[0, 128\].*\[-128, 127\]"):
        to_int8("acts", [0, 128])
    with pytest.raises(ValueError, match=r"grad.*\[-129, 5\].*\[-128, 127\]"):
        to_int8("grad", np.array([-129, 5], dtype=np.int64))
    with pytest.raises(ValueError, match="bias.*integers"):
        to_int8("bias", [0.5])


def test_check_acc():
    ok = check_acc("acc", np.array([INT32_MIN, INT32_MAX]), CFG)
    assert ok.dtype == np.int64
    with pytest.raises(OverflowError, match="32-bit"):
        check_acc("acc", np.array([INT32_MAX + 1]), CFG)
    with pytest.raises(OverflowError, match="24-bit"):
        check_acc("acc", np.array([-(2**23) - 1]), CFG.replace(acc_bits=24, max_batch=16, max_features=16, max_dim=16,
                                                                        acc_elements=256, tmem_bytes=512))


def test_qtensor_to_float_exact():
    t = qt([-127, -1, 0, 1, 127], -9)
    assert [Fraction(v) for v in t.to_float()] == [Fraction(v, 2**9) for v in (-127, -1, 0, 1, 127)]


# --------------------------------------------------------------------------- CoreConfig validation

def test_config_defaults_and_named():
    assert CFG.qmax == 127 and CFG.qmin == -127
    assert CFG.acc_min == INT32_MIN and CFG.acc_max == INT32_MAX
    for name, cfg in CONFIGS.items():
        assert get_config(name) is cfg and cfg.name == name
        assert CoreConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown configuration 'nope'"):
        get_config("nope")
    with pytest.raises(ValueError, match="unknown configuration keys"):
        CoreConfig.from_dict({"data_bitz": 8})


@pytest.mark.parametrize("bits", [4, 7, 9, 16])
def test_config_bad_data_bits(bits):
    with pytest.raises(ValueError, match="data_bits"):
        CoreConfig(data_bits=bits)


@pytest.mark.parametrize("field", ["act_rounding", "err_rounding", "grad_rounding", "update_rounding"])
@pytest.mark.parametrize("mode", ["floor", "Nearest", "", "round"])
def test_config_bad_rounding_name(field, mode):
    with pytest.raises(ValueError, match=field):
        CoreConfig(**{field: mode})


def test_config_accumulator_overflow_boundary():
    # longest sum = max(max_dim, tmem_bytes / 2) products of 128 * 128 = 2**14; it must stay below 2**31,
    # so max(max_dim, tmem_bytes / 2) < 2**17 = 131072
    CoreConfig(max_dim=131071)
    with pytest.raises(ValueError, match="overflow"):
        CoreConfig(max_dim=131072)
    CoreConfig(tmem_bytes=262136)                       # 131068 products
    with pytest.raises(ValueError, match="overflow"):
        CoreConfig(tmem_bytes=262144)                   # 131072
    # 24-bit accumulators: below 2**9 = 512 products
    small = dict(acc_bits=24, max_features=16, max_batch=16, acc_elements=256, tmem_bytes=1016)
    CoreConfig(**small, max_dim=511)
    with pytest.raises(ValueError, match="overflow"):
        CoreConfig(**small, max_dim=512)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"acc_bits": 16}, "acc_bits"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"array_rows": 0}, "array_rows"),
        ({"max_batch": 0}, "max_batch"),
        ({"acc_elements": 4095}, "acc_elements"),
    ],
)
def test_config_other_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        CoreConfig(**changes)


# --------------------------------------------------------------------------- Hypothesis properties

int32s = st.integers(INT32_MIN, INT32_MAX)
wide_ints = st.integers(-(2**40), 2**40)
keys = st.integers(0, 2**32 - 1)
acc_arrays = st.lists(int32s, min_size=1, max_size=40)


@PROPS
@given(x=st.lists(wide_ints, min_size=1, max_size=20), shift=st.integers(0, 31))
def test_prop_round_shift_nearest_matches_fraction_reference(x, shift):
    out = round_shift(np.array(x, dtype=np.int64), shift, "nearest", CFG)
    assert ints(out) == [ref_shift_nearest(v, shift) for v in x]


@PROPS
@given(x=st.lists(wide_ints, min_size=1, max_size=20), shift=st.integers(0, 31), key=keys)
def test_prop_round_shift_stochastic_is_floor_or_ceil(x, shift, key):
    out = ints(round_shift(np.array(x, dtype=np.int64), shift, "stochastic", CFG, key=key))
    for v, r in zip(x, out):
        q = Fraction(v, 2**shift)
        if q.denominator == 1:
            assert r == q
        else:
            assert r in (math.floor(q), math.ceil(q))


@PROPS
@given(x=st.lists(wide_ints, min_size=2, max_size=30), shift=st.integers(1, 31), key=keys,
       cut=st.integers(1, 29))
def test_prop_stochastic_counter_based(x, shift, key, cut):
    """Element i's rounding depends only on (key, flat index i): prefixes agree,
    reshaping does not matter, and a repeat call gives the same answer."""
    arr = np.array(x, dtype=np.int64)
    full = round_shift(arr, shift, "stochastic", CFG, key=key)
    assert ints(full) == ints(round_shift(arr, shift, "stochastic", CFG, key=key))
    cut = min(cut, len(x) - 1)
    assert ints(round_shift(arr[:cut], shift, "stochastic", CFG, key=key)) == ints(full[:cut])
    if len(x) % 2 == 0:
        two_d = round_shift(arr.reshape(2, -1), shift, "stochastic", CFG, key=key)
        assert ints(two_d) == ints(full)


@PROPS
@given(acc=acc_arrays, exp=st.integers(-40, 40), mode=st.sampled_from(ROUNDING_MODES), key=keys,
       relu=st.booleans())
def test_prop_sq_range_peak_and_exponent(acc, exp, mode, key, relu):
    t = shift_quantize(np.array(acc, dtype=np.int64), exp, mode, CFG, key=key, relu=relu)
    assert t.q.dtype == np.int8 and t.q.shape == (len(acc),)
    assert type(t.exp) is int
    qs = ints(t.q)
    assert all(-127 <= v <= 127 for v in qs)
    eff = [max(v, 0) for v in acc] if relu else acc
    peak = max(abs(v) for v in eff)
    shift = t.exp - exp
    assert shift == max(0, peak.bit_length() - 7)
    if peak <= 127:
        assert shift == 0 and qs == eff  # fits exactly, untouched
    else:
        assert 64 <= max(abs(v) for v in qs) <= 127
    # value = q * 2**exp exactly
    assert [Fraction(v) for v in t.to_float()] == [Fraction(v) * Fraction(2) ** t.exp for v in qs]


@PROPS
@given(acc=acc_arrays, relu=st.booleans())
def test_prop_sq_nearest_error_at_most_half_lsb(acc, relu):
    t = shift_quantize(np.array(acc, dtype=np.int64), 0, "nearest", CFG, relu=relu)
    s = t.exp
    eff = [max(v, 0) for v in acc] if relu else acc
    for v, q in zip(eff, ints(t.q)):
        exact = Fraction(v, 2**s)
        assert q == ref_clip(ref_round_half_away(exact))
        if abs(exact) < Fraction(255, 2):  # no saturation: within half an output LSB
            assert abs(q - exact) <= Fraction(1, 2)
        else:  # saturated: 127.5 <= |exact| < 128
            assert abs(q) == 127 and abs(q - exact) < 1


@PROPS
@given(acc=acc_arrays, key=keys)
def test_prop_sq_stochastic_floor_or_ceil_then_saturate(acc, key):
    t = shift_quantize(np.array(acc, dtype=np.int64), 0, "stochastic", CFG, key=key)
    for v, q in zip(acc, ints(t.q)):
        exact = Fraction(v, 2**t.exp)
        assert q in {ref_clip(math.floor(exact)), ref_clip(math.ceil(exact))}


int8_lists = st.lists(st.integers(-128, 127), min_size=1, max_size=20)


@PROPS
@given(data=st.data(), ea=st.integers(-20, 20), eb=st.integers(-20, 20), relu=st.booleans())
def test_prop_align_add_matches_reference(data, ea, eb, relu):
    a = data.draw(int8_lists)
    scalar_b = data.draw(st.booleans())
    b = data.draw(st.integers(-128, 127)) if scalar_b else data.draw(
        st.lists(st.integers(-128, 127), min_size=len(a), max_size=len(a)))
    ta = QTensor(np.array(a, dtype=np.int8), ea)
    tb = QTensor(np.array(b, dtype=np.int8), eb)
    t = align_add(ta, tb, CFG, relu=relu)
    t2 = align_add(tb, ta, CFG, relu=relu)
    assert ints(t.q) == ints(t2.q) and t.exp == t2.exp  # commutative
    # independent reference: align each to the larger exponent, add, relu, SQ
    e = max(ea, eb)
    bl = [b] * len(a) if scalar_b else b

    def align(v, ev):
        return 0 if e - ev > CFG.max_shift else ref_round_half_away(Fraction(v) * Fraction(2) ** (ev - e))

    total = [align(x, ea) + align(y, eb) for x, y in zip(a, bl)]
    if relu:
        total = [max(v, 0) for v in total]
    s = max(0, max(abs(v) for v in total).bit_length() - 7)
    assert t.exp == e + s
    assert ints(t.q) == [ref_clip(ref_shift_nearest(v, s)) for v in total]


@PROPS
@given(data=st.data(), w_exp=st.integers(-20, 20), g_exp=st.integers(-20, 20), lr_shift=st.integers(0, 12),
       mode=st.sampled_from(ROUNDING_MODES), key=keys)
def test_prop_update_weights_matches_reference(data, w_exp, g_exp, lr_shift, mode, key):
    w = data.draw(int8_lists)
    g = data.draw(st.lists(st.integers(-128, 127), min_size=len(w), max_size=len(w)))
    t = update_weights(QTensor(np.array(w, np.int8), w_exp), QTensor(np.array(g, np.int8), g_exp),
                       lr_shift, mode, CFG, key=key)
    assert t.q.dtype == np.int8 and t.exp == w_exp
    for wv, gv, out in zip(w, g, ints(t.q)):
        u = Fraction(gv) * Fraction(2) ** (g_exp - lr_shift - w_exp)
        assert -127 <= out <= 127
        if mode == "nearest":
            assert out == ref_clip(wv - ref_clip(ref_round_half_away(u)))
        else:
            assert out in {ref_clip(wv - ref_clip(math.floor(u))), ref_clip(wv - ref_clip(math.ceil(u)))}


@PROPS
@given(k=st.integers(-(2**40), 2**40), m=st.integers(0, 12), exp=st.integers(-8, 8))
def test_prop_fixed_point_matches_fraction_reference(k, m, exp):
    """Dyadic inputs k / 2**m (exact in float64): fixed_point is round-half-away of x / 2**exp."""
    x = k / 2.0**m
    got = ints(fixed_point([x], exp))[0]
    assert got == ref_round_half_away(Fraction(k, 2**m) / Fraction(2) ** exp)
    q = direct_quantize([x], exp, CFG)
    assert ints(q.q) == [ref_clip(got)] and q.exp == exp


@PROPS
@given(x=st.floats(-1e6, 1e6, allow_nan=False), exp=st.integers(-10, 10))
def test_prop_direct_quantize_range_and_error(x, exp):
    t = direct_quantize(np.array([x]), exp, CFG)
    q = ints(t.q)[0]
    assert t.q.dtype == np.int8 and -127 <= q <= 127
    exact = Fraction(x) / Fraction(2) ** exp
    if abs(exact) <= 127:
        assert abs(q - exact) <= Fraction(1, 2)
    else:
        assert q == (127 if exact > 0 else -127)


# --------------------------------------------------------------------------- stochastic rounding statistics

N_STAT = 200_000
Z = 5.0  # standard errors allowed: a two-sided 5-sigma bound (p ~ 6e-7 per check for a fair rounder)


@pytest.mark.parametrize("shift", [1, 3, 8, 16, 24])
def test_stochastic_rounding_unbiased_mixed(rng, shift):
    """mean(round(x) - x) over 200k random x is within 5 standard errors of 0; the standard
    error sqrt(sum f(1-f)) / n comes from the Bernoulli variance of each element's fraction f."""
    x = rng.integers(-(2**30), 2**30, size=N_STAT, dtype=np.int64)
    key = int(rng.integers(0, 2**32))
    out = round_shift(x, shift, "stochastic", CFG, key=key)
    frac = (x & ((1 << shift) - 1)).astype(np.float64) / 2.0**shift
    err = (out - (x >> shift)).astype(np.float64) - frac  # rounded - exact, exactly computed
    se = math.sqrt(float(np.sum(frac * (1 - frac)))) / N_STAT
    assert se > 0
    assert abs(err.mean()) <= Z * se, (err.mean(), se)


@pytest.mark.parametrize("shift, numer", [(1, 1), (3, 1), (3, 3), (3, 7), (8, 1), (8, 200), (13, 4097), (20, 3)])
@pytest.mark.parametrize("sign", [1, -1])
def test_stochastic_rounding_probability_per_fraction(rng, shift, numer, sign):
    """For a constant fraction f the round-up rate is f (nearest rounding would fail this)."""
    base = int(rng.integers(-1000, 1000))
    x = sign * (base * (1 << shift) + numer)
    key = int(rng.integers(0, 2**32))
    out = round_shift(np.full(N_STAT, x, dtype=np.int64), shift, "stochastic", CFG, key=key)
    lo = x >> shift
    assert set(np.unique(out).tolist()) <= {lo, lo + 1}
    f = (x - (lo << shift)) / 2.0**shift
    rate = float(np.mean(out == lo + 1))
    se = math.sqrt(f * (1 - f) / N_STAT)
    assert abs(rate - f) <= Z * se, (rate, f, se)


def test_stochastic_update_unbiased(rng):
    """A weight update of 1/8 LSB moves W by -1 with probability 1/8."""
    n = N_STAT
    key = int(rng.integers(0, 2**32))
    w = QTensor(np.zeros(n, np.int8), 0)
    g = QTensor(np.ones(n, np.int8), 0)
    out = update_weights(w, g, 3, "stochastic", CFG, key=key).q
    assert set(np.unique(out).tolist()) == {-1, 0}
    p = 1 / 8
    assert abs(float(np.mean(out == -1)) - p) <= Z * math.sqrt(p * (1 - p) / n)
