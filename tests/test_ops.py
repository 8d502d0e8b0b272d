"""Tests of the EOQ layer operations (golden_model/ops.py).

Every op is an integer product (or element-wise op) into wide accumulators
followed by one quantizer.  The checks:

* before quantization the accumulators equal plain Python loops over ints and
  float64 products of the dequantized inputs (exact: every product of two
  int8 values has at most 15 significant bits and all products of one
  accumulator share one exponent, so float64 sums of up to 2**38 of them are
  exact);
* after quantization, with round-to-nearest, the dequantized result is within
  half an output LSB of the exact value.  Justification: SQ picks the shift
  s = max(0, bitlen(max|acc|) - 7), so |acc| / 2**s < 128; round half away
  from zero has error <= 1/2 LSB.  The one exception is saturation: when
  |acc| / 2**s lies in [127.5, 128) the rounded 128 saturates to 127 and the
  error is < 1 LSB.  The tests assert exactly that (<= 1/2 LSB unless the
  element saturated; saturated elements are +-127 with error < 1 LSB).
  With stochastic rounding, floor(x + u) with u in [0, 1) is floor(x) or
  floor(x) + 1, so the error is < 1 LSB;
* backward ops against their float formulas;
* MacCounter counts, bad input, accumulator overflow.

Random stimulus comes from the ``rng`` fixture, which prints its seed
(set TEST_SEED=<n> to replay).
"""

from __future__ import annotations


import numpy as np
import pytest

from golden_model import ops
from golden_model.config import CoreConfig, get_config
from golden_model.quant import QTensor

CFG = get_config("default")                  # nearest act/err, stochastic grad
CFG_NEAREST = get_config("default_nearest")  # nearest everywhere
CASES = 40


# --------------------------------------------------------------------------- helpers

def rand_q(rng, shape, bound=None) -> np.ndarray:
    """Random int8 mantissas in [-bound, bound]; bound drawn so that small and
    large accumulators (shift 0 and shift > 0) both occur."""
    if bound is None:
        bound = int(rng.choice([1, 2, 7, 31, 127]))
    return rng.integers(-bound, bound + 1, size=shape).astype(np.int8)


def rand_qt(rng, shape, bound=None, exp=None) -> QTensor:
    if exp is None:
        exp = int(rng.integers(-12, 4))
    return QTensor(rand_q(rng, shape, bound), exp)


def rand_dims(rng):
    return tuple(int(v) for v in rng.integers(1, 9, size=3))


