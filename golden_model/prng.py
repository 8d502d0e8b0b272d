"""The pseudo-random generator behind stochastic rounding.

Counter-based, so that hardware with any number of lanes reproduces it:

    r[i] = xs32(xs32(key + i * PHI mod 2^32))

where ``i`` is the element's flat (row-major) index in the tensor being
rounded, ``PHI = 0x9E3779B9`` (a Weyl increment), and ``xs32`` is Marsaglia's
xorshift32 step ``x ^= x << 13; x ^= x >> 17; x ^= x << 5`` on 32 bits.  A
hardware lane handling elements ``l, l + L, l + 2L, ...`` keeps a 32-bit
counter starting at ``key + l * PHI`` and adds ``L * PHI`` per element: one
adder and two XOR networks, no multiplier.

The per-tensor ``key`` of a training step is :func:`tensor_key` of the
run's seed, the step and the tensor's id.  An instruction either carries the
key itself, or (its ``f4``, a step key) the tensor's :func:`tensor_mix` and
the core derives the key from its seed and step registers with
:func:`step_key`, so a training program is loaded once per run.  A weight
update rounds with :func:`update_key` of its gradient's key.
"""

from __future__ import annotations

import numpy as np

MASK32 = 0xFFFF_FFFF
PHI = 0x9E37_79B9
STEP_MIX = 0x85EB_CA6B
#: XORed into a gradient's key to give the key of the weight update that consumes it
#: (:func:`update_key`); the fused QUPDATE instruction derives it in hardware.
UPDATE_KEY_SALT = 0x5BD1_E995
#: The (left, right, left) shift triple of :func:`xs32`, for hardware generators (hw/prng.py).
XS32_SHIFTS = (13, 17, 5)


def xs32(x):
    """One xorshift32 step (13, 17, 5) on uint32 scalars or arrays."""
    x = np.asarray(x, dtype=np.uint32)
    x = x ^ (x << np.uint32(13))
    x = x ^ (x >> np.uint32(17))
    x = x ^ (x << np.uint32(5))
    return x


def word_taps() -> list[list[int]]:
    """For each bit of a random word ``xs32(xs32(x))``, the bits of x it XORs.

    xs32 is linear over GF(2) (shifts and XORs), so the map is fixed by the images of the 32 unit vectors:
    each word bit is the XOR of at most 11 bits of x.
    """
    columns = [int(xs32(xs32(np.uint32(1 << bit)))) for bit in range(32)]
    return [[bit for bit in range(32) if columns[bit] >> out & 1] for out in range(32)]


def word_moves() -> dict[int, int]:
    """:func:`word_taps` grouped by distance: ``{d: mask}`` with the word the XOR over d of ``x & mask``
    shifted left by d (right by -d), 18 terms.  Hardware builds the word so (hw/prng.py): yosys maps it to
    flat XOR trees, where the two steps written out nest three levels of shifts (twice the LUTs), and the
    solver of the unit proofs still reads it as words (per-bit XORs took it minutes instead of seconds)."""
    moves: dict[int, int] = {}
    for out, taps in enumerate(word_taps()):
        for bit in taps:
            moves[out - bit] = moves.get(out - bit, 0) | 1 << bit
    return dict(sorted(moves.items()))


def masked_shift_word(x):
    """``xs32(xs32(x))`` as the XOR of :func:`word_moves`' masked shifts: for an int, or for an Amaranth value
    (hw/prng.py, formal/spec.py; only ``&``, ``<<``, ``>>`` and ``^`` are used).  No bit above 31 is ever set,
    but a value's width grows with the shifts: slice it to 32 bits."""
    word = 0
    for distance, mask in word_moves().items():
        word = word ^ ((x & mask) << distance if distance >= 0 else (x & mask) >> -distance)
    return word


def check_word(name: str, value: int) -> None:
    """ValueError unless ``value`` is a 32-bit unsigned integer (a key, a mix, a seed, a step)."""
    if not 0 <= value <= MASK32:
        raise ValueError(f"{name} must be a 32-bit unsigned integer, got {value}")


def random_words(key: int, count: int, start: int = 0) -> np.ndarray:
    """The uint32 random words for flat element indices start .. start+count-1."""
    check_word("key", key)
    index = np.arange(start, start + count, dtype=np.uint64)
    counter = ((np.uint64(key) + index * np.uint64(PHI)) & np.uint64(MASK32)).astype(np.uint32)
    return xs32(xs32(counter))


def tensor_mix(tensor_id: int) -> int:
    """What a step-key instruction carries for a tensor: ``tensor_id * STEP_MIX mod 2^32``."""
    if tensor_id < 0:
        raise ValueError(f"tensor_id must be non-negative, got {tensor_id}")
    return (tensor_id * STEP_MIX) & MASK32


def step_base(seed: int, step: int) -> int:
    """The step's part of every tensor's key, ``xs32(seed + (step + 1) * PHI mod 2^32)`` (the core
    keeps it in a register, hw/step_keys.py)."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    return int(xs32((seed + (step + 1) * PHI) & MASK32))


def step_key(seed: int, step: int, mix: int) -> int:
    """Key of the tensor whose :func:`tensor_mix` is ``mix`` at ``step``: ``xs32(step_base ^ mix)``."""
    check_word("mix", mix)
    return int(xs32(step_base(seed, step) ^ mix))


def tensor_key(seed: int, step: int, tensor_id: int) -> int:
    """Key of the random stream for one tensor at one training step."""
    return step_key(seed, step, tensor_mix(tensor_id))


def update_key(key: int) -> int:
    """Key of a weight update's random stream from its gradient's key: ``key ^ UPDATE_KEY_SALT``.

    One instruction key then serves both roundings of QUPDATE (gradient and
    update); the two streams differ in every element.
    """
    check_word("key", key)
    return key ^ UPDATE_KEY_SALT
