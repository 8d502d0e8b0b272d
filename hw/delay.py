"""delayed: a value registered a fixed number of cycles, for flags and fields that travel beside a pipeline."""

from amaranth import Module, Signal, Value


def delayed(m: Module, value: Value, cycles: int, *, name: str, en: Value = 1) -> Value:
    """``value`` as it was ``cycles`` enabled cycles ago (a chain of ``cycles`` registers, reset to 0,
    that move when ``en`` is 1: a stalling pipeline passes its ``advance``)."""
    for stage in range(cycles):
        value, earlier = Signal.like(value, name=f"{name}_{stage}"), value
        with m.If(en):
            m.d.sync += value.eq(earlier)
    return value
