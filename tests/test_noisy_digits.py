"""The bundled data sets by name (golden_model/data.py): noisy digits is deterministic, keeps the
stratified split and labels, stays on the digits pixel range, and is corrupted as specified."""

from __future__ import annotations

import numpy as np
import pytest

from golden_model.data import (DIGITS_MAX, NOISE_OCCLUSION, NOISE_SIGMA, Dataset, corrupt, load_dataset,
                               load_digits_split)


def test_names():
    assert isinstance(load_dataset("digits"), Dataset)
    np.testing.assert_array_equal(load_dataset("digits").train_x, load_digits_split().train_x)
    with pytest.raises(ValueError, match="noisy-digits"):
        load_dataset("cifar")


def test_noisy_digits_is_deterministic_and_keeps_the_split():
    clean, a, b = load_digits_split(), load_dataset("noisy-digits"), load_dataset("noisy-digits")
    for name in ("train_x", "test_x", "train_y", "test_y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.train_y, clean.train_y)
    np.testing.assert_array_equal(a.test_y, clean.test_y)
    assert a.train_x.shape == clean.train_x.shape and a.test_x.shape == clean.test_x.shape
    assert a.format == clean.format
    assert a.train_x.dtype.kind == "i" and a.train_x.min() >= 0 and a.train_x.max() <= DIGITS_MAX
    assert np.mean(a.train_x != clean.train_x) > 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corruption_statistics(seed):
    """Noise of about NOISE_SIGMA where clipping cannot act, and occluded squares of zeros."""
    flat = np.full((4000, 64), 8, dtype=np.int64)
    out = corrupt(flat, np.random.default_rng(seed))
    kept = out[out > 0] - 8
    assert abs(np.std(kept) - NOISE_SIGMA) < 0.35
    assert abs(np.mean(out - 8)) < 0.2 + 0.5 * 8 * NOISE_OCCLUSION ** 2 / 64
    none = corrupt(np.zeros((10, 64), dtype=np.int64), np.random.default_rng(seed))
    assert none.min() >= 0


def test_occlusion_hand_worked():
    """With the noise drawn as zero the output is the image with one NOISE_OCCLUSION square zeroed, or
    the image itself; every corrupted image differs from the clean one only by noise or that square."""
    class ZeroNoise:
        def __init__(self, rng):
            self.rng = rng

        def integers(self, *args, **kwargs):
            return self.rng.integers(*args, **kwargs)

        def random(self, size):
            return np.zeros(size)          # every image occluded

        def normal(self, loc, scale, size):
            return np.zeros(size)

    image = np.full((1, 64), 16, dtype=np.int64)
    out = corrupt(image, ZeroNoise(np.random.default_rng(0))).reshape(8, 8)
    zeros = np.argwhere(out == 0)
    assert len(zeros) == NOISE_OCCLUSION ** 2
    (top, left), (bottom, right) = zeros.min(axis=0), zeros.max(axis=0)
    assert (bottom - top + 1, right - left + 1) == (NOISE_OCCLUSION, NOISE_OCCLUSION)
    assert np.all(out[out != 0] == 16)
