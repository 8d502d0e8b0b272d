"""Tests of the counter-based stochastic-rounding generator (golden_model/prng.py).

Everything is checked against plain-Python integer references (no NumPy in
the reference path), so that a NumPy dtype/overflow slip cannot hide.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden_model.prng import (MASK32, PHI, STEP_MIX, random_words, step_base, step_key, tensor_key, tensor_mix,
                               masked_shift_word, word_taps, xs32)

PROPS = settings(max_examples=200, deadline=None)
keys = st.integers(0, MASK32)


def ref_xs32(x: int) -> int:
    """Marsaglia xorshift32 (13, 17, 5), plain Python."""
    x &= MASK32
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


def ref_word(key: int, i: int) -> int:
    return ref_xs32(ref_xs32((key + i * PHI) & MASK32))


def ref_tensor_key(seed: int, step: int, tensor_id: int) -> int:
    mixed = ref_xs32((seed + (step + 1) * PHI) & MASK32)
    return ref_xs32(mixed ^ ((tensor_id * STEP_MIX) & MASK32))


# --------------------------------------------------------------------------- xs32

def test_constants():
    assert PHI == 0x9E3779B9 and MASK32 == 2**32 - 1 and STEP_MIX == 0x85EBCA6B


def test_xs32_known_values():
    # hand-computed: 1 -> 1 ^ 1<<13 = 0x2001; >>17 adds nothing; ^ (0x2001 << 5) = 0x42021
    assert int(xs32(1)) == 0x42021
    assert int(xs32(0)) == 0  # the fixed point of xorshift
    # Marsaglia's published first output from the seed 2463534242 with (13, 17, 5)
    assert int(xs32(2463534242)) == 723471715


def test_xs32_matches_reference_on_many_values(rng):
    edge = [0, 1, 2, 3, 0x7FFFFFFF, 0x80000000, 0x80000001, MASK32, MASK32 - 1, PHI, 1 << 13, 1 << 19, 1 << 27]
    vals = edge + [int(v) for v in rng.integers(0, 2**32, size=20_000, dtype=np.uint64)]
    got = xs32(np.array(vals, dtype=np.uint32))
    assert got.dtype == np.uint32
    assert [int(v) for v in got] == [ref_xs32(v) for v in vals]


@PROPS
@given(x=keys)
def test_prop_xs32_scalar_matches_reference(x):
    assert int(xs32(x)) == ref_xs32(x)
    assert int(xs32(np.uint32(x))) == ref_xs32(x)


def test_xs32_is_a_bijection_on_a_sample(rng):
    vals = np.unique(rng.integers(0, 2**32, size=50_000, dtype=np.uint64)).astype(np.uint32)
    assert np.unique(xs32(vals)).size == vals.size


def test_xs32_shape_preserved():
    x = np.arange(12, dtype=np.uint32).reshape(3, 4)
    out = xs32(x)
    assert out.shape == (3, 4) and out.dtype == np.uint32


# --------------------------------------------------------------------------- random_words

@PROPS
@given(key=keys, n=st.integers(0, 50), start=st.integers(0, 2**34))
def test_prop_random_words_match_reference(key, n, start):
    got = random_words(key, n, start)
    assert got.dtype == np.uint32 and got.shape == (n,)
    assert [int(v) for v in got] == [ref_word(key, start + i) for i in range(n)]


def test_random_words_reference_bulk(rng):
    key = int(rng.integers(0, 2**32))
    got = random_words(key, 5000)
    assert [int(v) for v in got] == [ref_word(key, i) for i in range(5000)]


@PROPS
@given(key=keys, n=st.integers(0, 300), start=st.integers(0, 300))
def test_prop_random_words_start_is_slicing(key, n, start):
    assert np.array_equal(random_words(key, n, start), random_words(key, n + start)[start:])


@PROPS
@given(key=keys, lanes=st.integers(1, 32), n=st.integers(1, 200))
def test_prop_lane_decomposition(key, lanes, n):
    """Lane l of L starts its counter at key + l*PHI, adds L*PHI per element (mod 2**32),
    and outputs xs32(xs32(counter)): it reproduces elements l, l+L, l+2L, ..."""
    words = [int(v) for v in random_words(key, n)]
    for lane in range(min(lanes, n)):
        counter = (key + lane * PHI) & MASK32
        step = (lanes * PHI) & MASK32
        produced = []
        for _ in range(lane, n, lanes):
            produced.append(ref_xs32(ref_xs32(counter)))
            counter = (counter + step) & MASK32
        assert produced == words[lane::lanes]


@PROPS
@given(keys)
def test_prop_word_taps_give_the_random_word(x):
    """Each word bit is the XOR of x's bits at its taps."""
    word = 0
    for out, taps in enumerate(word_taps()):
        word |= (sum(x >> bit & 1 for bit in taps) & 1) << out
    assert word == ref_xs32(ref_xs32(x))


@PROPS
@given(keys)
def test_prop_masked_shift_word_gives_the_random_word(x):
    """The word is the XOR of x's masked shifts (what hw/prng.py and formal/spec.py build)."""
    assert masked_shift_word(x) == ref_xs32(ref_xs32(x))


