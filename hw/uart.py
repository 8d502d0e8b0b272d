"""8N1 UART receiver and transmitter with byte streams (amaranth.lib.stream).

Both sides count whole clock cycles per bit: ``divisor = round(clk_freq / baud)``
(:func:`uart_divisor`).  The rounding error shifts the sampling point by the
error times the bit position; a receiver that samples mid-bit tolerates a few
percent in total (both ends), so we refuse more than :data:`MAX_BAUD_ERROR`
on our side.

UartRx
    ``line``      the serial input (idle high); synchronized internally.
    ``rx``        received bytes (Out stream).  One byte of buffering: a byte
                  that completes while the previous one is still not taken is
                  dropped and sets ``overrun``.
    ``overrun``   sticky; cleared by ``clear``.
    ``framing``   sticky: a stop bit was low (the byte is dropped).
UartTx
    ``tx``        bytes to send (In stream); taken when the line is idle.
    ``line``      the serial output (idle high).
    ``busy``      a byte is being shifted out.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MAX_BAUD: int = 3_000_000
MAX_BAUD_ERROR: float = 0.02
MIN_DIVISOR: int = 4


def uart_divisor(clk_freq: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_freq`` Hz; ValueError if it cannot be within 2 %."""
    if not 0 < baud <= MAX_BAUD:
        raise ValueError(f"baud rate {baud} out of range: 1 .. {MAX_BAUD}")
    if clk_freq <= 0:
        raise ValueError(f"clock frequency must be positive, got {clk_freq}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"clock {clk_freq / 1e6:g} MHz is too slow for {baud} baud "
                         f"(needs at least {MIN_DIVISOR} cycles per bit, i.e. {MIN_DIVISOR * baud / 1e6:g} MHz)")
    actual = clk_freq / divisor
    error = abs(actual - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(
            f"baud rate {baud} at {clk_freq / 1e6:g} MHz: divisor {divisor} gives {actual:.0f} baud, "
            f"{100 * error:.2f} % off (more than {100 * MAX_BAUD_ERROR:g} %); choose a clock that is closer "
            f"to a multiple of the baud rate (e.g. {divisor * baud / 1e6:g} MHz)")
    return divisor


def baud_error(clk_freq: float, baud: int) -> float:
    """Relative error of the actual baud rate for ``uart_divisor(clk_freq, baud)``."""
    divisor = uart_divisor(clk_freq, baud)
    return (clk_freq / divisor - baud) / baud


class UartRx(wiring.Component):
    def __init__(self, divisor: int):
        if divisor < MIN_DIVISOR:
            raise ValueError(f"UART divisor must be at least {MIN_DIVISOR}, got {divisor}")
        self.divisor = divisor
        super().__init__({
            "line": In(1, init=1),
            "rx": Out(stream.Signature(8)),
            "overrun": Out(1),
            "framing": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        line = Signal(init=1)
        m.submodules.sync_line = FFSynchronizer(self.line, line, init=1)

        timer = Signal(range(div + div // 2 + 1))
        bit = Signal(range(10))
        shreg = Signal(8)

        with m.If(self.rx.ready):
            m.d.sync += self.rx.valid.eq(0)
        with m.If(self.clear):
            m.d.sync += [self.overrun.eq(0), self.framing.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # first sample in the middle of the start bit
                    m.d.sync += [timer.eq(div // 2 - 1), bit.eq(0)]
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):          # glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(div - 1)
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), shreg.eq(Cat(shreg[1:], line)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
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
    def __init__(self, divisor: int):
        if divisor < MIN_DIVISOR:
            raise ValueError(f"UART divisor must be at least {MIN_DIVISOR}, got {divisor}")
        self.divisor = divisor
        super().__init__({
            "tx": In(stream.Signature(8)),
            "line": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        # start bit, 8 data bits, stop bit, LSB first; shifted out of bit 0
        frame = Signal(10, init=0x3FF)
        remaining = Signal(range(11))

        # the next frame may start right after the last cycle of the stop bit
        last = (remaining == 1) & (timer == 0)
        m.d.comb += [self.busy.eq(remaining != 0), self.tx.ready.eq((remaining == 0) | last)]
        with m.If(self.tx.ready & self.tx.valid):
            m.d.sync += [frame.eq((1 << 9) | (self.tx.payload << 1)), remaining.eq(10), timer.eq(div - 1),
                         self.line.eq(0)]
        with m.Elif(remaining != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [timer.eq(div - 1), remaining.eq(remaining - 1)]
                with m.If(remaining == 1):
                    m.d.sync += self.line.eq(1)
                with m.Else():
                    m.d.sync += [self.line.eq(frame[1]), frame.eq(frame >> 1)]
        return m
