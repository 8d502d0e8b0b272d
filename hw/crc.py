"""CRC-16/CCITT-FALSE over one byte per cycle (the host link's frame check, docs/protocol.md)."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

POLY = 0x1021
INIT = 0xFFFF


def crc16_byte(crc, byte):
    """Combinational CRC update by one byte (MSB first, no reflection); Amaranth values in and out."""
    value = crc ^ (byte << 8)
    for _ in range(8):
        shifted = (value << 1)[:16]
        value = Mux(value[15], shifted ^ POLY, shifted)
    return value[:16]


class Crc16(wiring.Component):
    """``crc`` holds CRC-16/CCITT-FALSE of the bytes given with ``en`` since the last ``clear``.

    ``clear`` restarts at 0xFFFF (and wins over ``en`` in the same cycle); the
    register updates at the clock edge, so ``crc`` covers bytes up to the
    previous cycle.  Reset value 0xFFFF.
    """

    def __init__(self):
        super().__init__({"clear": In(1), "en": In(1), "data": In(8), "crc": Out(16, init=INIT)})

    def elaborate(self, platform):
        m = Module()
        state = Signal(16, init=INIT)
        with m.If(self.clear):
            m.d.sync += state.eq(INIT)
        with m.Elif(self.en):
            m.d.sync += state.eq(crc16_byte(state, self.data))
        m.d.comb += self.crc.eq(state)
        return m
