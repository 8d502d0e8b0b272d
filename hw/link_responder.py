"""Responder: the host link's answer frames (docs/protocol.md), its last stage.

Takes one answer (header fields, and a payload either from a register of up
to SMALL_ANSWER_BYTES bytes or streamed from TMEM for READ_TMEM) and sends
``0x5A cmd seq status len payload crc`` on ``tx``, honouring back-pressure.
"""

from amaranth import Module, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from protocol.wire import CRC, RESPONSE_SYNC, SMALL_ANSWER_BYTES

from .interfaces import ReadPortSignature, tmem_addr_shape, tmem_word_layout

HEADER_BYTES = 6    # sync, cmd, seq, status, len(2)


def answer_layout() -> data.StructLayout:
    """What the executor asks the responder to send."""
    return data.StructLayout({
        "cmd": 8, "seq": 8, "status": 8, "length": 16,
        "from_tmem": 1,                        # payload: TMEM words from ``tmem_addr`` on, else ``small``
        "small": 8 * SMALL_ANSWER_BYTES,
        "tmem_addr": 16,
    })


class Responder(wiring.Component):
    """``answer`` in (accepted when idle), ``tx`` bytes out, ``tmem`` reads for READ_TMEM payloads."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "answer": In(stream.Signature(answer_layout())),
            "tx": Out(stream.Signature(8)),
            "tmem": Out(ReadPortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.cfg.lanes
        tx = self.tx
        m.submodules.crc = check = crc.Processor(CRC(data_width=8))

        answer = Signal(answer_layout())
        index = Signal(16)
        lane = Signal(range(lanes))
        word = Signal(8 * lanes)
        have_word, fetching = Signal(), Signal()
        address = Signal(16)
        sent = tx.valid & tx.ready
        m.d.comb += [check.data.eq(tx.payload), self.tmem.addr.eq(address)]

        header = Signal(8)
        fields = [RESPONSE_SYNC, answer.cmd, answer.seq, answer.status, answer.length[:8], answer.length[8:]]
        with m.Switch(index[:3]):
            for position, value in enumerate(fields):
                with m.Case(position):
                    m.d.comb += header.eq(value)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.answer.ready.eq(1)
                with m.If(self.answer.valid):
                    m.d.sync += [answer.eq(self.answer.payload), index.eq(0), lane.eq(0), have_word.eq(0),
                                 fetching.eq(0), address.eq(self.answer.payload.tmem_addr)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(header)]
                with m.If(sent):
                    m.d.comb += [check.start.eq(index == 0), check.valid.eq(index != 0)]
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == HEADER_BYTES - 1):
                        m.d.sync += index.eq(0)
                        with m.If(answer.length == 0):
                            m.next = "CRC_LOW"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                ready_byte = Signal()
                with m.If(answer.from_tmem):
                    m.d.comb += [tx.payload.eq(word.word_select(lane, 8)), ready_byte.eq(have_word)]
                    with m.If(~have_word & ~fetching):
                        m.d.comb += self.tmem.en.eq(1)
                        m.d.sync += fetching.eq(1)
                    with m.If(fetching):
                        m.d.sync += [word.eq(self.tmem.data), have_word.eq(1), fetching.eq(0)]
                with m.Else():
                    m.d.comb += [tx.payload.eq(answer.small.word_select(index[:5], 8)), ready_byte.eq(1)]
                m.d.comb += tx.valid.eq(ready_byte)
                with m.If(sent):
                    m.d.comb += check.valid.eq(1)
                    m.d.sync += index.eq(index + 1)
                    with m.If(lane == lanes - 1):
                        m.d.sync += [lane.eq(0), have_word.eq(0), address.eq(address + 1)]
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
                    with m.If(index == answer.length - 1):
                        m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(check.crc[:8])]
                with m.If(tx.ready):
                    m.next = "CRC_HIGH"
            with m.State("CRC_HIGH"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(check.crc[8:])]
                with m.If(tx.ready):
                    m.next = "IDLE"
        return m
