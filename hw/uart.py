"""8N1 UART receiver and transmitter with byte streams (amaranth.lib.stream).

A bit lasts ``clk_freq / baud`` clock cycles, a rational number
(:func:`bit_period`): :class:`BitTimer` makes each bit ``q`` or ``q + 1``
cycles long by Bresenham's rule, so the bit edges stay within a cycle of
where they belong and the average rate is the baud rate exactly, at any
core clock (an integer divisor would be ``round(clk_freq / baud)``, 1.85 %
fast for 3 Mbaud at 55 MHz).

UartRx
    ``line``      the serial input (idle high); synchronized internally.
    ``rx``        received bytes (Out stream).  One byte of buffering: a byte
                  that completes while the previous one is still not taken is
                  dropped and sets ``overrun``.
    ``overrun``   sticky; cleared by ``clear``.
    ``framing``   sticky: a stop bit was low (the byte is dropped).
UartTx
    ``tx``        bytes to send (In stream); one is held while another is
                  shifted out, so frames follow back to back.
    ``line``      the serial output (idle high).
    ``busy``      a byte is held or being shifted out.
"""

from __future__ import annotations

from fractions import Fraction

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MAX_BAUD: int = 3_000_000
#: The bit period's denominator is kept this small (the timer's error accumulator has its range); the
#: rate then differs from the exact one by well under :data:`MAX_BAUD_ERROR`, which :func:`bit_period` checks.
MAX_PERIOD_DENOMINATOR: int = 64
MAX_BAUD_ERROR: float = 1e-4
MIN_BIT_CYCLES: int = 4


def bit_period(clk_freq: float, baud: int) -> Fraction:
    """Clock cycles per bit for ``baud`` at ``clk_freq`` Hz; ValueError if the clock is too slow, or if no
    period with a denominator of at most :data:`MAX_PERIOD_DENOMINATOR` is within :data:`MAX_BAUD_ERROR`."""
    if not 0 < baud <= MAX_BAUD:
        raise ValueError(f"baud rate {baud} out of range: 1 .. {MAX_BAUD}")
    if clk_freq <= 0:
        raise ValueError(f"clock frequency must be positive, got {clk_freq}")
    period = Fraction(round(clk_freq), baud).limit_denominator(MAX_PERIOD_DENOMINATOR)
    if period < MIN_BIT_CYCLES:
        raise ValueError(f"clock {clk_freq / 1e6:g} MHz is too slow for {baud} baud "
                         f"(needs at least {MIN_BIT_CYCLES} cycles per bit, i.e. {MIN_BIT_CYCLES * baud / 1e6:g} MHz)")
    error = abs(clk_freq / period - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud rate {baud} at {clk_freq / 1e6:g} MHz: the nearest bit period with a denominator "
                         f"of at most {MAX_PERIOD_DENOMINATOR}, {period} cycles, is {100 * error:.3f} % off (more "
                         f"than {100 * MAX_BAUD_ERROR:g} %); choose a clock nearer such a multiple of the baud rate")
    return period


def baud_error(clk_freq: float, baud: int) -> float:
    """Relative error of the average baud rate for ``bit_period(clk_freq, baud)``."""
    return (clk_freq / bit_period(clk_freq, baud) - baud) / baud


def _as_period(period: Fraction | int) -> Fraction:
    period = Fraction(period)
    if period < MIN_BIT_CYCLES or period.denominator > MAX_PERIOD_DENOMINATOR:
        raise ValueError(f"UART bit period must be at least {MIN_BIT_CYCLES} cycles with a denominator of at "
                         f"most {MAX_PERIOD_DENOMINATOR}, got {period}")
    return period


