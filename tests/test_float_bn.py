"""The batch-norm references (golden_model/float_bn.py): hand-worked batch normalization, gradients
against central finite differences in float64, running statistics at test, training through FloatTarget."""

from __future__ import annotations

import numpy as np
import pytest

from golden_model.cnn import ResNetSpec
from golden_model.data import load_digits_split
from golden_model.float_bn import EPS, MOMENTUM, FloatBNResCNN, FloatBNResMLP, batch_norm, batch_norm_backward
from golden_model.loss import cross_entropy, softmax
from golden_model.train import FloatTarget, run_training

STEP = 1e-6
REL_TOL = 1e-5
ATOL = 1e-8


def test_batch_norm_hand_worked():
    x = np.array([[1.0, 0.0], [3.0, 4.0]])
    stats = {"mean": np.zeros(2), "var": np.ones(2)}
    y, _ = batch_norm(x, np.array([2.0, 1.0]), np.array([0.5, 0.0]), stats, training=True)
    # channel 0: mean 2, biased var 1 -> x_hat = -1, 1 (up to EPS); channel 1: mean 2, var 4 -> -1, 1
    np.testing.assert_allclose(y[:, 0], [2 * -1 / np.sqrt(1 + EPS) + 0.5, 2 * 1 / np.sqrt(1 + EPS) + 0.5])
    np.testing.assert_allclose(y[:, 1], [-2 / np.sqrt(4 + EPS), 2 / np.sqrt(4 + EPS)])
    # running: mean 0.9 * 0 + 0.1 * 2, var 0.9 * 1 + 0.1 * unbiased (2 and 8)
    np.testing.assert_allclose(stats["mean"], [MOMENTUM * 2, MOMENTUM * 2])
    np.testing.assert_allclose(stats["var"], [1 - MOMENTUM + MOMENTUM * 2, 1 - MOMENTUM + MOMENTUM * 8])
    y_test, _ = batch_norm(x, np.ones(2), np.zeros(2), stats, training=False)
    np.testing.assert_allclose(y_test, (x - stats["mean"]) / np.sqrt(stats["var"] + EPS))


def test_batch_of_one_normalizes_to_beta():
    """Batch statistics of one sample: x - mean = 0, so a dense BN outputs beta whatever the input."""
    x = np.array([[5.0, -3.0, 7.0]])
    stats = {"mean": np.zeros(3), "var": np.ones(3)}
    y, cache = batch_norm(x, np.full(3, 2.0), np.array([0.1, 0.2, 0.3]), stats, training=True)
    np.testing.assert_allclose(y, [[0.1, 0.2, 0.3]])
    dx, _, _ = batch_norm_backward(np.ones((1, 3)), np.ones(3), cache)
    np.testing.assert_array_equal(dx, 0.0)


def as_float64(model):
    model.params = {k: v.astype(np.float64) for k, v in model.params.items()}
    model.stats = {k: {n: v.astype(np.float64) for n, v in s.items()} for k, s in model.stats.items()}
    return model


def loss_of(model, x, labels):
    saved = {k: {n: v.copy() for n, v in s.items()} for k, s in model.stats.items()}
    y = model.forward(x, training=True)["y"]
    model.stats = saved
    return cross_entropy(softmax(y), labels)


def check_gradients(model, x, labels, rng, per_param=6):
    for name, value in model.params.items():
        value[...] = rng.normal(0, 0.3, value.shape) + (1.0 if name.endswith("gamma") else 0.0)
    _, grads = model.loss_and_grads(x, labels)
    for name, value in model.params.items():
        flat = value.reshape(-1)
        for index in rng.choice(flat.size, size=min(per_param, flat.size), replace=False):
            keep = flat[index]
            flat[index] = keep + STEP
            up = loss_of(model, x, labels)
            flat[index] = keep - STEP
            down = loss_of(model, x, labels)
            flat[index] = keep
            fd, g = (up - down) / (2 * STEP), grads[name].reshape(-1)[index]
            assert abs(g - fd) <= REL_TOL * max(abs(g), abs(fd)) + ATOL, (name, index, g, fd)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_gradients_match_finite_differences(seed):
    rng = np.random.default_rng(seed)
    model = as_float64(FloatBNResMLP(seed, 4))
    x = rng.uniform(0, 1, (6, 64))
    check_gradients(model, x, rng.integers(0, 10, 6), rng)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("head_pool", [1, 2])
def test_cnn_gradients_match_finite_differences(seed, head_pool):
    rng = np.random.default_rng(seed)
    model = as_float64(FloatBNResCNN(seed, 2, ResNetSpec(head_pool=head_pool)))
    x = model.input(rng.integers(0, 17, (3, 64))).astype(np.float64)
    check_gradients(model, x, rng.integers(0, 10, 3), rng, per_param=3)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_prediction_uses_running_statistics(arch):
    """Prediction of a sample does not depend on its batch mates (running statistics)."""
    data = load_digits_split()
    target = FloatTarget(0, 4, arch, norm="bn")
    for start in range(0, 64, 16):
        target.step(data.train_x[start:start + 16], data.train_y[start:start + 16])
    together = target.predict(data.test_x[:16])
    alone = np.concatenate([target.predict(data.test_x[i:i + 1]) for i in range(16)])
    np.testing.assert_array_equal(together, alone)


@pytest.mark.parametrize("seed", [0, 1])
def test_bn_mlp_learns_digits_and_fails_at_batch_one(seed):
    data = load_digits_split()
    history, _ = run_training(FloatTarget(seed, 4, "mlp", norm="bn"), 2, 16, seed, data, progress=False, log=None)
    assert history[-1].test_accuracy > 0.9
    one, _ = run_training(FloatTarget(seed, 7, "mlp", norm="bn"), 1, 1, seed, data, progress=False, log=None,
                          max_steps=300)
    assert one[-1].test_accuracy < 0.5      # a batch of one normalizes every dense feature to beta


def test_unknown_norm_is_rejected():
    with pytest.raises(ValueError, match="norm"):
        FloatTarget(0, 4, "mlp", norm="layer")
