"""hw.uart and hw.serial_port: bit period choice, the bit timer's periods, TX -> RX loopback of random bytes,
framing and overrun flags, bytes through the board's serial port and back (Amaranth simulator).

Every testbench waits a bounded number of cycles with plain ticks, so a failing
DUT makes the bench give up and the test's assertion say what was missing; no
bench is left suspended in ``tick().until()`` (tests/conftest.py tells why
that matters: pytest's INTERNALERROR on Python 3.11).
"""

import gc
import math
import os
import random
import sys
from fractions import Fraction

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.serial_port import SerialPort
from hw.uart import MAX_BAUD_ERROR, BitTimer, UartRx, UartTx, baud_error, bit_period

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


@pytest.mark.parametrize("clk, baud, period", [
    (48e6, 3_000_000, 16), (50e6, 3_000_000, Fraction(50, 3)), (50e6, 115_200, Fraction(50_000_000, 115_200)),
    (25e6, 1_000_000, 25), (60e6, 3_000_000, 20), (12e6, 3_000_000, 4), (55e6, 3_000_000, Fraction(55, 3)),
    (56.25e6, 3_000_000, Fraction(75, 4)),
])
def test_bit_period(clk, baud, period):
    assert bit_period(clk, baud) == period
    assert baud_error(clk, baud) == 0


def test_bit_period_keeps_a_small_denominator():
    clk = 25e6 * 7 / 3                              # a PLL output that is not a whole number of Hz
    period = bit_period(clk, 3_000_000)
    assert period == Fraction(175, 9) and abs(baud_error(clk, 3_000_000)) < MAX_BAUD_ERROR


@pytest.mark.parametrize("clk, baud, match", [
    (8e6, 3_000_000, "too slow"),
    (50e6, 4_000_000, "out of range"),
    (0, 3_000_000, "positive"),
    (12.0228e6, 3_000_000, "denominator of at most 64, 4 cycles, is 0.190 % off"),
])
def test_bit_period_refused(clk, baud, match):
    with pytest.raises(ValueError, match=match):
        bit_period(clk, baud)


@pytest.mark.parametrize("period", [3, Fraction(7, 2), Fraction(1001, 100)])
def test_uart_refuses_a_bad_period(period):
    with pytest.raises(ValueError, match="bit period"):
        UartTx(period)


def _simulate(dut, *testbenches):
    """Run the testbenches to their end (each one bounds its own waits)."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    sim.run()


async def _send(ctx, stream, data, cycles):
    """Offer ``data`` on an In stream byte by byte; give up after ``cycles`` cycles per byte."""
    for byte in data:
        ctx.set(stream.payload, byte)
        ctx.set(stream.valid, 1)
        for _ in range(cycles):
            _, _, ready = await ctx.tick().sample(stream.ready)
            if ready:
                break
        else:
            break
    ctx.set(stream.valid, 0)


async def _receive(ctx, stream, into, count, cycles):
    """Take up to ``count`` bytes from an Out stream into ``into`` within ``cycles`` cycles."""
    ctx.set(stream.ready, 1)
    for _ in range(cycles):
        if len(into) == count:
            return
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid:
            into.append(payload)


@pytest.mark.parametrize("period", [4, 7, 16, 17, Fraction(50, 3), Fraction(55, 3), Fraction(75, 4)])
def test_loopback(period):
    rng = random.Random(str(period))
    data = [rng.randrange(256) for _ in range(24)] + [0x00, 0xFF, 0x55, 0xAA]
    m = Module()
    m.submodules.tx = tx = UartTx(period)
    m.submodules.rx = rx = UartRx(period)
    m.d.comb += rx.line.eq(tx.line)
    received, flags = [], {}
    budget = math.ceil((len(data) + 4) * 10 * period)

    async def sender(ctx):
        await _send(ctx, tx.tx, data, math.ceil(10 * period) + 2)

    async def receiver(ctx):
        await _receive(ctx, rx.rx, received, len(data), budget)
        flags.update(overrun=ctx.get(rx.overrun), framing=ctx.get(rx.framing))

    _simulate(m, sender, receiver)
    assert received == data
    assert flags == {"overrun": 0, "framing": 0}


def _line_edges(period, byte, cycles):
    """(cycle, level) of every change of a transmitter's line while it sends ``byte`` back to back."""
    m = Module()
    m.submodules.tx = tx = UartTx(period)
    edges = []

    async def bench(ctx):
        ctx.set(tx.tx.payload, byte)
        ctx.set(tx.tx.valid, 1)
        previous = 1
        for cycle in range(1, cycles + 1):
            await ctx.tick()
            line = ctx.get(tx.line)
            if line != previous:
                edges.append((cycle, line))
            previous = line

    _simulate(m, bench)
    return edges


def test_back_to_back_frames_take_ten_bits():
    divisor = 5
    edges = _line_edges(divisor, 0x00, 3 * 10 * divisor)
    falls = [c for c, v in edges if v == 0]
    assert [b - a for a, b in zip(falls, falls[1:])] == [10 * divisor, 10 * divisor]
    # 0x00: start + 8 zero bits low for 9 bit times, then one stop bit high
    rises = [c for c, v in edges if v == 1]
    assert rises[0] - falls[0] == 9 * divisor