class BitTimer(wiring.Component):
    """Bit periods of ``period = q + r / d`` cycles: ``tick`` marks each period's last cycle.

    Each period is ``q`` cycles, or ``q + 1`` when the error accumulator (``r`` per period, modulo
    ``d``) wraps, so ``d`` periods last ``q * d + r`` cycles exactly.  ``start`` begins a period in
    this cycle (``half``: half a period, rounded down, for sampling mid-bit); otherwise a new period
    begins after each tick.
    """

    def __init__(self, period: Fraction | int):
        self.period = _as_period(period)
        super().__init__({"start": In(1), "half": In(1), "tick": Out(1)})

    def elaborate(self, platform):
        m = Module()
        q, r = divmod(self.period.numerator, self.period.denominator)
        d = self.period.denominator
        half = self.period.numerator // (2 * d)
        timer = Signal(range(q + 1))
        # tick is a register (timer == 0 next cycle): a period and a half period are at least 2 cycles
        tick = Signal(init=1)
        m.d.comb += self.tick.eq(tick)
        m.d.sync += tick.eq(~self.start & ~tick & (timer == 1))
        full = Signal(range(q + 1))
        if d == 1:
            m.d.comb += full.eq(q - 1)
        else:
            err = Signal(range(d))
            carry = err + r >= d
            m.d.comb += full.eq(q - 1 + carry)
            with m.If((self.start & ~self.half) | (~self.start & self.tick)):
                m.d.sync += err.eq(Mux(carry, err + r - d, err + r))
        with m.If(self.start):
            m.d.sync += timer.eq(Mux(self.half, half - 1, full))
        with m.Elif(self.tick):
            m.d.sync += timer.eq(full)
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UartRx(wiring.Component):
    """Samples each bit in its middle: half a bit period after the start bit's falling edge, then every period."""

    def __init__(self, period: Fraction | int):
        self.period = _as_period(period)
        super().__init__({
            "line": In(1, init=1),
            "rx": Out(stream.Signature(8)),
            "overrun": Out(1),
            "framing": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_line = FFSynchronizer(self.line, line, init=1)
        m.submodules.timer = timer = BitTimer(self.period)
        bit = Signal(range(10))
        shreg = Signal(8)

        with m.If(self.rx.ready):
            m.d.sync += self.rx.valid.eq(0)
        with m.If(self.clear):
            m.d.sync += [self.overrun.eq(0), self.framing.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.comb += [timer.start.eq(1), timer.half.eq(1)]
                    m.d.sync += bit.eq(0)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer.tick):
                    with m.If(line):            # glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer.tick):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer.tick):
                    with m.If(~line):
                        m.d.sync += self.framing.eq(1)
                        m.next = "BREAK"
                    with m.Else():
                        with m.If(self.rx.valid & ~self.rx.ready):
                            m.d.sync += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.rx.payload.eq(shreg), self.rx.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                # wait for the line to return high before looking for the next start bit
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    def __init__(self, period: Fraction | int):
        self.period = _as_period(period)
        super().__init__({
            "tx": In(stream.Signature(8)),
            "line": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.timer = timer = BitTimer(self.period)
        # start bit, 8 data bits, stop bit, LSB first; shifted out of bit 0
        frame = Signal(10, init=0x3FF)
        remaining = Signal(range(11))

        # the next byte waits in ``held``, taken while the line is busy: ``ready`` is a flip-flop, so the
        # sender's handshake (a FIFO's read logic across the chip) never reaches the line's own registers
        held, held_valid = Signal(8), Signal()
        m.d.comb += [self.busy.eq((remaining != 0) | held_valid), self.tx.ready.eq(~held_valid)]
        with m.If(self.tx.valid & ~held_valid):
            m.d.sync += [held.eq(self.tx.payload), held_valid.eq(1)]
        # the next frame may start right after the last cycle of the stop bit
        last = (remaining == 1) & timer.tick
        with m.If(held_valid & ((remaining == 0) | last)):
            m.d.comb += timer.start.eq(1)
            m.d.sync += [frame.eq((1 << 9) | (held << 1)), remaining.eq(10), self.line.eq(0), held_valid.eq(0)]
        with m.Elif((remaining != 0) & timer.tick):
            m.d.sync += remaining.eq(remaining - 1)
            with m.If(remaining == 1):
                m.d.sync += self.line.eq(1)
            with m.Else():
                m.d.sync += [self.line.eq(frame[1]), frame.eq(frame >> 1)]
        return m
