"""LinkExecutor: checks and executes request frames on the core (docs/protocol.md), the middle stage.

Takes a parsed frame, applies the checks in the protocol's order (stall,
CRC, length beyond max_payload, unknown command, BUSY while a run is active,
then the command's own length and range rules from protocol.wire.COMMANDS)
and only then changes the core: a :class:`BulkWriter` copies a bulk write
from the frame buffer into TMEM or program memory, a table entry or the step
keys' seed and step are written, the loss counters are read or cleared,
or a run starts.  Every frame ends in one answer for the responder, except a
RUN that starts a run (its answer is sent when the run ends, at a frame
boundary) and a repeated RUN of the active run.
"""

from types import SimpleNamespace

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from protocol.wire import (ADDRESS_BYTES, COMMANDS, COUNTERS_PAYLOAD_BYTES, PING_PAYLOAD_BYTES, RUN_PAYLOAD_BYTES,
                           STATUS_PAYLOAD_BYTES, TENSOR_ENTRY_BYTES, Cmd, LinkStatus, Unit, ping_payload, unit_bytes,
                           unit_depth)

from .interfaces import CoreControlSignature, ReadPortSignature, WritePortSignature, tmem_addr_shape, tmem_word_layout
from .link_parser import frame_layout
from .link_responder import answer_layout


def arguments(frame) -> SimpleNamespace:
    """The frame's argument fields (little-endian, protocol.wire formats): the address (bulk writes,
    READ_TMEM, RUN's pc), READ_TMEM's count, WRITE_TENSOR's slot and entry, WRITE_KEYS' seed and step."""
    args = frame.args
    return SimpleNamespace(addr=args[0:16], count=args[16:32], slot=args[0:8], base=args[8:24], rows=args[24:40],
                           cols=args[40:56], exp=args[56:72].as_signed(), seed=args[0:32], step=args[32:64])


def executor_core_signature(cfg: CoreConfig) -> wiring.Signature:
    """The core control ports the executor drives: all but the TMEM read port (the responder's)."""
    members = CoreControlSignature(cfg).members
    return wiring.Signature({name: member for name, member in members.items() if name != "tmem_r"})


