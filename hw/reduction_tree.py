"""Registered reduction trees: the OR or the sum of many values, one tree level per clock cycle.

A tree of 32-bit adds or compares in one cycle was the engines' critical path.  Each level
is registered, so the result comes :func:`tree_levels` cycles after its
operands and a new set of operands can enter every cycle.
"""

from amaranth import Module, Signal


def tree_levels(count: int) -> int:
    """Registered levels of a balanced tree over ``count`` values (at least one register)."""
    return max(1, (count - 1).bit_length())


def _tree(m: Module, values, combine, name: str):
    values, level = list(values), 0
    while len(values) > 1 or level == 0:
        pairs = [combine(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        values = pairs + ([values[-1]] if len(values) % 2 else [])
        registered = [Signal.like(pairs[0] if pairs else values[0], name=f"{name}_l{level}_{i}")
                      for i in range(len(values))]
        m.d.sync += [r.eq(v) for r, v in zip(registered, values)]
        values, level = registered, level + 1
    return values[0]


def or_tree(m: Module, values, *, name: str):
    """Bitwise OR of the unsigned ``values``, :func:`tree_levels` cycles later: of magnitudes, a value
    with the bit length of their maximum (all the SQ shift rule reads), without a compare."""
    return _tree(m, values, lambda x, y: x | y, name)


def sum_tree(m: Module, values, *, name: str):
    """Sum of the ``values`` (each level one bit wider), :func:`tree_levels` cycles later."""
    return _tree(m, values, lambda x, y: x + y, name)