def loop_matmul(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """(M, K) x (K, N) with Python ints, no NumPy arithmetic."""
    m, k = a.shape
    n = b.shape[1]
    return [[sum(int(a[i, t]) * int(b[t, j]) for t in range(k)) for j in range(n)] for i in range(m)]


def expected_shift(acc: np.ndarray) -> int:
    peak = int(np.abs(np.asarray(acc, dtype=np.int64)).max()) if np.size(acc) else 0
    return max(0, peak.bit_length() - 7)


def check_quantized(out: QTensor, exact: np.ndarray, in_exp: int, acc: np.ndarray, mode: str) -> None:
    """out must be the SQ of the integer accumulator ``acc`` (value acc * 2**in_exp,
    equal to the float ``exact``) within the rounding bound of ``mode``."""
    acc = np.asarray(acc, dtype=np.int64)
    assert np.array_equal(acc.astype(np.float64) * 2.0 ** in_exp, exact), "accumulator != exact float product"
    assert out.q.dtype == np.int8 and out.q.shape == acc.shape
    shift = expected_shift(acc)
    assert out.exp == in_exp + shift, f"exponent {out.exp}, expected {in_exp} + {shift}"
    if shift > 0:   # the scale is the finest that holds the peak: max|q| lands in [64, 127]
        assert 64 <= np.abs(out.q.astype(np.int64)).max() <= 127
    assert np.abs(out.q.astype(np.int64)).max(initial=0) <= 127, "-128 must never be produced"
    lsb = 2.0 ** out.exp
    err = np.abs(out.to_float() - exact) / lsb          # in output LSBs (exact in float64)
    ratio = np.abs(exact) / lsb                         # |acc| / 2**shift
    saturated = ratio >= 127.5 if mode == "nearest" else ratio > 127
    if mode == "nearest":
        assert np.all(err[~saturated] <= 0.5), f"nearest error {err[~saturated].max()} LSB > 1/2"
        # ties go away from zero
        tie = (ratio % 1.0 == 0.5) & ~saturated
        assert np.all(np.abs(out.q[tie].astype(np.int64)) == np.ceil(ratio[tie]))
    else:
        floor = np.floor(exact / lsb)
        ok = (out.q == np.clip(floor, -127, 127)) | (out.q == np.clip(floor + 1, -127, 127))
        assert np.all(ok), "stochastic rounding gave neither floor nor floor + 1"
        assert np.all(err[~saturated] < 1.0)
    assert np.all(np.abs(out.q[saturated].astype(np.int64)) == 127)
    assert np.all(np.sign(out.q[saturated]) == np.sign(exact[saturated]))
    assert np.all(err[saturated] < 1.0)


# --------------------------------------------------------------------------- accumulators

def test_matmul_accumulator_equals_loops_and_float(rng):
    for _ in range(CASES):
        m, k, n = rand_dims(rng)
        a = rng.integers(-128, 128, size=(m, k)).astype(np.int8)   # full int8 range, including -128
        b = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
        acc = ops._matmul("t", a, b, CFG)
        assert acc.dtype == np.int64
        assert acc.tolist() == loop_matmul(a, b)
        assert np.array_equal(acc.astype(np.float64), a.astype(np.float64) @ b.astype(np.float64))


def test_extreme_products_do_not_wrap():
    """-128 * -128 summed 64 times = 2**20: would wrap in int8/int16 arithmetic."""
    a = np.full((1, 64), -128, dtype=np.int8)
    acc = ops._matmul("t", a, a.T.copy(), CFG)
    assert acc.tolist() == [[64 * 128 * 128]]


def test_small_accumulators_pass_unchanged(rng):
    """If every |acc| <= 127 the shift is 0 and the op output IS the accumulator."""
    x = QTensor(np.array([[1, -1, 2, 0]], dtype=np.int8), -3)
    w = QTensor(np.array([[1, 1, 1, 1], [3, 0, -2, 5]], dtype=np.int8), -5)
    y = ops.linear_forward(x, w, CFG)
    assert y.exp == -8 and y.q.tolist() == [[2, -1]]
    for _ in range(CASES):
        b, k, n = rand_dims(rng)
        xq, wq = rand_q(rng, (b, k), 3), rand_q(rng, (n, k), 3)    # |acc| <= 8 * 9 = 72
        y = ops.linear_forward(QTensor(xq, 0), QTensor(wq, 0), CFG)
        assert y.exp == 0 and y.q.tolist() == loop_matmul(xq, wq.T)


# --------------------------------------------------------------------------- forward ops

@pytest.mark.parametrize("relu", [False, True])
def test_linear_forward(rng, relu):
    for _ in range(CASES):
        b, k, n = rand_dims(rng)
        x, w = rand_qt(rng, (b, k)), rand_qt(rng, (n, k))
        y = ops.linear_forward(x, w, CFG, relu=relu)
        acc = np.array(loop_matmul(x.q, w.q.T), dtype=np.int64).reshape(b, n)
        exact = x.to_float() @ w.to_float().T
        if relu:
            acc, exact = np.maximum(acc, 0), np.maximum(exact, 0.0)
        check_quantized(y, exact, x.exp + w.exp, acc, CFG.act_rounding)
        if relu:
            assert np.all(y.q >= 0)


def test_scale_forward(rng):
    for _ in range(CASES):
        x = rand_qt(rng, tuple(rng.integers(1, 9, size=2)))
        m = rand_qt(rng, (1,))
        y = ops.scale_forward(x, m, CFG)
        acc = np.array([[int(v) * int(m.q[0]) for v in row] for row in x.q], dtype=np.int64)
        check_quantized(y, m.to_float()[0] * x.to_float(), x.exp + m.exp, acc, CFG.act_rounding)


@pytest.mark.parametrize("relu", [False, True])
def test_bias_forward(rng, relu):
    """X + b aligned to the coarser exponent E with round-to-nearest, then SQ.

    Bound: the finer operand is rounded once to 2**E (<= 1/2 * 2**E), the sum is
    then SQ'd (<= 1/2 output LSB, or < 1 LSB if it saturates).  ReLU is
    1-Lipschitz so the bound holds through it."""
    for _ in range(CASES):
        x = rand_qt(rng, tuple(rng.integers(1, 9, size=2)))
        b = rand_qt(rng, (1,), exp=x.exp + int(rng.integers(-3, 4)))
        y = ops.bias_forward(x, b, CFG, relu=relu)
        exact = x.to_float() + b.to_float()[0]
        if relu:
            exact = np.maximum(exact, 0.0)
        check_aligned_sum(y, exact, x, b)


def check_aligned_sum(y: QTensor, exact: np.ndarray, a: QTensor, b: QTensor) -> None:
    coarse = max(a.exp, b.exp)
    assert y.q.dtype == np.int8 and y.q.shape == exact.shape
    assert y.exp in (coarse, coarse + 1), "9-bit sums need at most one extra shift"
    align_err = 0.0 if a.exp == b.exp else 0.5 * 2.0 ** coarse
    ratio = np.abs(exact) / 2.0 ** y.exp
    bound = np.where(ratio + align_err / 2.0 ** y.exp >= 127.5, 1.0, 0.5) * 2.0 ** y.exp + align_err
    err = np.abs(y.to_float() - exact)
    assert np.all(err <= bound), f"aligned-sum error {err.max()} exceeds bound"
    assert np.abs(y.q.astype(np.int64)).max(initial=0) <= 127


def test_residual_add(rng):
    for _ in range(CASES):
        shape = tuple(rng.integers(1, 9, size=2))
        a = rand_qt(rng, shape)
        b = rand_qt(rng, shape, exp=a.exp + int(rng.integers(-4, 5)))
        for relu in (False, True):
            y = ops.residual_add(a, b, CFG, relu=relu)
            exact = a.to_float() + b.to_float()
            if relu:
                exact = np.maximum(exact, 0.0)
            check_aligned_sum(y, exact, a, b)


def test_residual_add_same_exponent_is_half_lsb(rng):
    """With equal exponents no alignment rounding happens: plain SQ of the 9-bit sum."""
    for _ in range(CASES):
        shape = tuple(rng.integers(1, 9, size=2))
        a, b = rand_qt(rng, shape, exp=-5), rand_qt(rng, shape, exp=-5)
        y = ops.residual_add(a, b, CFG)
        acc = a.q.astype(np.int64) + b.q
        check_quantized(y, a.to_float() + b.to_float(), -5, acc, "nearest")


def test_residual_add_hand_case():
    a = QTensor(np.array([[100, -100, 3]], dtype=np.int8), 0)
    b = QTensor(np.array([[100, -100, 1]], dtype=np.int8), -1)   # 50, -50, 0.5 (-> 1, half away)
    y = ops.residual_add(a, b, CFG)
    # aligned sum at exp 0: [150, -150, 4]; SQ shift 1: [75, -75, 2]
    assert y.exp == 1 and y.q.tolist() == [[75, -75, 2]]


# --------------------------------------------------------------------------- backward ops

@pytest.mark.parametrize("cfg", [CFG, CFG_NEAREST], ids=["default", "nearest"])
def test_linear_backward_error(rng, cfg):
    """Ex = Ey . W against the float formula (error rounding is nearest in both configs)."""
    for _ in range(CASES):
        b, k, n = rand_dims(rng)
        e, w = rand_qt(rng, (b, n)), rand_qt(rng, (n, k))
        ex = ops.linear_backward_error(e, w, cfg)
        acc = np.array(loop_matmul(e.q, w.q), dtype=np.int64).reshape(b, k)
        check_quantized(ex, e.to_float() @ w.to_float(), e.exp + w.exp, acc, cfg.err_rounding)


@pytest.mark.parametrize("cfg", [CFG, CFG_NEAREST], ids=["stochastic", "nearest"])
def test_linear_weight_gradient(rng, cfg):
    """G = Ey^T . X summed over the batch."""
    for case in range(CASES):
        b, k, n = rand_dims(rng)
        e, x = rand_qt(rng, (b, n)), rand_qt(rng, (b, k))
        g = ops.linear_weight_gradient(e, x, cfg, key=1000 + case)
        acc = np.array(loop_matmul(e.q.T, x.q), dtype=np.int64).reshape(n, k)
        check_quantized(g, e.to_float().T @ x.to_float(), e.exp + x.exp, acc, cfg.grad_rounding)


@pytest.mark.parametrize("cfg", [CFG, CFG_NEAREST], ids=["stochastic", "nearest"])
def test_scale_gradient(rng, cfg):
    """dL/dm = sum(E * X) as a (1,) tensor."""
    for case in range(CASES):
        shape = tuple(rng.integers(1, 9, size=2))
        e, x = rand_qt(rng, shape), rand_qt(rng, shape)
        g = ops.scale_gradient(e, x, cfg, key=77 + case)
        total = sum(int(a) * int(v) for a, v in zip(e.q.ravel(), x.q.ravel()))
        assert g.q.shape == (1,)
        check_quantized(g, np.array([np.sum(e.to_float() * x.to_float())]), e.exp + x.exp,
                        np.array([total]), cfg.grad_rounding)


def test_scale_backward_error(rng):
    for _ in range(CASES):
        e = rand_qt(rng, tuple(rng.integers(1, 9, size=2)))
        m = rand_qt(rng, (1,))
        ex = ops.scale_backward_error(e, m, CFG)
        acc = e.q.astype(np.int64) * int(m.q[0])
        check_quantized(ex, m.to_float()[0] * e.to_float(), e.exp + m.exp, acc, CFG.err_rounding)


@pytest.mark.parametrize("cfg", [CFG, CFG_NEAREST], ids=["stochastic", "nearest"])
def test_bias_gradient(rng, cfg):
    """dL/db = sum(E)."""
    for case in range(CASES):
        e = rand_qt(rng, tuple(rng.integers(1, 9, size=2)))
        g = ops.bias_gradient(e, cfg, key=5 + case)
        total = sum(int(v) for v in e.q.ravel())
        assert g.q.shape == (1,)
        check_quantized(g, np.array([e.to_float().sum()]), e.exp, np.array([total]), cfg.grad_rounding)


def test_relu_backward(rng):
    for _ in range(CASES):
        shape = tuple(rng.integers(1, 9, size=2))
        e, a = rand_qt(rng, shape), rand_qt(rng, shape)
        out = ops.relu_backward(e, a)
        assert out.exp == e.exp and out.q.dtype == np.int8
        assert np.array_equal(out.to_float(), e.to_float() * (a.to_float() > 0))   # exact
    e = QTensor(np.array([5, -6, 7, -8], dtype=np.int8), -3)
    a = QTensor(np.array([1, 0, -1, 127], dtype=np.int8), -9)
    assert ops.relu_backward(e, a).q.tolist() == [5, 0, 0, -8]


def test_stochastic_gradient_is_reproducible_and_key_dependent(rng):
    e, x = rand_qt(rng, (16, 8), 127), rand_qt(rng, (16, 8), 127)
    g1 = ops.linear_weight_gradient(e, x, CFG, key=123)
    g2 = ops.linear_weight_gradient(e, x, CFG, key=123)
    assert np.array_equal(g1.q, g2.q) and g1.exp == g2.exp
    others = [ops.linear_weight_gradient(e, x, CFG, key=k).q for k in range(124, 130)]
    assert any(not np.array_equal(g1.q, o) for o in others)


def test_stochastic_gradient_needs_key():
    e = QTensor(np.full((4, 4), 100, dtype=np.int8), 0)
    with pytest.raises(ValueError, match="key"):
        ops.linear_weight_gradient(e, e, CFG, key=None)


# --------------------------------------------------------------------------- MAC counting

def test_mac_counter_counts(rng):
    b, k, n = 5, 7, 3
    macs = ops.MacCounter()
    x, w, e = rand_qt(rng, (b, k)), rand_qt(rng, (n, k)), rand_qt(rng, (b, n))
    m = rand_qt(rng, (1,))
    ops.linear_forward(x, w, CFG, macs=macs)
    assert macs.by_phase == {"forward": b * k * n}
    ops.linear_backward_error(e, w, CFG, macs=macs)
    assert macs.by_phase["backward"] == b * n * k
    ops.linear_weight_gradient(e, x, CFG, key=1, macs=macs)
    assert macs.by_phase["gradient"] == n * k * b
    ops.scale_forward(x, m, CFG, macs=macs)
    ops.scale_backward_error(x, m, CFG, macs=macs)
    ops.scale_gradient(x, x, CFG, key=2, macs=macs)
    assert macs.by_phase == {"forward": b * k * n + b * k, "backward": b * n * k + b * k,
                             "gradient": n * k * b + b * k}
    # element-wise additions and masks are not multiplies
    before = dict(macs.by_phase)
    ops.bias_gradient(e, CFG, key=3)
    ops.relu_backward(e, e)
    ops.residual_add(x, x, CFG)
    ops.bias_forward(x, m, CFG)
    assert macs.by_phase == before
    assert macs.total == sum(before.values()) == 3 * b * k * n + 3 * b * k
    # no counter: nothing breaks
    ops.linear_forward(x, w, CFG, macs=None)


def test_mac_counter_accumulates():
    c = ops.MacCounter()
    assert c.total == 0 and c.by_phase == {}
    c.add("forward", 3)
    c.add("forward", np.int64(4))
    c.add("gradient", 1)
    assert c.by_phase == {"forward": 7, "gradient": 1} and c.total == 8
    assert all(type(v) is int for v in c.by_phase.values())


# --------------------------------------------------------------------------- bad input

def q8(shape, exp=0) -> QTensor:
    return QTensor(np.ones(shape, dtype=np.int8), exp)


@pytest.mark.parametrize("call, words", [
    (lambda: ops.linear_forward(q8((2, 5)), q8((3, 4)), CFG), ["input", "weight"]),
    (lambda: ops.linear_forward(q8((5,)), q8((3, 5)), CFG), ["input", "weight"]),
    (lambda: ops.linear_backward_error(q8((2, 4)), q8((3, 4)), CFG), ["error", "weight"]),
    (lambda: ops.linear_weight_gradient(q8((2, 3)), q8((4, 3)), CFG, key=1), ["error", "input", "batch"]),
    (lambda: ops.relu_backward(q8((2, 3)), q8((2, 4))), ["error", "activation"]),
    (lambda: ops.scale_gradient(q8((2, 3)), q8((3, 2)), CFG, key=1), ["error", "input"]),
    (lambda: ops.residual_add(q8((2, 3)), q8((2, 4)), CFG), ["residual_add", "shape"]),
    (lambda: ops.scale_forward(q8((2, 3)), q8((2,)), CFG), ["multiplier", "scalar"]),
    (lambda: ops.scale_forward(q8((2, 3)), q8(()), CFG), ["multiplier", "scalar"]),
    (lambda: ops.scale_backward_error(q8((2, 3)), q8((1, 1)), CFG), ["multiplier", "scalar"]),
    (lambda: ops.bias_forward(q8((2, 3)), q8((3,)), CFG), ["bias", "scalar"]),
], ids=["fwd-width", "fwd-1d", "err-width", "grad-batch", "relu-shape", "scalegrad-shape",
        "residual-shape", "scale-vector", "scale-0d", "scaleerr-2d", "bias-vector"])
def test_bad_shapes_raise_value_error_naming_tensor(call, words):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.float32])
def test_wrong_dtype_raises_value_error_naming_tensor(dtype):
    with pytest.raises(ValueError, match=r"QTensor\.q.*int8"):
        QTensor(np.ones((2, 2), dtype=dtype), 0)