def test_hardware_random_word_matches_golden(rng):
    """hw.prng.random_word in Amaranth's simulator on random counters and the unit vectors."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator
    from hw.prng import random_word
    m = Module()
    x, word = Signal(32), Signal(32)
    m.d.comb += word.eq(random_word(x))
    values = [1 << bit for bit in range(32)] + [int(v) for v in rng.integers(0, 1 << 32, size=200, dtype=np.uint64)]
    seen = []

    async def bench(ctx):
        for value in values:
            ctx.set(x, value)
            seen.append(ctx.get(word))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [ref_xs32(ref_xs32(v)) for v in values]


def test_random_words_wraps_the_32bit_counter():
    # key + i*PHI exceeds 2**32 from i = 1 on for this key: the counter must wrap, not saturate
    key = MASK32
    assert [int(v) for v in random_words(key, 4)] == [ref_word(key, i) for i in range(4)]
    # indices beyond 2**32: the counter only depends on i mod 2**32
    assert np.array_equal(random_words(7, 10, 2**32 + 5), random_words(7, 10, 5))


def test_random_words_key_validation():
    for bad in (-1, 2**32, 2**40):
        with pytest.raises(ValueError, match="32-bit"):
            random_words(bad, 4)
    assert random_words(0, 0).size == 0


def test_random_words_keys_give_different_streams():
    a, b = random_words(1, 64), random_words(2, 64)
    assert not np.array_equal(a, b)
    assert np.array_equal(random_words(1, 64), a)  # deterministic


# --------------------------------------------------------------------------- tensor_key

def test_tensor_key_matches_reference_and_is_int():
    for seed in (0, 0x21051389, MASK32):
        for step in (0, 1, 17, 10_000):
            for tid in (0, 1, 5, 2**20):
                k = tensor_key(seed, step, tid)
                assert type(k) is int and 0 <= k <= MASK32
                assert k == ref_tensor_key(seed, step, tid)


def test_step_key_of_a_tensor_mix_is_the_tensor_key(rng):
    """What the core derives from its seed and step registers and an instruction's mix (isa f4)."""
    for _ in range(200):
        seed, step = (int(v) for v in rng.integers(2**32, size=2))
        tid = int(rng.integers(0, 2**16))
        assert tensor_mix(tid) == (tid * STEP_MIX) & MASK32
        assert step_key(seed, step, tensor_mix(tid)) == ref_tensor_key(seed, step, tid)
        assert step_base(seed, step) == ref_xs32((seed + (step + 1) * PHI) & MASK32)
    with pytest.raises(ValueError, match="mix"):
        step_key(0, 0, 1 << 32)


def test_tensor_key_distinct_across_steps_and_tensors():
    seed = 0x21051389
    keys_seen = {tensor_key(seed, step, tid) for step in range(64) for tid in range(32)}
    assert len(keys_seen) == 64 * 32
    # within one step, tensor ids map bijectively (xs32 and the odd multiplier are bijections)
    assert len({tensor_key(seed, 3, tid) for tid in range(20_000)}) == 20_000
    # different seeds give different keys
    assert tensor_key(1, 0, 0) != tensor_key(2, 0, 0)


def test_tensor_key_streams_do_not_overlap():
    """Two tensors' streams are the same Weyl sequence shifted by j = (k2 - k1) / PHI mod 2**32;
    for the tensors of a few steps no stream may start within 4096 elements (one 64x64
    weight tensor) of another, else their stochastic roundings would be correlated."""
    inv_phi = pow(PHI, -1, 2**32)
    ks = [tensor_key(0x21051389, step, tid) for step in range(8) for tid in range(12)]
    for i, k1 in enumerate(ks):
        for k2 in ks[i + 1:]:
            j = ((k2 - k1) * inv_phi) & MASK32
            assert min(j, 2**32 - j) >= 4096, (k1, k2, j)


def test_tensor_key_validation():
    with pytest.raises(ValueError, match="non-negative"):
        tensor_key(0, -1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        tensor_key(0, 0, -3)


# --------------------------------------------------------------------------- uniformity sanity

# chi-square critical value, 15 degrees of freedom, p = 1e-5 (scipy.stats.chi2.isf(1e-5, 15))
CHI2_15_P1E5 = 50.49


def chi2_16(buckets: np.ndarray) -> float:
    counts = np.bincount(buckets, minlength=16).astype(np.float64)
    expected = buckets.size / 16
    return float(np.sum((counts - expected) ** 2) / expected)


@pytest.mark.parametrize("bit_offset", [0, 4, 12, 28])
def test_low_bits_chi_square(rng, bit_offset):
    """Nibbles of 160k consecutive words are uniform over 16 buckets (chi-square, p=1e-5);
    the low nibble is what stochastic rounding at small shifts uses."""
    for key in (0, int(rng.integers(0, 2**32))):
        w = random_words(key, 160_000)
        stat = chi2_16(((w >> np.uint32(bit_offset)) & np.uint32(15)).astype(np.int64))
        assert stat < CHI2_15_P1E5, (key, bit_offset, stat)


def test_chi_square_detects_nonuniform():
    """The statistic is not a tautology: a 1% skew on one bucket at n=160k is rejected."""
    b = np.arange(160_000) % 16
    assert chi2_16(b) == 0.0
    b[:1600] = 0
    assert chi2_16(b) > CHI2_15_P1E5


def test_each_bit_balanced(rng):
    key = int(rng.integers(0, 2**32))
    n = 100_000
    w = random_words(key, n)
    ones = np.array([np.count_nonzero((w >> np.uint32(b)) & np.uint32(1)) for b in range(32)])
    # 5 standard errors of a fair coin: sqrt(n)/2 each
    assert np.all(np.abs(ones - n / 2) <= 5 * np.sqrt(n) / 2), ones


def test_consecutive_low_bits_pairs_uniform(rng):
    """Pairs (low 2 bits of word i, low 2 bits of word i+1) fill 16 buckets uniformly:
    neighbouring elements of a tensor round independently."""
    key = int(rng.integers(0, 2**32))
    w = (random_words(key, 160_001) & np.uint32(3)).astype(np.int64)
    stat = chi2_16(w[:-1] * 4 + w[1:])
    assert stat < CHI2_15_P1E5, stat
