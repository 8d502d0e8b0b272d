"""hw.uart: divisor choice, TX -> RX loopback of random bytes, framing and overrun flags (Amaranth simulator)."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from hw.uart import UartRx, UartTx, baud_error, uart_divisor


@pytest.mark.parametrize("clk, baud, divisor", [
    (48e6, 3_000_000, 16), (50e6, 3_000_000, 17), (50e6, 115_200, 434), (25e6, 1_000_000, 25),
    (60e6, 3_000_000, 20), (12e6, 3_000_000, 4),
])
def test_divisor(clk, baud, divisor):
    assert uart_divisor(clk, baud) == divisor
    assert abs(baud_error(clk, baud)) <= 0.02


def test_divisor_near_limit_accepted():
    assert uart_divisor(55e6, 3_000_000) == 18      # 3.056 Mbaud: 1.85 % fast, accepted


@pytest.mark.parametrize("clk, baud, match", [
    (40e6, 3_000_000, "off"),          # 13.33 -> 13: 2.56 %
    (8e6, 3_000_000, "too slow"),
    (50e6, 4_000_000, "out of range"),
])
def test_divisor_refused(clk, baud, match):
    with pytest.raises(ValueError, match=match):
        uart_divisor(clk, baud)


def _run(dut, testbench, deadline_cycles):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run_until(deadline_cycles * 1e-8)


@pytest.mark.parametrize("divisor", [4, 7, 16, 17])
def test_loopback(divisor):
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(24)] + [0x00, 0xFF, 0x55, 0xAA]
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.line.eq(tx.line)
    received = []

    async def sender(ctx):
        for byte in data:
            ctx.set(tx.tx.payload, byte)
            ctx.set(tx.tx.valid, 1)
            await ctx.tick().until(tx.tx.ready)
        ctx.set(tx.tx.valid, 0)

    async def receiver(ctx):
        ctx.set(rx.rx.ready, 1)
        while len(received) < len(data):
            await ctx.tick().until(rx.rx.valid)
            received.append(ctx.get(rx.rx.payload))
        assert not ctx.get(rx.overrun) and not ctx.get(rx.framing)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(sender)
    sim.add_testbench(receiver)
    sim.run_until((len(data) + 4) * 10 * divisor * 1e-8)
    assert received == data


def test_back_to_back_frames_take_ten_bits():
    divisor = 5
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    edges = []

    async def bench(ctx):
        ctx.set(tx.tx.payload, 0x00)
        ctx.set(tx.tx.valid, 1)
        previous, cycle = 1, 0
        while cycle < 3 * 10 * divisor:
            await ctx.tick()
            cycle += 1
            line = ctx.get(tx.line)
            if line != previous:
                edges.append((cycle, line))
            previous = line

    _run(m, bench, 4 * 10 * divisor)
    falls = [c for c, v in edges if v == 0]
    assert [b - a for a, b in zip(falls, falls[1:])] == [10 * divisor, 10 * divisor]
    # 0x00: start + 8 zero bits low for 9 bit times, then one stop bit high
    rises = [c for c, v in edges if v == 1]
    assert rises[0] - falls[0] == 9 * divisor


def _drive_frames(ctx, line, frames, bit_cycles):
    """Drive raw 10-bit frames (list of bit lists) on ``line`` with a fractional bit period."""
    async def run():
        t = 0.0
        cycle = 0
        for bits in frames:
            for bit in bits:
                t += bit_cycles
                ctx.set(line, bit)
                while cycle < round(t):
                    await ctx.tick()
                    cycle += 1
        ctx.set(line, 1)
    return run()


def _counted(sink, count):
    async def bench(ctx):
        await sink(ctx, count)
    return bench


def _frame(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


@pytest.mark.parametrize("skew", [-0.03, 0.03])
def test_rx_tolerates_clock_skew(skew):
    divisor = 16
    data = [0x5A, 0xFF, 0x00, 0x81, 0x3C]
    rx = UartRx(divisor)
    received = []

    async def host(ctx):
        await _drive_frames(ctx, rx.line, [_frame(b) for b in data] + [[1] * 10], divisor * (1 + skew))

    async def sink(ctx, count):
        ctx.set(rx.rx.ready, 1)
        while len(received) < count:
            await ctx.tick().until(rx.rx.valid)
            received.append(ctx.get(rx.rx.payload))

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(_counted(sink, len(data)))
    sim.run_until((len(data) + 2) * 10 * divisor * 1.1e-8)
    assert received == data


def test_framing_error_and_recovery():
    divisor = 8
    rx = UartRx(divisor)
    received, flags = [], {}

    async def host(ctx):
        await _drive_frames(ctx, rx.line, [_frame(0x12, stop=0), [0] * 5, [1] * 12, _frame(0x34), [1] * 10], divisor)
        flags["framing"] = ctx.get(rx.framing)
        ctx.set(rx.clear, 1)
        await ctx.tick()
        ctx.set(rx.clear, 0)
        flags["after_clear"] = ctx.get(rx.framing)

    async def sink(ctx, count):
        ctx.set(rx.rx.ready, 1)
        while len(received) < count:
            await ctx.tick().until(rx.rx.valid)
            received.append(ctx.get(rx.rx.payload))

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(_counted(sink, 1))
    sim.run_until(60 * divisor * 1e-8)
    assert received == [0x34]
    assert flags == {"framing": 1, "after_clear": 0}


def test_overrun_flag():
    divisor = 6
    rx = UartRx(divisor)
    flags = {}

    async def host(ctx):
        # nobody takes the bytes: the second one overruns, the first stays available
        await _drive_frames(ctx, rx.line, [_frame(0xA5), _frame(0x11), [1] * 4], divisor)
        flags["overrun"] = ctx.get(rx.overrun)
        flags["valid"] = ctx.get(rx.rx.valid)
        flags["payload"] = ctx.get(rx.rx.payload)

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    assert flags == {"overrun": 1, "valid": 1, "payload": 0xA5}