@pytest.mark.parametrize("period", [Fraction(55, 3), Fraction(75, 4), Fraction(50_000_000, 115_200)])
def test_tx_bit_edges_stay_within_a_cycle(period):
    """Back-to-back 0x55 frames toggle the line at every bit boundary: the k-th edge comes k periods
    after the first, rounded to a whole cycle (never a cycle or more away), so the rate is exact."""
    frames = 4 if period < 100 else 2
    edges = [cycle for cycle, _ in _line_edges(period, 0x55, math.ceil((frames * 10 + 1) * period))]
    assert len(edges) >= frames * 10
    offsets = [edge - edges[0] - k * period for k, edge in enumerate(edges)]
    assert all(-1 < offset < 1 for offset in offsets), f"bit edges off by {offsets}"


@pytest.mark.parametrize("period", [4, 7, Fraction(55, 3), Fraction(9, 2) + 2])
def test_bit_timer_periods(period):
    """The ticks of a free-running timer: each period q or q + 1 cycles, d periods in q * d + r cycles."""
    period = Fraction(period)
    timer = BitTimer(period)
    ticks = []

    async def bench(ctx):
        for cycle in range(math.ceil(3 * period.denominator * period) + 2):
            if ctx.get(timer.tick):
                ticks.append(cycle)
            await ctx.tick()

    _simulate(timer, bench)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert set(gaps) <= {math.floor(period), math.ceil(period)}
    d = period.denominator
    assert all(sum(gaps[i:i + d]) == period * d for i in range(0, len(gaps) - d + 1, d)), gaps


async def _drive_frames(ctx, line, frames, bit_cycles):
    """Drive raw 10-bit frames (list of bit lists) on ``line`` with a fractional bit period."""
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


def _frame(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


@pytest.mark.parametrize("divisor", [16, Fraction(55, 3)])
@pytest.mark.parametrize("skew", [-0.03, 0.03])
def test_rx_tolerates_clock_skew(skew, divisor):
    data = [0x5A, 0xFF, 0x00, 0x81, 0x3C]
    rx = UartRx(divisor)
    received = []

    async def host(ctx):
        await _drive_frames(ctx, rx.line, [_frame(b) for b in data] + [[1] * 10], divisor * (1 + skew))

    async def sink(ctx):
        await _receive(ctx, rx.rx, received, len(data), round((len(data) + 2) * 10 * divisor * 1.1))

    _simulate(rx, host, sink)
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

    async def sink(ctx):
        await _receive(ctx, rx.rx, received, 2, 60 * divisor)

    _simulate(rx, host, sink)
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

    _simulate(rx, host)
    assert flags == {"overrun": 1, "valid": 1, "payload": 0xA5}


def test_a_failing_bench_leaves_nothing_to_finalize(monkeypatch):
    """A receiver that never gets its byte gives up with a readable failure, and leaves no
    suspended async generator whose finalization would crash pytest (tests/conftest.py)."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    rx = UartRx(8)
    received = []

    async def sink(ctx):
        await _receive(ctx, rx.rx, received, 1, 200)      # the line stays idle: nothing comes

    _simulate(rx, sink)
    assert received == []
    gc.collect()
    assert unraisable == []


@pytest.mark.parametrize("period", [Fraction(55, 3), 15])
def test_bytes_echo_through_the_serial_port(period):
    """Random bytes from a host line at the exact rate (55 MHz, 3 Mbaud: 55/3 cycles per bit) through
    SerialPort to an echoing system and back, decoded from the output line by sampling each bit at its
    middle: a byte lost, reordered or corrupted anywhere on the way fails the comparison."""
    rng = random.Random(SEED)
    data = [rng.randrange(256) for _ in range(12)] + [0x00, 0xFF, 0x55]
    m = Module()
    m.submodules.port = port = SerialPort(period)
    wiring.connect(m, port.rx, port.tx)                  # the system: an echo
    line_out, fires = [], {"rx": 0, "tx": 0}

    async def host(ctx):
        await _drive_frames(ctx, port.line_in, [_frame(b) for b in data] + [[1] * 20], period)

    async def listener(ctx):
        for _ in range(math.ceil((len(data) + 3) * 10 * period)):
            _, _, line, rx_fire, tx_fire = await ctx.tick().sample(port.line_out, port.rx_fire, port.tx_fire)
            line_out.append(line)
            fires["rx"] += rx_fire
            fires["tx"] += tx_fire
        fires["error"] = ctx.get(port.error)

    _simulate(m, host, listener)
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


def test_serial_port_error_is_sticky_on_a_framing_error():
    port = SerialPort(8)
    seen = {}

    async def host(ctx):
        await _drive_frames(ctx, port.line_in, [_frame(0x00, stop=0), [1] * 30], 8)
        seen["error"] = ctx.get(port.error)

    _simulate(port, host)
    assert seen == {"error": 1}