@pytest.mark.parametrize("exp", [1.0, "3", True, None])
def test_non_integer_exponent_rejected(exp):
    with pytest.raises(ValueError, match=r"QTensor\.exp"):
        QTensor(np.ones((2, 2), dtype=np.int8), exp)


def test_matmul_rejects_bad_shapes():
    with pytest.raises(ValueError, match="mytensor"):
        ops._matmul("mytensor", np.ones((2, 3), np.int8), np.ones((2, 3), np.int8), CFG)


# --------------------------------------------------------------------------- accumulator overflow

ACC24 = CoreConfig(name="acc24", acc_bits=24, max_batch=16, max_features=16, max_dim=16, acc_elements=256,
                   tmem_bytes=512)
ACC24_MAX = 2**23 - 1


def max_dot_operands(extra: int = 0):
    """x . w = 2**23 - 1 + extra exactly: 520 * 127*127 + 12*127 + 3*1 (+ extra*1)."""
    x = [127] * 520 + [127, 3] + [1] * extra
    w = [127] * 520 + [12, 1] + [1] * extra
    return np.array([x], dtype=np.int8), np.array([w], dtype=np.int8)


def test_acc24_boundary_fits():
    x, w = max_dot_operands()
    y = ops.linear_forward(QTensor(x, 0), QTensor(w, 0), ACC24)
    assert y.exp == 23 - 7 and y.q.tolist() == [[127]]       # (2**23 - 1) / 2**16 = 127.99 -> saturates
    neg = ops.linear_forward(QTensor(-x, 0), QTensor(w, 0), ACC24)
    assert neg.q.tolist() == [[-127]]


