"""Tests of the EOQ int8 Fixup residual MLP (golden_model/network.py) and the
host-side output error (golden_model/loss.py).

* determinism: same seed -> bit-identical parameters after N steps; different
  seed -> different;
* the trace records every op with int8 mantissas and integer exponents and
  survives a round trip through .npz;
* a whole training step re-derived in this file from the quantizers of
  quant.py (shift_quantize, align_add, update_weights) and NumPy integer
  products, independent of ops.py and of ResMLP.forward/backward;
* the weight update saturates and never wraps, even with lr = 1;
* bad input raises ValueError naming the problem;
* loss.output_error on a hand-worked case.

Random stimulus comes from the ``rng`` fixture, which prints its seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.loss import output_error
from golden_model.network import INPUT_EXP, ResMLP, Trace, quantize_input
from golden_model.quant import QTensor, align_add, shift_quantize, update_weights

CFG = get_config("default")
B = 16
FORWARD_OPS = ["fc1_forward", "fc2_forward", "fc3_forward", "scale_forward", "bias_forward",
               "residual_forward", "fc_out_forward"]
BACKWARD_OPS = ["fc_out_gradient", "fc_out_error", "join_relu_backward", "bias_gradient", "scale_gradient",
                "scale_error", "fc3_gradient", "fc3_error_relu", "fc2_gradient", "fc2_error",
                "skip_join_relu_backward", "fc1_gradient"]
PARAMS = ["fc1", "fc2", "fc3", "scale", "bias", "fc_out"]


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def batch_of(digits, rng, size=B):
    idx = rng.choice(len(digits.train_y), size=size, replace=False)
    return quantize_input(digits.train_x[idx], CFG), digits.train_y[idx]


def randomize_params(model: ResMLP, rng) -> None:
    """Nonzero values everywhere (Fixup zeros fc3/fc_out), keeping every exponent."""
    for name, p in model.params.items():
        model.params[name] = QTensor(rng.integers(-127, 128, size=p.q.shape).astype(np.int8), p.exp)
    model.params["scale"] = QTensor(np.array([int(rng.integers(32, 100))], dtype=np.int8), model.params["scale"].exp)


def train(seed: int, steps: int, digits, cfg=CFG, lr_shift=4) -> ResMLP:
    model = ResMLP(cfg, seed=seed, lr_shift=lr_shift)
    order = np.random.default_rng(1234).permutation(len(digits.train_y))
    for i in range(steps):
        idx = order[i * B:(i + 1) * B]
        model.train_step(quantize_input(digits.train_x[idx], cfg), digits.train_y[idx])
    return model


def same_params(a: ResMLP, b: ResMLP) -> bool:
    return all(a.params[k].exp == b.params[k].exp and np.array_equal(a.params[k].q, b.params[k].q)
               for k in PARAMS)


# --------------------------------------------------------------------------- determinism

def test_same_seed_is_bit_identical(digits):
    a, b = train(7, 12, digits), train(7, 12, digits)
    assert same_params(a, b)
    assert a.step == b.step == 12
    # the run really moved the parameters (otherwise the comparison proves nothing)
    assert not same_params(a, ResMLP(CFG, seed=7, lr_shift=4))


def test_different_seed_differs(digits):
    assert not same_params(train(7, 12, digits), train(8, 12, digits))


def test_stochastic_stream_depends_on_config_seed(digits):
    """Same init seed, different generator seed: same start, different trajectory."""
    other = CFG.replace(seed=CFG.seed ^ 0x5A5A)
    assert same_params(ResMLP(CFG, 7, 4), ResMLP(other, 7, 4))
    assert not same_params(train(7, 12, digits), train(7, 12, digits, cfg=other))


# --------------------------------------------------------------------------- trace

def test_trace_records_every_op(digits, rng, tmp_path):
    model = ResMLP(CFG, seed=1, lr_shift=4)
    randomize_params(model, rng)
    x, labels = batch_of(digits, rng)
    trace = Trace()
    model.train_step(x, labels, trace)
    ops_seen = [op for op, _, _ in trace.records]
    expected = FORWARD_OPS + ["host_output_error"] + BACKWARD_OPS + [f"{n}_update" for n in
                                                                     ["fc_out", "bias", "scale", "fc3", "fc2", "fc1"]]
    assert ops_seen == expected
    arrays = trace.arrays()
    prefixes = {key.split("/")[0] for key in arrays}
    assert prefixes == {f"{i:03d}_{op}" for i, op in enumerate(expected)}
    for i, (op, inputs, outputs) in enumerate(trace.records):
        assert inputs and outputs, op
        for direction, tensors in (("in", inputs), ("out", outputs)):
            for name, t in tensors.items():
                prefix = f"{i:03d}_{op}/{direction}/{name}"
                q, e = arrays[f"{prefix}/q"], arrays[f"{prefix}/exp"]
                assert q.dtype == np.int8 and np.array_equal(q, t.q), prefix
                assert e.dtype == np.int64 and e.shape == () and int(e) == t.exp, prefix
                assert np.abs(q.astype(np.int64)).max(initial=0) <= 127
    # shapes of a few representative tensors
    assert arrays["000_fc1_forward/in/x/q"].shape == (B, 64)
    assert arrays["006_fc_out_forward/out/y/q"].shape == (B, 10)
    assert arrays["007_host_output_error/out/e/q"].shape == (B, 10)
    assert arrays["011_bias_gradient/out/g/q"].shape == (1,)
    assert arrays["019_fc1_gradient/out/g/q"].shape == (64, 64)
    assert int(arrays["000_fc1_forward/in/x/exp"]) == INPUT_EXP

    path = tmp_path / "trace.npz"
    trace.save(path)
    with np.load(path) as loaded:
        assert set(loaded.files) == set(arrays)
        for key, value in arrays.items():
            assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
            assert np.array_equal(loaded[key], value), key


def test_trace_does_not_change_the_step(digits, rng):
    a, b = ResMLP(CFG, 2, 4), ResMLP(CFG, 2, 4)
    x, labels = batch_of(digits, rng)
    la = a.train_step(x, labels, Trace())
    lb = b.train_step(x, labels)
    assert la == lb and same_params(a, b)


# --------------------------------------------------------------------------- independent re-derivation

def ref_sq(acc, exp, mode, key=None, relu=False):
    return shift_quantize(np.asarray(acc, dtype=np.int64), exp, mode, CFG, key=key, relu=relu)


def ref_linear(a: QTensor, w: QTensor, relu=False) -> QTensor:
    acc = a.q.astype(np.int64) @ w.q.astype(np.int64).T
    return ref_sq(acc, a.exp + w.exp, CFG.act_rounding, relu=relu)


def ref_forward(p: dict[str, QTensor], x: QTensor) -> dict[str, QTensor]:
    a1 = ref_linear(x, p["fc1"], relu=True)
    z = ref_linear(a1, p["fc2"], relu=True)
    r = ref_linear(z, p["fc3"])
    sm = ref_sq(r.q.astype(np.int64) * int(p["scale"].q[0]), r.exp + p["scale"].exp, CFG.act_rounding)
    s = align_add(sm, p["bias"], CFG)
    a2 = align_add(a1, s, CFG, relu=True)
    y = ref_linear(a2, p["fc_out"])
    return {"a0": x, "a1": a1, "z": z, "r": r, "sm": sm, "s": s, "a2": a2, "y": y}


def ref_step(model: ResMLP, x: QTensor, labels) -> tuple[dict[str, QTensor], dict[str, QTensor]]:
    """New parameters after one step, written out without ops.py or ResMLP methods
    (only model.key for the per-tensor random-stream keys)."""
    p, err, grad = model.params, CFG.err_rounding, CFG.grad_rounding
    t = ref_forward(p, x)
    e_y, _ = output_error(t["y"], labels, CFG)

    def i64(v):
        return v.q.astype(np.int64)

    def mask(e: QTensor, a: QTensor) -> QTensor:
        return QTensor(np.where(a.q > 0, e.q, 0).astype(np.int8), e.exp)

    g = {"fc_out": ref_sq(i64(e_y).T @ i64(t["a2"]), e_y.exp + t["a2"].exp, grad, model.key("fc_out"))}
    e_join = mask(ref_sq(i64(e_y) @ i64(p["fc_out"]), e_y.exp + p["fc_out"].exp, err), t["a2"])
    g["bias"] = ref_sq([i64(e_join).sum()], e_join.exp, grad, model.key("bias"))
    g["scale"] = ref_sq([(i64(e_join) * i64(t["r"])).sum()], e_join.exp + t["r"].exp, grad, model.key("scale"))
    e_r = ref_sq(i64(e_join) * int(p["scale"].q[0]), e_join.exp + p["scale"].exp, err)
    g["fc3"] = ref_sq(i64(e_r).T @ i64(t["z"]), e_r.exp + t["z"].exp, grad, model.key("fc3"))
    e_z = mask(ref_sq(i64(e_r) @ i64(p["fc3"]), e_r.exp + p["fc3"].exp, err), t["z"])
    g["fc2"] = ref_sq(i64(e_z).T @ i64(t["a1"]), e_z.exp + t["a1"].exp, grad, model.key("fc2"))
    e_branch = ref_sq(i64(e_z) @ i64(p["fc2"]), e_z.exp + p["fc2"].exp, err)
    e_a1 = mask(align_add(e_join, e_branch, CFG), t["a1"])
    g["fc1"] = ref_sq(i64(e_a1).T @ i64(x), e_a1.exp + x.exp, grad, model.key("fc1"))
    new = {name: update_weights(p[name], g[name], model.lr_shift, CFG.update_rounding, CFG,
                                model.key(name, update=True)) for name in PARAMS}
    return new, g


def test_forward_matches_composition_of_quantizers(digits, rng):
    for trial in range(5):
        model = ResMLP(CFG, seed=trial, lr_shift=4)
        randomize_params(model, rng)
        x, _ = batch_of(digits, rng, size=int(rng.integers(1, B + 1)))
        got, want = model.forward(x), ref_forward(model.params, x)
        assert set(got) == set(want)
        for name in want:
            assert got[name].exp == want[name].exp, name
            assert np.array_equal(got[name].q, want[name].q), name
        assert np.any(got["y"].q != 0) and np.any(got["r"].q != 0), "all paths must carry signal"


def test_forward_at_fixup_init_gives_zero_logits(digits, rng):
    model = ResMLP(CFG, seed=0, lr_shift=4)
    x, _ = batch_of(digits, rng)
    t = model.forward(x)
    assert np.all(t["y"].q == 0) and np.all(t["r"].q == 0)
    assert np.array_equal(t["a2"].q, t["a1"].q) and t["a2"].exp == t["a1"].exp   # identity branch


def test_train_step_matches_rederivation(digits, rng):
    """Several consecutive steps, each compared bit for bit with ref_step."""
    model = ResMLP(CFG, seed=4, lr_shift=4)
    randomize_params(model, rng)
    for _ in range(8):
        x, labels = batch_of(digits, rng)
        want, want_g = ref_step(model, x, labels)
        trace = Trace()
        model.train_step(x, labels, trace)
        got_g = {op[:-len("_update")]: ins["g"] for op, ins, _ in trace.records if op.endswith("_update")}
        for name in PARAMS:
            assert got_g[name].exp == want_g[name].exp, name
            assert np.array_equal(got_g[name].q, want_g[name].q), name
        for name in PARAMS:
            assert model.params[name].exp == want[name].exp, name
            assert np.array_equal(model.params[name].q, want[name].q), name


def test_random_stream_keys_are_distinct():
    """Every gradient and update rounding of a step uses its own stream, new each step."""
    model = ResMLP(CFG, seed=0, lr_shift=4)
    keys = set()
    for step in range(3):
        model.step = step
        keys |= {model.key(n, update=u) for n in PARAMS for u in (False, True)}
    assert len(keys) == 3 * 2 * len(PARAMS)
    assert all(0 <= k < 2**32 for k in keys)


def test_macs_per_step(digits, rng):
    model = ResMLP(CFG, seed=0, lr_shift=4)
    x, labels = batch_of(digits, rng)
    model.train_step(x, labels)
    h, n_in, n_out = 64, 64, 10
    assert model.macs.by_phase == {
        "forward": B * (h * n_in + 2 * h * h + h + n_out * h),
        "backward": B * (n_out * h + h + 2 * h * h),
        "gradient": B * (n_out * h + h + 2 * h * h + h * n_in),
    }
    before = model.macs.total
    model.predict(quantize_input(digits.test_x, CFG))
    assert model.macs.total == before, "predict must not count"


# --------------------------------------------------------------------------- update saturation

def test_update_saturates_never_wraps():
    w = QTensor(np.array([-120, 120, -120, 120, 5, -5], dtype=np.int8), -7)
    g = QTensor(np.array([127, -127, 127, -127, 1, -1], dtype=np.int8), 0)     # huge: U saturates at 127
    new = update_weights(w, g, 0, "nearest", CFG)
    assert new.q.tolist() == [-127, 127, -127, 127, -122, 122]
    assert new.q.dtype == np.int8 and new.exp == -7


def test_lr_one_training_stays_in_range(digits, rng):
    """lr = 2**0 from random full-range weights: every update of every step moves
    each weight against its gradient (or not at all) and stays in [-127, 127];
    a wrap would flip the direction.  Thousands of weights hit the rails."""
    model = ResMLP(CFG, seed=0, lr_shift=0)
    randomize_params(model, rng)
    newly_saturated = 0
    for _ in range(10):
        x, labels = batch_of(digits, rng)
        trace = Trace()
        model.train_step(x, labels, trace)
        for op, inputs, outputs in trace.records:
            if not op.endswith("_update"):
                continue
            old, g, new = inputs["w"].q.astype(np.int64), inputs["g"].q, outputs["w"].q
            assert new.dtype == np.int8 and np.abs(new.astype(np.int64)).max() <= 127, op
            assert outputs["w"].exp == inputs["w"].exp, op
            step = old - new
            assert np.all((step == 0) | (np.sign(step) == np.sign(g))), f"{op}: update against the gradient (wrap?)"
            newly_saturated += int(np.sum((np.abs(new.astype(np.int64)) == 127) & (np.abs(old) < 127)))
    for name, p in model.params.items():
        assert np.abs(p.q.astype(np.int64)).max() <= 127, name
    assert newly_saturated > 100, "lr = 1 should drive many weights into saturation"


# --------------------------------------------------------------------------- bad input

def test_bad_input(digits):
    model = ResMLP(CFG, seed=0, lr_shift=4)
    with pytest.raises(ValueError, match=r"input must be \(batch, 64\)"):
        model.forward(QTensor(np.zeros((4, 63), dtype=np.int8), INPUT_EXP))
    with pytest.raises(ValueError, match=r"input must be \(batch, 64\)"):
        model.forward(QTensor(np.zeros(64, dtype=np.int8), INPUT_EXP))
    with pytest.raises(ValueError, match="batch 17 exceeds max_batch 16"):
        model.forward(QTensor(np.zeros((17, 64), dtype=np.int8), INPUT_EXP))
    with pytest.raises(ValueError, match="lr_shift"):
        ResMLP(CFG, seed=0, lr_shift=-1)
    x = quantize_input(digits.train_x[:4], CFG)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.train_step(x, np.array([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.train_step(x, np.array([0, -1, 2, 3]))
    with pytest.raises(ValueError, match="labels must be an integer array of shape"):
        model.train_step(x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="labels must be an integer array"):
        model.train_step(x, np.array([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="input must be"):
        quantize_input(np.zeros(64), CFG)
    with pytest.raises(ValueError, match="features"):
        ResMLP(CFG, seed=0, lr_shift=4, sizes={"fc1": (65, 64), "fc2": (64, 64), "fc3": (64, 64),
                                               "fc_out": (10, 64)})
    assert model.step == 0, "rejected steps must not advance the step counter"


def test_update_rejects_negative_lr_shift():
    w = QTensor(np.zeros(3, dtype=np.int8), -7)
    with pytest.raises(ValueError, match="lr_shift"):
        update_weights(w, w, -1, "nearest", CFG)


# --------------------------------------------------------------------------- host output error

def test_output_error_hand_case_uniform():
    """Zero logits, B = 1, label 0: p = 0.1 each, error = (p - onehot) = [-0.9, 0.1 x 9].

    On the grid 2**-24: -0.9 * 2**24 = -15099494.4 -> -15099494, 0.1 * 2**24 =
    1677721.6 -> 1677722.  max| | = 15099494 has 24 bits: shift 17, so
    -15099494 / 2**17 = -115.2 -> -115 and 1677722 / 2**17 = 12.8 -> 13, exp -7.
    Loss = ln 10."""
    logits = QTensor(np.zeros((1, 10), dtype=np.int8), -3)
    e, loss = output_error(logits, np.array([0]), CFG)
    assert e.exp == -7
    assert e.q.tolist() == [[-115] + [13] * 9]
    assert loss == pytest.approx(math.log(10.0), rel=1e-12)


def test_output_error_hand_case_batch2():
    """B = 2: logits 1.0 on class 0 for both samples (q = 64, exp -6); labels 0 and 3.

    p0 = e / (e + 9), p_other = 1 / (e + 9); errors divided by B = 2."""
    q = np.zeros((2, 10), dtype=np.int8)
    q[:, 0] = 64
    e, loss = output_error(QTensor(q, -6), np.array([0, 3]), CFG)
    p0, po = math.e / (math.e + 9), 1 / (math.e + 9)
    grad = np.full((2, 10), po / 2)
    grad[:, 0] = p0 / 2
    grad[0, 0] -= 0.5
    grad[1, 3] -= 0.5
    fixed = np.sign(grad) * np.floor(np.abs(grad) * 2**24 + 0.5)
    shift = int(np.abs(fixed).max()).bit_length() - 7
    want = np.sign(fixed) * np.floor(np.abs(fixed) / 2**shift + 0.5)
    assert e.exp == -24 + shift == -8       # max |error| = (1 - p0) / 2 = 0.384 -> 98 * 2**-8
    assert e.q.tolist() == want.astype(int).tolist()
    assert e.q[1, 0] == round(p0 / 2 * 256) == 30
    assert loss == pytest.approx(-(math.log(p0) + math.log(po)) / 2, rel=1e-12)
