"""Gradient check of the float reference (golden_model/float_ref.py).

FloatResMLP.loss_and_grads writes its gradients out by hand; here they are
compared with central finite differences of the loss, all in float64: the
parameters are copied to float64 and the loss is computed with the model's
own forward in float64.  fc3, fc_out, the multiplier and the bias get nonzero
values (Fixup initializes fc3 and fc_out to zero, which would leave whole
paths with zero gradient and make the check vacuous).

loss_and_grads casts the output error (p - onehot) / B to float32 (by design:
it is the float32 reference).  That relative perturbation of 2**-24 per
element is not a gradient bug, but where a gradient's terms cancel it shows up
as a relative error above 1e-5.  The main check therefore runs loss_and_grads
with float_ref's ``np.float32`` mapped to float64 (a namespace shim; the code
under test is unchanged), so every formula is checked in pure float64; a
second test bounds the effect of the real float32 cast.

Error bound: central differences with step h have truncation error
O(h**2 * f''') and round-off O(eps * |L| / h); with h = 1e-6 and |L| ~ 2
that is ~1e-10 absolute, so |g - fd| <= 1e-5 * max(|g|, |fd|) + 1e-9.

Random stimulus comes from the ``rng`` fixture, which prints its seed.
"""

from __future__ import annotations

import copy

import types

import numpy as np
import pytest

from golden_model import float_ref
from golden_model.data import load_digits_split
from golden_model.float_ref import FloatResMLP
from golden_model.loss import cross_entropy, softmax

REL_TOL = 1e-5
STEP = 1e-6
ATOL = 1e-9
SAMPLES = 300


def float64_namespace():
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.float32 = np.float64
    return shim


@pytest.fixture
def pure_float64(monkeypatch):
    """Make float_ref's ``np.float32`` mean float64 (only inside float_ref)."""
    monkeypatch.setattr(float_ref, "np", float64_namespace())


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def float64_model(rng, seed: int) -> FloatResMLP:
    model = FloatResMLP(seed=seed, lr_shift=4)
    p = {k: v.astype(np.float64) for k, v in model.params.items()}
    p["fc3"] = rng.normal(0.0, 0.3, size=p["fc3"].shape)
    p["fc_out"] = rng.normal(0.0, 0.3, size=p["fc_out"].shape)
    p["scale"] = np.array([rng.uniform(0.5, 1.5)])
    p["bias"] = np.array([rng.uniform(-0.3, 0.3)])
    model.params = p
    return model


def loss64(model: FloatResMLP, x: np.ndarray, labels: np.ndarray) -> float:
    y = model.forward(x)["y"]
    assert y.dtype == np.float64
    return cross_entropy(softmax(y), labels)


def sample_coordinates(rng, params, count):
    """All scalar parameters plus ``count`` random coordinates spread over the matrices."""
    coords = [("scale", (0,)), ("bias", (0,))]
    matrices = [k for k in params if params[k].ndim == 2]
    for i in range(count):
        name = matrices[i % len(matrices)]
        coords.append((name, tuple(int(rng.integers(0, n)) for n in params[name].shape)))
    return coords


@pytest.mark.parametrize("batch", [1, 8])
def test_gradients_match_finite_differences(rng, digits, batch, pure_float64):
    seed = int(rng.integers(0, 1000))
    model = float64_model(rng, seed)
    idx = rng.choice(len(digits.train_y), size=batch, replace=False)
    x = digits.train_x[idx] / 16.0                       # float64 input
    labels = digits.train_y[idx]
    loss, grads = model.loss_and_grads(x, labels)
    assert loss == pytest.approx(loss64(model, x, labels), rel=1e-12)
    assert set(grads) == set(model.params)
    for name, g in grads.items():
        assert g.dtype == np.float64, name
        assert g.shape == model.params[name].shape, name
        assert np.any(g != 0), f"gradient of {name} is identically zero: path not exercised"

    worst = 0.0
    for name, index in sample_coordinates(rng, model.params, SAMPLES):
        p = model.params[name]
        saved = p[index]
        p[index] = saved + STEP
        up = loss64(model, x, labels)
        p[index] = saved - STEP
        down = loss64(model, x, labels)
        p[index] = saved
        fd = (up - down) / (2 * STEP)
        g = float(grads[name][index])
        err = abs(g - fd)
        assert err <= REL_TOL * max(abs(g), abs(fd)) + ATOL, \
            f"{name}{index}: analytic {g!r} vs finite difference {fd!r}"
        if max(abs(g), abs(fd)) > 1e-4:
            worst = max(worst, err / max(abs(g), abs(fd)))
    print(f"worst relative error over coordinates with |g| > 1e-4: {worst:.2e}")


