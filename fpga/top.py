"""ULX3S top: EoqSystem behind the on-board FTDI UART, a PLL for the core clock, status LEDs.

    clk25 (G2) --EHXPLLL--> sync (``freq`` Hz), held in reset until the PLL locks
    ~locked --AsyncFFSynchronizer--> DCCA --> sync's reset, on a primary clock net
    FTDI TXD -> uart.rx (M1) --SerialPort (UartRx, 16-byte FIFO)--> EoqSystem.rx
    EoqSystem.tx --SerialPort (4-byte FIFO, UartTx)--> uart.tx (L4) -> FTDI RXD

FTDI pins: only the ``uart`` resource is requested.  Its rx/tx are the data
lines; its rts/dtr subsignals (M3/N1) get no buffer at all (requested with
dir="-" and left unconnected), so nothing drives against the FTDI.  ``uart_tx_enable`` (L3, an FTDI CBUS line that
amaranth-boards declares as an output) and ``program`` (M4, user PROGRAMN)
are deliberately not requested.  JTAG programming through the same FT231X
uses the dedicated JTAG pins, which the design cannot touch, so
``make program`` works whatever bitstream is loaded.

LEDs (D0 nearest the FTDI ... D7):
    0 heartbeat (about 1 Hz)    1 idle (not busy, no error)    2 busy
    3 error (status.code != 0)  4 UART overrun or framing error (sticky)
    5 byte received (stretched) 6 byte sent (stretched)       7 PLL locked
"""

from __future__ import annotations

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io, stream, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer

from golden_model.config import CoreConfig
from hw.interfaces import status_layout
from hw.serial_port import SerialPort
from hw.system import EoqSystem
from hw.uart import bit_period

from .pll import pll_params

#: The core clock: a PLL output (from 25 MHz) that the board cores meet on the 85F with fpga.build's
#: default seed with some 20 % to spare (the 8x8 routed at 54.78 MHz against it at part 15).  55 MHz is
#: met on some placements and not others (the 8x8 at 56.72 and 50.00 MHz, part 16, docs/fpga.md); the
#: UART's rational bit period (hw.uart.BitTimer) no longer ties the clock to multiples of 3 MHz.
DEFAULT_FREQ = 45_000_000
DEFAULT_BAUD = 3_000_000
OSC_FREQ = 25_000_000


class EchoSystem(wiring.Component):
    """Stand-in for EoqSystem: sends every received byte back (serial-link bring-up, quick flow tests)."""

    def __init__(self, cfg: CoreConfig):
        super().__init__({
            "rx": wiring.In(stream.Signature(8)),
            "tx": wiring.Out(stream.Signature(8)),
            "status": wiring.Out(status_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.rx), wiring.flipped(self.tx))
        return m


class UlxTop(Elaboratable):
    """``system`` defaults to ``EoqSystem(cfg)``; any component with rx/tx streams and status fits."""

    def __init__(self, cfg: CoreConfig, freq: float = DEFAULT_FREQ, baud: int = DEFAULT_BAUD, system=None):
        self.cfg = cfg
        self.pll = pll_params(OSC_FREQ, freq)
        self.freq = float(self.pll.fout)
        self.baud = baud
        self.bit_period = bit_period(self.freq, baud)     # ValueError for a bad pair, before any build
        self.system = system

    def elaborate(self, platform):
        m = Module()

        # clock and reset
        clk25 = platform.request("clk25", 0, dir="-")
        m.submodules.clk25_buf = clk25_buf = io.Buffer("i", clk25)
        m.domains.sync = cd_sync = ClockDomain("sync")
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            i_CLKI=clk25_buf.i, i_CLKFB=ClockSignal("sync"), o_CLKOP=ClockSignal("sync"), o_LOCK=locked,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            **self.pll.instance_params(),
        )
        # The reset reaches some 24,000 flip-flops' LSR inputs.  nextpnr-ecp5 promotes only clocks to the
        # global network, so as a fabric net the reset was the most congested net of the router's first
        # iterations (docs/fpga.md); driven by a DCCA it rides a primary clock net instead.
        reset = Signal()
        m.submodules.reset_sync = AsyncFFSynchronizer(~locked, reset, o_domain="sync")
        m.submodules.reset_buf = Instance("DCCA", i_CLKI=reset, i_CE=1, o_CLKO=cd_sync.rst)
        # No FREQUENCY NET for the core clock: after synthesis its net has no stable name, and nextpnr
        # derives the PLL output constraint itself from the 25 MHz input (clk25's Clock) and the divider
        # settings (it reports it as '$glbnet$clk' at the --freq target).

        # UART <-> system
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = uart_rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = uart_tx_buf = io.Buffer("o", uart.tx)
        m.submodules.serial = serial = SerialPort(self.bit_period)
        m.submodules.system = system = self.system if self.system is not None else EoqSystem(self.cfg)
        m.d.comb += [serial.line_in.eq(uart_rx_buf.i), uart_tx_buf.o.eq(serial.line_out)]
        wiring.connect(m, serial.rx, system.rx)
        wiring.connect(m, system.tx, serial.tx)

        # LEDs
        status = system.status
        error = status.code != 0
        heartbeat = Signal(max(int(self.freq).bit_length() - 1, 1))      # top bit: ~1 Hz
        m.d.sync += heartbeat.eq(heartbeat + 1)
        stretch = 1 << max(1, int(self.freq // 20).bit_length())      # ~50 ms flashes
        rx_seen, tx_seen = Signal(range(stretch)), Signal(range(stretch))
        for seen, fire in ((rx_seen, serial.rx_fire), (tx_seen, serial.tx_fire)):
            with m.If(fire):
                m.d.sync += seen.eq(stretch - 1)
            with m.Elif(seen != 0):
                m.d.sync += seen.eq(seen - 1)
        leds = [heartbeat[-1], ~status.busy & ~error, status.busy, error, serial.error,
                rx_seen != 0, tx_seen != 0, locked]
        for index, value in enumerate(leds):
            m.submodules[f"led_{index}"] = led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(value)
        return m
