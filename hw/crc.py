"""CRC-16/CCITT-FALSE over one byte per cycle (the host link's frame check, docs/protocol.md)."""

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

POLY = 0x1021
INIT = 0xFFFF


def _step(crc: int, byte: int) -> int:
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ POLY) if crc & 0x8000 else (crc << 1)
    return crc & 0xFFFF


def _taps() -> list[tuple[list[int], list[int]]]:
    """The CRC step is linear over GF(2): for each next-state bit, the crc and data bits it XORs."""
    taps = []
    for out in range(16):
        crc_bits = [i for i in range(16) if _step(1 << i, 0) >> out & 1]
        data_bits = [j for j in range(8) if _step(0, 1 << j) >> out & 1]
        taps.append((crc_bits, data_bits))
    return taps


def crc16_byte(crc, byte):
    """Combinational CRC update by one byte (MSB first, no reflection) as 16 XOR trees."""
    bits = []
    for crc_bits, data_bits in _taps():
        terms = [crc[i] for i in crc_bits] + [byte[j] for j in data_bits]
        value = terms[0]
        for term in terms[1:]:
            value = value ^ term
        bits.append(value)
    return Cat(*bits)


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
