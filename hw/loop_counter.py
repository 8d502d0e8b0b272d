"""LoopCounter: a loop counter with its last-iteration test in a register beside it.

A walk decides its next step from which of its loops are at their last
iteration.  Comparing each counter with its bound in the deciding cycle puts
a compare (a carry chain) in front of every decision.  Here every assignment
to the counter also sets ``last`` for the value it assigns, computed from
registers beside the decision: ``restart`` (to 0) compares 0 with the bound,
``step`` compares the value with the bound less the step (value + step >= bound
exactly when value >= bound - step), and ``load`` takes a test its caller
computes.  ``last`` is then ``value >= bound`` (``value == bound`` where
``exact``) in every cycle, provided the bound is held while the counter runs
(it may change up to the cycle of the first ``restart``) and a step never
wraps the counter (a walk's counters stay below their parameters).
"""

from amaranth import Mux, Signal, Value, signed


class LoopCounter:
    """``value`` (of ``shape``), ``last``; ``bound`` and ``step`` are expressions held while it counts,
    ``exact`` (an expression) makes the test an equality."""

    def __init__(self, m, shape, *, bound, step, exact=0, name: str):
        self.m, self.increment, self.exact = m, Value.cast(step), exact
        self.value = Signal(shape, name=name)
        self.last = Signal(name=f"{name}_last")
        self.bound = bound
        self.before = Signal(signed(len(bound) + len(self.increment) + 2), name=f"{name}_before")   # bound - step
        m.d.sync += self.before.eq(bound - step)

    def test(self, value, bound):
        """The last-iteration test of ``value`` against ``bound``."""
        return Mux(self.exact, value == bound, value >= bound)

    def restart(self):
        self.m.d.sync += [self.value.eq(0), self.last.eq(self.test(0, self.bound))]

    def step(self):
        self.m.d.sync += [self.value.eq(self.value + self.increment), self.last.eq(self.test(self.value, self.before))]

    def load(self, value, last):
        """Assign ``value``, whose test the caller gives as ``last``."""
        self.m.d.sync += [self.value.eq(value), self.last.eq(last)]
