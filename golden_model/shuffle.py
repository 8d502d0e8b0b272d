"""The epoch's sample order as the core computes it: a keyed Feistel permutation of [0, N).

A balanced Feistel network on ``2 * half`` bits (``half = ceil(bits(N - 1) / 2)``,
at least 1) is a bijection of [0, 4**half) for any round function; cycle
walking (apply it again while the result is >= N) turns it into a
bijection of [0, N), and since 4**half < 4 N, a walk takes fewer than four
applications on average.  Per round r, on the halves (L, R):

    L, R = R, L ^ (xs32((R + k_r) mod 2**32) mod 2**half),   k_r = key + r * PHI  (mod 2**32)

with the stochastic-rounding generator's xorshift (golden_model/prng.py), so
the hardware (hw/shuffle.py) reuses its XOR network and a Weyl step.  The
epoch's key is ``tensor_key(seed, epoch, SHUFFLE_TENSOR_ID)``.
"""

from __future__ import annotations

import numpy as np

from .prng import MASK32, PHI, check_word, tensor_key, xs32

ROUNDS = 4
#: tensor id of the shuffle's key stream (parameter gradients use small ids)
SHUFFLE_TENSOR_ID = 0xFFFF
#: the largest set the generated Shuffler unit orders (the digits training split has 1,437 samples)
MAX_SAMPLES = 4096


def half_bits(count: int) -> int:
    """Bits of one Feistel half for a set of ``count`` samples."""
    if count < 1:
        raise ValueError(f"a permutation needs at least one sample, got {count}")
    return max(1, -(-(count - 1).bit_length() // 2))


def feistel(x, half: int, key: int) -> np.ndarray:
    """One pass of the Feistel network over 2 * half bits (x an array of ints below 4**half)."""
    x = np.asarray(x, dtype=np.int64)
    mask = (1 << half) - 1
    left, right = x >> half, x & mask
    for r in range(ROUNDS):
        k = (key + r * PHI) & MASK32
        mixed = xs32(((right + k) & MASK32).astype(np.uint32)).astype(np.int64) & mask
        left, right = right, left ^ mixed
    return (left << half) | right


def permute(index, count: int, key: int) -> np.ndarray:
    """The position ``index`` maps to (cycle walking keeps it in [0, count))."""
    check_word("key", key)
    half = half_bits(count)
    x = feistel(index, half, key)
    while np.any(x >= count):
        x = np.where(x >= count, feistel(x, half, key), x)
    return x


def epoch_key(seed: int, epoch: int) -> int:
    """The Feistel key of an epoch: the generator key of tensor SHUFFLE_TENSOR_ID at step ``epoch``."""
    return tensor_key(seed, epoch, SHUFFLE_TENSOR_ID)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The sample indices of an epoch, in the order the core draws them."""
    return permute(np.arange(count), count, epoch_key(seed, epoch))
