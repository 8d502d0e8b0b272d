"""The core's memory ports watched: an engine enables a physical port only while it owns it.

hw/core.py selects each physical port's address and write data by an owner
register set at the issue, not by the engines' enables; that is right only
if no engine uses a port its running instruction does not hold, or uses it
after its ``done``.  :func:`watch_port_owners` checks it every cycle of a
whole-core bench and fails the test at the first engine enabling a port it
does not own (its engine port, the owner and the simulation time).
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from golden_model.isa import PORTS
from hw.core import engine_name, port_users


async def _watch(dut, ports) -> None:
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        for physical, owner, users in ports:
            for index, (name, en) in enumerate(users):
                if en.value.is_resolvable and en.value.integer and owner.value.integer != index:
                    owned = users[owner.value.integer][0] if owner.value.integer < len(users) else "?"
                    raise AssertionError(f"{name} enabled physical port {physical} owned by {owned} "
                                         f"at {cocotb.utils.get_sim_time('ns')} ns")


def watch_port_owners(dut) -> None:
    """Check each cycle, until the test ends, that only a port's owner enables it (the eoq_core top)."""
    ports = []
    for physical in PORTS:
        users = [(f"{engine_name(kind)}.{port}", getattr(getattr(dut, engine_name(kind)), f"{port}__en"))
                 for kind, port in port_users(physical)]
        ports.append((physical, getattr(dut, f"{physical}_owner"), users))
    cocotb.start_soon(_watch(dut, ports))
