"""The 8x8 digits data set bundled with scikit-learn (no download), with a fixed split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SPLIT_SEED = 0
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Digits:
    """Pixels are integers 0..16, shape (N, 64); labels 0..9."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_digits_split() -> Digits:
    """Stratified 80/20 split with a fixed seed: 1437 training and 360 test images."""
    data = load_digits()
    pixels = data.data.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, data.target.astype(np.int64), test_size=TEST_FRACTION,
        random_state=SPLIT_SEED, stratify=data.target)
    return Digits(train_x, train_y, test_x, test_y)


def batches(count: int, batch: int, rng: np.random.Generator):
    """Shuffled index batches for one epoch; the last one may be smaller."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    order = rng.permutation(count)
    for start in range(0, count, batch):
        yield order[start:start + batch]