class BulkWriter(wiring.Component):
    """Copies ``count`` units (TMEM words or instructions) from frame-buffer byte ADDRESS_BYTES on to
    ``address`` on, one unit per write; ``done`` pulses after the last write."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "start": In(1), "unit": In(Unit), "address": In(16), "count": In(16),
            "done": Out(1),
            "buffer": Out(ReadPortSignature(range(cfg.max_payload), 8)),
            "tmem_w": Out(WritePortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
            "prog_w": Out(CoreControlSignature(cfg).members["prog_w"].signature),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        size = max(unit_bytes(unit, cfg) for unit in Unit)
        gather = Signal(8 * size)
        byte, left, address, index = Signal(range(size)), Signal(16), Signal(16), Signal(16)
        unit = Signal(Unit)
        words = unit == Unit.WORD
        last_byte = Mux(words, unit_bytes(Unit.WORD, cfg) - 1, unit_bytes(Unit.INSTRUCTION, cfg) - 1)
        m.d.comb += [self.buffer.addr.eq(index),
                     self.tmem_w.addr.eq(address), self.tmem_w.data.eq(gather[:8 * cfg.lanes]),
                     self.prog_w.addr.eq(address), self.prog_w.data.eq(gather[:64])]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [unit.eq(self.unit), address.eq(self.address), left.eq(self.count),
                                 index.eq(ADDRESS_BYTES), byte.eq(0)]
                    m.next = "READ"
            with m.State("READ"):                # one buffer byte per two cycles (synchronous read)
                m.d.comb += self.buffer.en.eq(1)
                m.d.sync += index.eq(index + 1)
                m.next = "LATCH"
            with m.State("LATCH"):
                for i in range(size):
                    with m.If(byte == i):
                        m.d.sync += gather[8 * i:8 * i + 8].eq(self.buffer.data)
                m.d.sync += byte.eq(byte + 1)
                m.next = "READ"
                with m.If(byte == last_byte):
                    m.d.sync += byte.eq(0)
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.tmem_w.en.eq(words), self.prog_w.en.eq(~words)]
                m.d.sync += [address.eq(address + 1), left.eq(left - 1)]
                m.next = "READ"
                with m.If(left == 1):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m


class LinkExecutor(wiring.Component):
    """``frame`` in, ``answer`` out; ``core`` drives the core's control ports, ``buffer`` reads the
    frame buffer.  ``run_ended``: a run has ended and its answer is pending; ``mid_frame`` (from the
    parser) holds that answer back until the frame in progress has been answered."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "frame": In(stream.Signature(frame_layout())),
            "mid_frame": In(1),
            "run_ended": Out(1),
            "buffer": Out(ReadPortSignature(range(cfg.max_payload), 8)),
            "answer": Out(stream.Signature(answer_layout())),
            "core": Out(executor_core_signature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        core, st = self.core, self.core.status
        m.submodules.bulk = bulk = BulkWriter(cfg)
        wiring.connect(m, bulk.buffer, wiring.flipped(self.buffer))
        wiring.connect(m, bulk.tmem_w, wiring.flipped(core.tmem_w))
        wiring.connect(m, bulk.prog_w, wiring.flipped(core.prog_w))

        frame = Signal(frame_layout())
        answer = self.answer.payload
        running, run_seq = Signal(), Signal(8)
        repeat = (frame.seq == run_seq) & (frame.seq != 0)
        m.d.comb += self.run_ended.eq(running & ~st.busy)

        args = arguments(frame)
        pc16, exp16 = Signal(16), Signal(signed(16))
        m.d.comb += [pc16.eq(st.pc), exp16.eq(core.table_r.exp)]
        code_byte = Cat(st.code, C(0, 8 - len(st.code)))
        run_bytes = Cat(code_byte, pc16, st.cycles)
        status_bytes = Cat(st.busy, C(0, 7), code_byte, pc16, st.cycles, run_seq)
        entry_bytes = Cat(core.table_r.base, core.table_r.rows, core.table_r.cols, exp16)
        ping_bytes = C(int.from_bytes(ping_payload(cfg), "little"), 8 * PING_PAYLOAD_BYTES)
        counter_bytes = Cat(core.counters.samples, core.counters.correct, core.counters.loss_bits)
        payloads = {"ping": ping_bytes, "status": status_bytes, "run": run_bytes, "counters": counter_bytes}

        m.d.comb += [
            bulk.address.eq(args.addr), bulk.count.eq(frame.units),
            core.table_w.slot.eq(args.slot), core.table_w.entry.base.eq(args.base),
            core.table_w.entry.rows.eq(args.rows), core.table_w.entry.cols.eq(args.cols),
            core.table_w.entry.exp.eq(args.exp), core.table_r_slot.eq(args.slot),
            core.run.pc.eq(args.addr), core.keys_w.seed.eq(args.seed), core.keys_w.step.eq(args.step),
            answer.cmd.eq(frame.cmd), answer.seq.eq(frame.seq),
        ]

        def reply(status, n_bytes=0, payload=None, from_tmem=False):
            m.d.sync += [answer.status.eq(status), answer.length.eq(n_bytes), answer.from_tmem.eq(int(from_tmem)),
                         answer.tmem_addr.eq(args.addr)]
            if payload is not None:
                m.d.sync += answer.small.eq(payload)
            m.next = "ANSWER"

        # the command table: known commands, those served while running, the fixed request lengths
        known, served, length_ok = Signal(), Signal(), Signal()
        with m.Switch(frame.cmd):
            for cmd, spec in COMMANDS.items():
                with m.Case(cmd):
                    m.d.comb += [known.eq(1), served.eq(spec.while_running)]
                    if spec.length is None:
                        m.d.comb += length_ok.eq((frame.length >= ADDRESS_BYTES) & frame.whole)
                    else:
                        m.d.comb += length_ok.eq(frame.length == spec.length)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.frame.ready.eq(1)
                with m.If(self.frame.valid):
                    m.d.sync += frame.eq(self.frame.payload)
                    m.next = "CHECK"
                with m.Elif(self.run_ended & ~self.mid_frame):     # the run ended: send its answer
                    m.d.sync += [frame.cmd.eq(Cmd.RUN), frame.seq.eq(run_seq), running.eq(0)]
                    reply(LinkStatus.OK, RUN_PAYLOAD_BYTES, run_bytes)
            with m.State("CHECK"):
                with m.If(frame.timeout):
                    reply(LinkStatus.TIMEOUT)
                with m.Elif(~frame.crc_ok):
                    reply(LinkStatus.BAD_CRC)
                with m.Elif(frame.length > cfg.max_payload):
                    reply(LinkStatus.BAD_LENGTH)
                with m.Elif(~known):
                    reply(LinkStatus.BAD_COMMAND)
                with m.Elif(running & ~served):
                    with m.If((frame.cmd == Cmd.RUN) & repeat):
                        m.next = "IDLE"               # a repeated RUN of the active run: answered at its end
                    with m.Else():
                        reply(LinkStatus.BUSY)
                with m.Elif(~length_ok):
                    reply(LinkStatus.BAD_LENGTH)
                with m.Else():
                    m.next = "EXECUTE"
            with m.State("EXECUTE"):
                self._execute(m, SimpleNamespace(frame=frame, reply=reply, bulk=bulk, running=running,
                                                 run_seq=run_seq, repeat=repeat, payloads=payloads))
            with m.State("BULK"):
                with m.If(bulk.done):
                    reply(LinkStatus.OK)
            with m.State("TABLE_WAIT"):          # the table reads the slot (synchronous read)
                m.next = "TABLE_READ"
            with m.State("TABLE_READ"):          # table_r shows the slot's entry this cycle
                reply(LinkStatus.OK, TENSOR_ENTRY_BYTES, entry_bytes)
            with m.State("ANSWER"):
                m.d.comb += self.answer.valid.eq(1)
                with m.If(self.answer.ready):
                    m.next = "IDLE"
        return m

    def _execute(self, m, state):
        """EXECUTE: the command's own range rules, then its effect or its answer."""
        cfg, core, frame, reply = self.cfg, self.core, state.frame, state.reply
        args = arguments(frame)
        addr, count, slot, exp = args.addr, args.count, args.slot, args.exp
        exp_limit = 1 << (cfg.exp_bits - 1)
        with m.Switch(frame.cmd):
            with m.Case(Cmd.PING):
                reply(LinkStatus.OK, PING_PAYLOAD_BYTES, state.payloads["ping"])
            with m.Case(Cmd.STATUS):
                reply(LinkStatus.OK, STATUS_PAYLOAD_BYTES, state.payloads["status"])
            for cmd, spec in COMMANDS.items():
                if spec.unit is not None:
                    with m.Case(cmd):
                        with m.If(addr + frame.units > unit_depth(spec.unit, cfg)):
                            reply(LinkStatus.ADDR_RANGE)
                        with m.Elif(frame.units == 0):
                            reply(LinkStatus.OK)
                        with m.Else():
                            m.d.comb += [state.bulk.start.eq(1), state.bulk.unit.eq(spec.unit)]
                            m.next = "BULK"
            with m.Case(Cmd.READ_TMEM):
                with m.If(count > cfg.max_payload // cfg.lanes):
                    reply(LinkStatus.BAD_LENGTH)
                with m.Elif(addr + count > cfg.tmem_words):
                    reply(LinkStatus.ADDR_RANGE)
                with m.Else():
                    reply(LinkStatus.OK, count * cfg.lanes, from_tmem=True)
            with m.Case(Cmd.WRITE_TENSOR):
                with m.If((slot >= cfg.tensor_slots) | (exp < -exp_limit) | (exp >= exp_limit)):
                    reply(LinkStatus.ADDR_RANGE)
                with m.Else():
                    m.d.comb += core.table_w.en.eq(1)
                    reply(LinkStatus.OK)
            with m.Case(Cmd.WRITE_KEYS):
                m.d.comb += core.keys_w.en.eq(1)
                reply(LinkStatus.OK)
            with m.Case(Cmd.READ_COUNTERS):
                reply(LinkStatus.OK, COUNTERS_PAYLOAD_BYTES, state.payloads["counters"])
            with m.Case(Cmd.CLEAR_COUNTERS):
                m.d.comb += core.counters_clear.eq(1)
                reply(LinkStatus.OK)
            with m.Case(Cmd.READ_TENSOR):
                with m.If(slot >= cfg.tensor_slots):
                    reply(LinkStatus.ADDR_RANGE)
                with m.Else():
                    m.next = "TABLE_WAIT"
            with m.Case(Cmd.RUN):
                with m.If(addr >= cfg.program_depth):
                    reply(LinkStatus.ADDR_RANGE)
                with m.Elif(state.repeat):
                    reply(LinkStatus.OK, RUN_PAYLOAD_BYTES, state.payloads["run"])   # repeated RUN: the last result
                with m.Else():
                    m.d.comb += core.run.start.eq(1)
                    m.d.sync += [state.running.eq(1), state.run_seq.eq(frame.seq)]
                    m.next = "IDLE"
