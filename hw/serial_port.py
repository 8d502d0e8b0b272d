"""SerialPort: the board's byte streams over an 8N1 line (hw.uart), with a FIFO on each side.

The receive FIFO gives the host link a few bytes of slack while it executes a
frame; the transmit FIFO registers the handshake between the link and the
transmitter, whose bit timer would otherwise reach across the chip into the
link's responder (docs/fpga.md, part 16).
"""

from fractions import Fraction

from amaranth import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .uart import UartRx, UartTx


class SerialPort(wiring.Component):
    """``line_in``/``line_out`` the serial lines; ``rx`` the received bytes, ``tx`` the bytes to send;
    ``rx_fire``/``tx_fire`` pulse when a byte leaves the receiver or enters the transmitter, and
    ``error`` is sticky on a receive overrun or framing error."""

    RX_FIFO_DEPTH = 16
    TX_FIFO_DEPTH = 4

    def __init__(self, bit_period: Fraction | int):
        self.bit_period = bit_period
        super().__init__({
            "line_in": In(1, init=1), "line_out": Out(1, init=1),
            "rx": Out(stream.Signature(8)), "tx": In(stream.Signature(8)),
            "rx_fire": Out(1), "tx_fire": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UartRx(self.bit_period)
        m.submodules.uart_tx = utx = UartTx(self.bit_period)
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=self.RX_FIFO_DEPTH)
        m.submodules.tx_fifo = tx_fifo = fifo.SyncFIFOBuffered(width=8, depth=self.TX_FIFO_DEPTH)
        wiring.connect(m, urx.rx, rx_fifo.w_stream)
        wiring.connect(m, rx_fifo.r_stream, wiring.flipped(self.rx))
        wiring.connect(m, wiring.flipped(self.tx), tx_fifo.w_stream)
        wiring.connect(m, tx_fifo.r_stream, utx.tx)
        m.d.comb += [urx.line.eq(self.line_in), self.line_out.eq(utx.line),
                     self.rx_fire.eq(urx.rx.valid & urx.rx.ready), self.tx_fire.eq(utx.tx.valid & utx.tx.ready)]
        m.d.sync += self.error.eq(self.error | urx.overrun | urx.framing)
        return m