def test_acc24_overflow_raises():
    x, w = max_dot_operands(extra=1)                          # 2**23: one past the 24-bit maximum
    with pytest.raises(OverflowError, match="24-bit"):
        ops.linear_forward(QTensor(x, 0), QTensor(w, 0), ACC24)
    with pytest.raises(OverflowError, match="linear_backward_error"):
        ops.linear_backward_error(QTensor(x, 0), QTensor(w.T.copy(), 0), ACC24)
    with pytest.raises(OverflowError, match="linear_weight_gradient"):
        ops.linear_weight_gradient(QTensor(x.T.copy(), 0), QTensor(w.T.copy(), 0), ACC24, key=1)
    with pytest.raises(OverflowError, match="scale_gradient"):
        ops.scale_gradient(QTensor(x, 0), QTensor(w, 0), ACC24, key=1)


def test_acc24_negative_boundary():
    """-2**23 is representable in 24 bits; -2**23 - 1 is not."""
    x, w = max_dot_operands(extra=1)                          # exactly 2**23
    ops.linear_forward(QTensor(-x, 0), QTensor(w, 0), ACC24)  # -2**23 fits
    x2, w2 = max_dot_operands(extra=2)
    with pytest.raises(OverflowError):
        ops.linear_forward(QTensor(-x2, 0), QTensor(w2, 0), ACC24)


