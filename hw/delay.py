"""delayed: a value registered a fixed number of cycles, for flags and fields that travel beside a pipeline."""

from amaranth import Module, Signal, Value


def delayed(m: Module, value: Value, cycles: int, *, name: str) -> Value:
    """``value`` as it was ``cycles`` clock cycles ago (a chain of ``cycles`` registers, reset to 0)."""
    for stage in range(cycles):
        value, earlier = Signal.like(value, name=f"{name}_{stage}"), value
        m.d.sync += value.eq(earlier)
    return value