def cast_error_bounds(model: FloatResMLP, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Rigorous bound on the effect of rounding the output error to float32.

    Each element of e_y moves by at most 2**-24 |e_y|; the gradients are linear
    in e_y, so each gradient element moves by at most 2**-24 times the same
    backward pass run on absolute values (|e_y|, |W|, |activations|, masks)."""
    p, t = model.params, model.forward(x)
    probs = softmax(t["y"])
    e_y = probs.copy()
    e_y[np.arange(len(labels)), labels] -= 1.0
    a_y = np.abs(e_y / len(labels))
    a_join = (a_y @ np.abs(p["fc_out"])) * (t["a2"] > 0)
    a_r = a_join * abs(p["scale"][0])
    a_z = (a_r @ np.abs(p["fc3"])) * (t["z"] > 0)
    a_a1 = (a_join + a_z @ np.abs(p["fc2"])) * (t["a1"] > 0)
    total = {"fc_out": a_y.T @ np.abs(t["a2"]), "bias": np.array([a_join.sum()]),
             "scale": np.array([(a_join * np.abs(t["r"])).sum()]), "fc3": a_r.T @ np.abs(t["z"]),
             "fc2": a_z.T @ np.abs(t["a1"]), "fc1": a_a1.T @ np.abs(x)}
    return {k: 2.0**-24 * v * (1 + 1e-6) for k, v in total.items()}


def test_float32_error_cast_is_small(rng, digits):
    """The real (float32-cast) gradients differ from the pure float64 ones by no
    more than the rigorous bound of cast_error_bounds, element by element."""
    model = float64_model(rng, 1)
    idx = rng.choice(len(digits.train_y), size=8, replace=False)
    x, labels = digits.train_x[idx] / 16.0, digits.train_y[idx]
    _, cast = model.loss_and_grads(x, labels)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(float_ref, "np", float64_namespace())
        _, exact = model.loss_and_grads(x, labels)
    bounds = cast_error_bounds(model, x, labels)
    for name in exact:
        diff = np.abs(cast[name] - exact[name])
        assert np.all(diff <= bounds[name] + 1e-15), name
    assert any(np.any(cast[n] != exact[n]) for n in exact), "the cast should be visible"


def test_gradient_check_detects_a_wrong_gradient(rng, digits, pure_float64):
    """The check above must be able to fail: a sign flip in one path is caught."""
    model = float64_model(rng, 0)
    x, labels = digits.train_x[:4] / 16.0, digits.train_y[:4]
    _, grads = model.loss_and_grads(x, labels)
    p = model.params["scale"]
    p[0] += STEP
    up = loss64(model, x, labels)
    p[0] -= 2 * STEP
    down = loss64(model, x, labels)
    fd = (up - down) / (2 * STEP)
    assert abs(grads["scale"][0] - fd) <= REL_TOL * abs(fd)
    assert abs(-grads["scale"][0] - fd) > REL_TOL * abs(fd)


def test_float32_model_stays_float32(digits):
    model = FloatResMLP(seed=0, lr_shift=4)
    x = FloatResMLP.input(digits.train_x[:16])
    assert x.dtype == np.float32
    loss, grads = model.loss_and_grads(x, digits.train_y[:16])
    assert np.isfinite(loss)
    assert all(g.dtype == np.float32 for g in grads.values())
    model.train_step(x, digits.train_y[:16])
    assert all(v.dtype == np.float32 for v in model.params.values())


def test_train_step_is_sgd(digits):
    """train_step applies p <- p - 2**-lr_shift * g with the gradients of loss_and_grads."""
    model = FloatResMLP(seed=3, lr_shift=5)
    x, labels = FloatResMLP.input(digits.train_x[:8]), digits.train_y[:8]
    before = copy.deepcopy(model.params)
    _, grads = model.loss_and_grads(x, labels)
    model.train_step(x, labels)
    for name in before:
        expected = (before[name] - np.float32(2.0**-5) * grads[name]).astype(np.float32)
        np.testing.assert_array_equal(model.params[name], expected, err_msg=name)


def test_zero_init_paths(digits):
    """With Fixup's zero fc_out, the logits are zero and the loss is log(10)."""
    model = FloatResMLP(seed=0, lr_shift=4)
    loss, grads = model.loss_and_grads(FloatResMLP.input(digits.train_x[:8]), digits.train_y[:8])
    assert loss == pytest.approx(np.log(10.0), rel=1e-6)
    assert np.all(grads["fc1"] == 0) and np.all(grads["fc3"] == 0)   # blocked by zero fc_out
    assert np.any(grads["fc_out"] != 0)


def test_labels_validated():
    model = FloatResMLP(seed=0, lr_shift=4)
    x = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="labels"):
        model.loss_and_grads(x, np.array([0, 10]))
    with pytest.raises(ValueError, match="labels"):
        model.loss_and_grads(x, np.array([0]))