def test_bias_gradient_overflow():
    n = 2**23 // 127 + 1                                       # sum just over 2**23 - 1
    e = QTensor(np.full(n, 127, dtype=np.int8), 0)
    with pytest.raises(OverflowError, match="bias_gradient"):
        ops.bias_gradient(e, ACC24, key=1)


def test_acc32_long_dot_product_fine():
    x, w = max_dot_operands(extra=1)
    y = ops.linear_forward(QTensor(x, 0), QTensor(w, 0), CFG)
    assert y.exp == 24 - 7 and y.q.tolist() == [[64]]        # 2**23 / 2**17


def test_saturation_hand_cases():
    """Peaks just under the next power of two round up to 128 and must saturate, not wrap."""
    for value, shift, q in [(255, 1, 127), (-255, 1, -127), (16383, 7, 127), (-16383, 7, -127),
                            (254, 1, 127), (253, 1, 127), (251, 1, 126), (-251, 1, -126), (128, 1, 64)]:
        k = abs(value)          # written as a dot product of <=127 chunks with ones
        xs, ws = [], []
        while k:
            part = min(k, 127)
            xs.append(part)
            ws.append(1)
            k -= part
        sign = 1 if value > 0 else -1
        xt = QTensor(np.array([[sign * v for v in xs]], dtype=np.int8), -2)
        wt = QTensor(np.array([ws], dtype=np.int8), -3)
        y = ops.linear_forward(xt, wt, CFG)
        assert (y.exp, y.q.tolist()) == (-5 + shift, [[q]]), value
        check_quantized(y, np.array([[value * 2.0 ** -5]]), -5, np.array([[value]]), "nearest")
