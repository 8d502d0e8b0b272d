"""hw.serial_port: bytes from a host's line through SerialPort to an echoing system and back (Amaranth
simulator), at the board's bit period (55 MHz, 3 Mbaud: 55/3 cycles per bit) and at an integer one.

The host drives its frames at the exact rate and decodes the returned line by sampling each bit at its
middle; a byte lost, reordered or corrupted anywhere on the way fails the comparison."""

import math
import os
import random
from fractions import Fraction

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.serial_port import SerialPort

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


def _frame(byte):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [1]


@pytest.mark.parametrize("period", [Fraction(55, 3), 15])
def test_bytes_echo_through_the_port(period):
    rng = random.Random(SEED)
    data = [rng.randrange(256) for _ in range(12)] + [0x00, 0xFF, 0x55]
    m = Module()
    m.submodules.port = port = SerialPort(period)
    wiring.connect(m, port.rx, port.tx)                  # the system: an echo
    line_out, fires = [], {"rx": 0, "tx": 0}
    cycles = math.ceil((len(data) + 3) * 10 * period)

    async def host(ctx):
        t, cycle = 0, 0
        for bits in [_frame(b) for b in data] + [[1] * 20]:
            for bit in bits:
                t += period
                ctx.set(port.line_in, bit)
                while cycle < round(t):
                    await ctx.tick()
                    cycle += 1

    async def listener(ctx):
        for _ in range(cycles):
            _, _, line, rx_fire, tx_fire = await ctx.tick().sample(port.line_out, port.rx_fire, port.tx_fire)
            line_out.append(line)
            fires["rx"] += rx_fire
            fires["tx"] += tx_fire
        fires["error"] = ctx.get(port.error)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(listener)
    sim.run()

    received, i = [], 0
    while i < len(line_out):
        if line_out[i] == 0:                                 # a start bit's falling edge
            middles = [i + round((n + 0.5) * period) for n in range(10)]
            if middles[-1] >= len(line_out):
                break
            bits = [line_out[c] for c in middles]
            assert bits[0] == 0 and bits[9] == 1, f"frame at cycle {i}: {bits} (EOQ_SEED={SEED})"
            received.append(sum(b << n for n, b in enumerate(bits[1:9])))
            i = middles[9]
        else:
            i += 1
    assert received == data, f"(EOQ_SEED={SEED})"
    assert fires == {"rx": len(data), "tx": len(data), "error": 0}


def test_error_is_sticky_on_a_framing_error():
    m = Module()
    m.submodules.port = port = SerialPort(8)
    seen = {}

    async def host(ctx):
        for bit in [0] * 10 + [1] * 30:                      # a zero byte without its stop bit
            ctx.set(port.line_in, bit)
            await ctx.tick().repeat(8)
        seen["error"] = ctx.get(port.error)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    assert seen == {"error": 1}
