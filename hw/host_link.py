"""Host link: the byte-stream host protocol (docs/protocol.md) in hardware.

``rx`` carries request bytes (from a UART receiver), ``tx`` answer bytes (to a
UART transmitter, back-pressure through ``tx.ready``), ``core`` drives the
core's control ports (hw.interfaces.CoreControlSignature).

One frame at a time: the parser hunts for 0xA5, takes the header, stores
the payload in a frame buffer (a Memory of cfg.max_payload bytes; the first 9
payload bytes also go into an argument register), checks the CRC and only
then executes the command: buffered words are copied into TMEM or program
memory, table entries written, a run started.  A corrupted, truncated or
refused frame changes nothing.  The answer is generated with its own CRC;
READ_TMEM streams words from TMEM.  While a run is active the link keeps
answering frames (STATUS, PING; BUSY for the rest) and sends the RUN answer
when ``core.status.busy`` falls.  Core contract: ``status.busy`` is high from
the cycle after ``run.start`` until the run ends, and status.code/pc/cycles
then hold the run's result.

The reference of every byte is host/link_model.py (checked by
sim_tests/tb_host_link.py).
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from host.protocol import (PING_PAYLOAD_BYTES, REQUEST_SYNC, RESPONSE_SYNC, Cmd, LinkStatus, check_protocol_fit,
                           ping_payload)

from .crc import Crc16
from .interfaces import CoreControlSignature

ARG_BYTES = 9        # WRITE_TENSOR's arguments, the longest
BENCH_TIMEOUT_CYCLES = 2048   # frame timeout of the stand-alone unit (rtl_gen unit "host_link", its bench)
SMALL_BYTES = PING_PAYLOAD_BYTES


def _bits(n: int) -> int:
    return max(n - 1, 1).bit_length()


def bench_timeout_cycles(cfg: CoreConfig) -> int:
    """Frame timeout of the stand-alone unit: the configured one, capped so that the bench stays fast."""
    return min(cfg.frame_timeout_cycles, BENCH_TIMEOUT_CYCLES)


class HostLink(wiring.Component):
    """``timeout_cycles`` overrides cfg.frame_timeout_cycles (the unit bench uses a short one)."""

    def __init__(self, cfg: CoreConfig, timeout_cycles: int | None = None):
        check_protocol_fit(cfg)
        self.cfg = cfg
        self.timeout_cycles = cfg.frame_timeout_cycles if timeout_cycles is None else timeout_cycles
        if self.timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be positive, got {self.timeout_cycles}")
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "core": Out(CoreControlSignature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lanes = cfg.lanes
        core = self.core
        rx, tx = self.rx, self.tx

        m.submodules.rx_crc = rx_crc = Crc16()
        m.submodules.tx_crc = tx_crc = Crc16()
        m.submodules.buffer = buffer = Memory(shape=8, depth=cfg.max_payload, init=[])
        buf_w = buffer.write_port()
        buf_r = buffer.read_port()

        # ---- request registers ----
        cmd = Signal(8)
        seq = Signal(8)
        length = Signal(16)
        idx = Signal(16)
        crc_lo = Signal(8)
        rx_check = Signal(16)
        args = Signal(8 * ARG_BYTES)
        unit_bytes = max(lanes, 8)
        sub = Signal(range(unit_bytes))          # bytes after the address modulo the unit (word / instruction)
        units = Signal(16)                       # whole units after the address
        timer = Signal(range(self.timeout_cycles + 1))

        # ---- run state ----
        running = Signal()
        run_seq = Signal(8)

        # ---- answer registers ----
        r_status = Signal(8)
        r_len = Signal(16)
        r_tmem = Signal()                        # payload streamed from TMEM (READ_TMEM), else from `small`
        small = Signal(8 * SMALL_BYTES)
        tx_idx = Signal(16)
        t_addr = Signal(16)
        lane = Signal(range(lanes))
        word = Signal(8 * lanes)
        have_word = Signal()
        fetching = Signal()

        # ---- commit registers ----
        c_addr = Signal(16)
        c_left = Signal(16)
        k = Signal(range(unit_bytes))
        gather = Signal(8 * unit_bytes)
        r_slot = Signal(8)

        is_tmem_write = cmd == Cmd.WRITE_TMEM
        unit_last = Mux(is_tmem_write, lanes - 1, 7)   # last byte index of a TMEM word / an instruction

        # arguments (little-endian fields of the payload)
        a_addr = args[0:16]
        a_count = args[16:32]
        a_slot = args[0:8]
        t_base, t_rows, t_cols, t_exp = args[8:24], args[24:40], args[40:56], args[56:72].as_signed()

        # status payloads
        st = core.status
        pc16 = Signal(16)
        exp16 = Signal(signed(16))
        m.d.comb += [pc16.eq(st.pc), exp16.eq(core.table_r.exp), core.table_r_slot.eq(r_slot)]
        run_bytes = Cat(st.code, C(0, 4), pc16, st.cycles)                                  # 7 bytes
        status_bytes = Cat(st.busy, C(0, 7), st.code, C(0, 4), pc16, st.cycles, run_seq)   # 9 bytes
        entry_bytes = Cat(core.table_r.base, core.table_r.rows, core.table_r.cols, exp16)   # 8 bytes
        ping_bytes = C(int.from_bytes(ping_payload(cfg), "little"), 8 * SMALL_BYTES)

        m.d.comb += [
            buf_w.data.eq(rx.payload),
            buf_w.addr.eq(idx),
            rx_crc.data.eq(rx.payload),
            core.tmem_w.addr.eq(c_addr),
            core.tmem_w.data.eq(gather[:8 * lanes]),
            core.prog_w.addr.eq(c_addr),
            core.prog_w.data.eq(gather[:64]),
            core.table_w.slot.eq(a_slot),
            core.table_w.entry.base.eq(t_base),
            core.table_w.entry.rows.eq(t_rows),
            core.table_w.entry.cols.eq(t_cols),
            core.table_w.entry.exp.eq(t_exp),
            core.run.pc.eq(a_addr),
            core.tmem_r.addr.eq(t_addr),
            buf_r.addr.eq(idx),
            tx_crc.data.eq(tx.payload),
        ]

        byte = rx.payload
        accept = rx.valid & rx.ready
        exp_limit = 1 << (cfg.exp_bits - 1)

        def answer(status, n_bytes=0, payload=None, from_tmem=False):
            stmts = [r_status.eq(status), r_len.eq(n_bytes), r_tmem.eq(int(from_tmem)), tx_idx.eq(0)]
            if payload is not None:
                stmts.append(small.eq(payload))
            m.d.sync += stmts
            m.next = "TX_HEADER"

        def timed_wait():
            with m.If(rx.valid):
                m.d.sync += timer.eq(0)
            with m.Elif(timer == self.timeout_cycles - 1):
                answer(LinkStatus.TIMEOUT)
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        header = Signal(8)
        with m.Switch(tx_idx[:3]):
            with m.Case(0):
                m.d.comb += header.eq(RESPONSE_SYNC)
            with m.Case(1):
                m.d.comb += header.eq(cmd)
            with m.Case(2):
                m.d.comb += header.eq(seq)
            with m.Case(3):
                m.d.comb += header.eq(r_status)
            with m.Case(4):
                m.d.comb += header.eq(r_len[:8])
            with m.Default():
                m.d.comb += header.eq(r_len[8:])

        with m.FSM():
            with m.State("HUNT"):
                with m.If(running & ~st.busy):
                    m.d.sync += [cmd.eq(Cmd.RUN), seq.eq(run_seq), running.eq(0)]
                    answer(LinkStatus.OK, 7, run_bytes)
                with m.Else():
                    m.d.comb += rx.ready.eq(1)
                    with m.If(rx.valid & (byte == REQUEST_SYNC)):
                        m.d.comb += rx_crc.clear.eq(1)
                        m.d.sync += [cmd.eq(0), seq.eq(0), length.eq(0), idx.eq(0), timer.eq(0)]
                        m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [rx.ready.eq(1), rx_crc.en.eq(rx.valid)]
                timed_wait()
                with m.If(accept):
                    m.d.sync += idx.eq(idx + 1)
                    with m.Switch(idx[:2]):
                        with m.Case(0):
                            m.d.sync += cmd.eq(byte)
                        with m.Case(1):
                            m.d.sync += seq.eq(byte)
                        with m.Case(2):
                            m.d.sync += length[:8].eq(byte)
                        with m.Case(3):
                            m.d.sync += [length[8:].eq(byte), idx.eq(0), sub.eq(0), units.eq(0)]
                            with m.If((byte == 0) & (length[:8] == 0)):
                                m.next = "CRC"
                            with m.Else():
                                m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                m.d.comb += [rx.ready.eq(1), rx_crc.en.eq(rx.valid),
                             buf_w.en.eq(accept & (idx < cfg.max_payload))]
                timed_wait()
                with m.If(accept):
                    m.d.sync += idx.eq(idx + 1)
                    for i in range(ARG_BYTES):
                        with m.If(idx == i):
                            m.d.sync += args[8 * i:8 * i + 8].eq(byte)
                    with m.If(idx >= 2):
                        with m.If(sub == unit_last):
                            m.d.sync += [sub.eq(0), units.eq(units + 1)]
                        with m.Else():
                            m.d.sync += sub.eq(sub + 1)
                    with m.If(idx == length - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "CRC"

            with m.State("CRC"):
                m.d.comb += rx.ready.eq(1)
                timed_wait()
                with m.If(accept):
                    with m.If(idx[0] == 0):
                        m.d.sync += [crc_lo.eq(byte), idx.eq(1)]
                    with m.Else():
                        m.d.sync += [rx_check.eq(Cat(crc_lo, byte)), idx.eq(0)]
                        m.next = "EXEC"

            with m.State("EXEC"):
                # idx is 0 here: it addresses the frame buffer for the commit loop below.
                busy_refused = running & (cmd != Cmd.STATUS) & (cmd != Cmd.PING)
                repeat = (seq == run_seq) & (seq != 0)
                with m.If(rx_check != rx_crc.crc):
                    answer(LinkStatus.BAD_CRC)
                with m.Elif(length > cfg.max_payload):
                    answer(LinkStatus.BAD_LENGTH)
                with m.Elif((cmd == 0) | (cmd > int(max(Cmd)))):
                    answer(LinkStatus.BAD_COMMAND)
                with m.Elif(busy_refused):
                    with m.If((cmd == Cmd.RUN) & repeat):
                        m.next = "HUNT"               # repeated RUN of the active run: answered at its end
                    with m.Else():
                        answer(LinkStatus.BUSY)
                with m.Elif(cmd == Cmd.PING):
                    with m.If(length != 0):
                        answer(LinkStatus.BAD_LENGTH)
                    with m.Else():
                        answer(LinkStatus.OK, PING_PAYLOAD_BYTES, ping_bytes)
                with m.Elif(cmd == Cmd.STATUS):
                    with m.If(length != 0):
                        answer(LinkStatus.BAD_LENGTH)
                    with m.Else():
                        answer(LinkStatus.OK, 9, status_bytes)
                with m.Elif((cmd == Cmd.WRITE_TMEM) | (cmd == Cmd.WRITE_PROGRAM)):
                    depth = Mux(cmd == Cmd.WRITE_PROGRAM, cfg.program_depth, cfg.tmem_words)
                    with m.If((length < 2) | (sub != 0)):
                        answer(LinkStatus.BAD_LENGTH)
                    with m.Elif(a_addr + units > depth):
                        answer(LinkStatus.ADDR_RANGE)
                    with m.Elif(units == 0):
                        answer(LinkStatus.OK)
                    with m.Else():
                        m.d.sync += [c_addr.eq(a_addr), c_left.eq(units), idx.eq(2), k.eq(0)]
                        m.next = "COMMIT_READ"
                with m.Elif(cmd == Cmd.READ_TMEM):
                    with m.If((length != 4) | (a_count > cfg.max_payload // lanes)):
                        answer(LinkStatus.BAD_LENGTH)
                    with m.Elif(a_addr + a_count > cfg.tmem_words):
                        answer(LinkStatus.ADDR_RANGE)
                    with m.Else():
                        m.d.sync += [t_addr.eq(a_addr), lane.eq(0), have_word.eq(0), fetching.eq(0)]
                        answer(LinkStatus.OK, a_count * lanes, from_tmem=True)
                with m.Elif(cmd == Cmd.WRITE_TENSOR):
                    with m.If(length != 9):
                        answer(LinkStatus.BAD_LENGTH)
                    with m.Elif((a_slot >= cfg.tensor_slots) | (t_exp < -exp_limit) | (t_exp >= exp_limit)):
                        answer(LinkStatus.ADDR_RANGE)
                    with m.Else():
                        m.d.comb += core.table_w.en.eq(1)
                        answer(LinkStatus.OK)
                with m.Elif(cmd == Cmd.READ_TENSOR):
                    with m.If(length != 1):
                        answer(LinkStatus.BAD_LENGTH)
                    with m.Elif(a_slot >= cfg.tensor_slots):
                        answer(LinkStatus.ADDR_RANGE)
                    with m.Else():
                        m.d.sync += r_slot.eq(a_slot)
                        m.next = "TABLE_WAIT"
                with m.Else():  # RUN
                    with m.If(length != 2):
                        answer(LinkStatus.BAD_LENGTH)
                    with m.Elif(a_addr >= cfg.program_depth):
                        answer(LinkStatus.ADDR_RANGE)
                    with m.Elif(repeat):
                        answer(LinkStatus.OK, 7, run_bytes)   # repeated RUN: repeat the last result
                    with m.Else():
                        m.d.comb += core.run.start.eq(1)
                        m.d.sync += [running.eq(1), run_seq.eq(seq)]
                        m.next = "HUNT"

            with m.State("TABLE_WAIT"):          # the table reads r_slot (synchronous read)
                m.next = "TABLE_READ"

            with m.State("TABLE_READ"):          # table_r shows r_slot's entry this cycle
                answer(LinkStatus.OK, 8, entry_bytes)

            with m.State("COMMIT_READ"):
                m.d.comb += buf_r.en.eq(1)
                m.d.sync += idx.eq(idx + 1)
                m.next = "COMMIT_LATCH"

            with m.State("COMMIT_LATCH"):
                for i in range(unit_bytes):
                    with m.If(k == i):
                        m.d.sync += gather[8 * i:8 * i + 8].eq(buf_r.data)
                with m.If(k == unit_last):
                    m.d.sync += k.eq(0)
                    m.next = "COMMIT_WRITE"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    m.next = "COMMIT_READ"

            with m.State("COMMIT_WRITE"):
                with m.If(is_tmem_write):
                    m.d.comb += core.tmem_w.en.eq(1)
                with m.Else():
                    m.d.comb += core.prog_w.en.eq(1)
                m.d.sync += [c_addr.eq(c_addr + 1), c_left.eq(c_left - 1)]
                with m.If(c_left == 1):
                    m.d.sync += idx.eq(0)
                    answer(LinkStatus.OK)
                with m.Else():
                    m.next = "COMMIT_READ"

            with m.State("TX_HEADER"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(header)]
                with m.If(tx.ready):
                    m.d.comb += [tx_crc.clear.eq(tx_idx == 0), tx_crc.en.eq(tx_idx != 0)]
                    m.d.sync += tx_idx.eq(tx_idx + 1)
                    with m.If(tx_idx == 5):
                        m.d.sync += tx_idx.eq(0)
                        with m.If(r_len == 0):
                            m.next = "TX_CRC_LO"
                        with m.Else():
                            m.next = "TX_PAYLOAD"

            with m.State("TX_PAYLOAD"):
                ready_byte = Signal()
                with m.If(r_tmem):
                    m.d.comb += [tx.payload.eq(word.word_select(lane, 8)), ready_byte.eq(have_word)]
                    with m.If(~have_word & ~fetching):
                        m.d.comb += core.tmem_r.en.eq(1)
                        m.d.sync += fetching.eq(1)
                    with m.If(fetching):
                        m.d.sync += [word.eq(core.tmem_r.data), have_word.eq(1), fetching.eq(0)]
                with m.Else():
                    m.d.comb += [tx.payload.eq(small.word_select(tx_idx[:5], 8)), ready_byte.eq(1)]
                m.d.comb += tx.valid.eq(ready_byte)
                with m.If(ready_byte & tx.ready):
                    m.d.comb += tx_crc.en.eq(1)
                    m.d.sync += tx_idx.eq(tx_idx + 1)
                    with m.If(lane == lanes - 1):
                        m.d.sync += [lane.eq(0), have_word.eq(0), t_addr.eq(t_addr + 1)]
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
                    with m.If(tx_idx == r_len - 1):
                        m.next = "TX_CRC_LO"

            with m.State("TX_CRC_LO"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(tx_crc.crc[:8])]
                with m.If(tx.ready):
                    m.next = "TX_CRC_HI"

            with m.State("TX_CRC_HI"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(tx_crc.crc[8:])]
                with m.If(tx.ready):
                    m.next = "HUNT"

        return m
