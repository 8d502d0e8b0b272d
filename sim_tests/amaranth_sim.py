"""Run an Amaranth testbench to its end: the unit tests of small parts in Amaranth's simulator share it."""

from __future__ import annotations

from amaranth.sim import Simulator


def simulate(dut, bench) -> None:
    """Simulate ``dut`` with a 1 MHz clock until the async ``bench(ctx)`` returns."""
    sim = Simulator(dut)
    sim.add_clock(1e-6, if_exists=True)
    sim.add_testbench(bench)
    sim.run()
