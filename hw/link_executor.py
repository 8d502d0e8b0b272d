"""LinkExecutor: checks and executes request frames on the core (docs/protocol.md), the middle stage.

Takes a parsed frame, applies the checks in the protocol's order (stall,
CRC, length beyond max_payload, unknown command, BUSY while a run is active,
then the command's own length and range rules from protocol.wire.COMMANDS)
and only then changes the core: a :class:`BulkWriter` copies a bulk write
from the frame buffer into TMEM or program memory, a table entry or the step
keys' seed and step are written, the loss counters are read or cleared,
or a run starts.  Every frame ends in one answer for the responder, except a
RUN or LOOP that starts a run (its answer is sent when the run ends, at a
frame boundary) and a repeated RUN or LOOP of the active run.
"""

from types import SimpleNamespace

from amaranth import C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from protocol.wire import (ADDRESS_BYTES, COMMANDS, COUNTERS_PAYLOAD_BYTES, PING_PAYLOAD_BYTES,
                           PROGRESS_PAYLOAD_BYTES, RUN_COMMANDS, RUN_PAYLOAD_BYTES, STATUS_PAYLOAD_BYTES,
                           TENSOR_ENTRY_BYTES, Cmd, LinkStatus, Unit, ping_payload, unit_bytes, unit_depth)

from .interfaces import CoreControlSignature, ReadPortSignature, WritePortSignature, tmem_addr_shape, tmem_word_layout
from .link_parser import frame_layout
from .link_responder import answer_layout


def arguments(frame) -> SimpleNamespace:
    """The frame's argument fields (little-endian, protocol.wire formats): the address (bulk writes,
    READ_TMEM, RUN's and LOOP's pc), READ_TMEM's count, WRITE_TENSOR's slot and entry, WRITE_KEYS' seed
    and step, WRITE_CURSOR's epoch, train and eval, LOOP's passes and advance."""
    args = frame.args
    return SimpleNamespace(addr=args[0:16], count=args[16:32], slot=args[0:8], base=args[8:24], rows=args[24:40],
                           cols=args[40:56], exp=args[56:72].as_signed(), seed=args[0:32], step=args[32:64],
                           epoch=args[0:32], train=args[32:48], eval=args[48:64], passes=args[16:48],
                           advance=args[48:56])


def executor_core_signature(cfg: CoreConfig) -> wiring.Signature:
    """The core control ports the executor drives: all but the TMEM read port (the responder's)."""
    members = CoreControlSignature(cfg).members
    return wiring.Signature({name: member for name, member in members.items() if name != "tmem_r"})


class BulkWriter(wiring.Component):
    """Copies ``count`` units (TMEM words, instructions, data words or labels: protocol.wire.Unit) from
    frame-buffer byte ADDRESS_BYTES on to ``address`` on, one unit per write; ``done`` pulses after the
    last write.  ``unit``, ``address`` and ``count`` are taken in the cycle of ``start``."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "start": In(1), "unit": In(Unit), "address": In(16), "count": In(16),
            "done": Out(1),
            "buffer": Out(ReadPortSignature(range(cfg.max_payload), 8)),
            "tmem_w": Out(WritePortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
            "prog_w": Out(CoreControlSignature(cfg).members["prog_w"].signature),
            "data_w": Out(CoreControlSignature(cfg).members["data_w"].signature),
            "labels_w": Out(CoreControlSignature(cfg).members["labels_w"].signature),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        size = max(unit_bytes(unit, cfg) for unit in Unit)
        gather = Signal(8 * size)
        byte, left, address, index = Signal(range(size)), Signal(16), Signal(16), Signal(16)
        unit = Signal(Unit)
        last_byte = Signal(range(size))
        targets = {Unit.WORD: self.tmem_w, Unit.INSTRUCTION: self.prog_w, Unit.DATA: self.data_w,
                   Unit.LABEL: self.labels_w}
        with m.Switch(unit):
            for kind, target in targets.items():
                with m.Case(kind):
                    m.d.comb += last_byte.eq(unit_bytes(kind, cfg) - 1)
        for target in targets.values():
            m.d.comb += [target.addr.eq(address), target.data.eq(gather[:len(Value.cast(target.data))])]
        m.d.comb += self.buffer.addr.eq(index)
        with m.FSM():
            with m.State("IDLE"):                # the settings follow the inputs: start enables no register
                m.d.sync += [unit.eq(self.unit), address.eq(self.address), left.eq(self.count),
                             index.eq(ADDRESS_BYTES), byte.eq(0)]
                with m.If(self.start):
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
                m.d.comb += [target.en.eq(unit == kind) for kind, target in targets.items()]
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
        wiring.connect(m, bulk.data_w, wiring.flipped(core.data_w))
        wiring.connect(m, bulk.labels_w, wiring.flipped(core.labels_w))

        frame = Signal(frame_layout())
        answer = self.answer.payload
        running, run_seq, run_cmd = Signal(), Signal(8), Signal(8)
        repeat = (frame.seq == run_seq) & (frame.seq != 0)
        starts_run = frame.cmd.matches(*RUN_COMMANDS)
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
        progress = core.progress
        progress_bytes = Cat(progress.step, progress.cursor.epoch, progress.cursor.train, progress.cursor.eval,
                             progress.passes)
        payloads = {"ping": ping_bytes, "status": status_bytes, "run": run_bytes, "counters": counter_bytes,
                    "progress": progress_bytes}

        m.d.comb += [
            bulk.address.eq(args.addr), bulk.count.eq(frame.units),
            core.table_w.slot.eq(args.slot), core.table_w.entry.base.eq(args.base),
            core.table_w.entry.rows.eq(args.rows), core.table_w.entry.cols.eq(args.cols),
            core.table_w.entry.exp.eq(args.exp), core.table_r_slot.eq(args.slot),
            core.run.pc.eq(args.addr), core.keys_w.seed.eq(args.seed), core.keys_w.step.eq(args.step),
            core.run.passes.eq(Mux(frame.cmd == Cmd.LOOP, args.passes, 1)),
            core.run.advance.eq((frame.cmd == Cmd.LOOP) & args.advance[0]),
            core.cursor_w.value.epoch.eq(args.epoch), core.cursor_w.value.train.eq(args.train),
            core.cursor_w.value.eval.eq(args.eval),
            answer.cmd.eq(frame.cmd), answer.seq.eq(frame.seq),
        ]

        def reply(status, n_bytes=0, payload=None, from_tmem=False):
            m.d.sync += [answer.status.eq(status), answer.length.eq(n_bytes), answer.from_tmem.eq(int(from_tmem)),
                         answer.tmem_addr.eq(args.addr)]
            if payload is not None:
                m.d.sync += answer.small.eq(payload)
            m.next = "ANSWER"

        # the command table: known commands, those served while running, the fixed request lengths, bulk units
        known, served, length_ok = Signal(), Signal(), Signal()
        with m.Switch(frame.cmd):
            for cmd, spec in COMMANDS.items():
                with m.Case(cmd):
                    m.d.comb += [known.eq(1), served.eq(spec.while_running)]
                    if spec.unit is not None:
                        m.d.comb += bulk.unit.eq(spec.unit)
                    if spec.length is None:
                        m.d.comb += length_ok.eq((frame.length >= ADDRESS_BYTES) & frame.whole)
                    else:
                        m.d.comb += length_ok.eq(frame.length == spec.length)

        fails = self._range_checks(m, frame)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.frame.ready.eq(1)
                with m.If(self.frame.valid):
                    m.d.sync += frame.eq(self.frame.payload)
                    m.next = "CHECK"
                with m.Elif(self.run_ended & ~self.mid_frame):     # the run ended: send its answer
                    m.d.sync += [frame.cmd.eq(run_cmd), frame.seq.eq(run_seq), running.eq(0)]
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
                    with m.If(starts_run & repeat):
                        m.next = "IDLE"               # a repeated RUN or LOOP of the active run: answered at its end
                    with m.Else():
                        reply(LinkStatus.BUSY)
                with m.Elif(~length_ok):
                    reply(LinkStatus.BAD_LENGTH)
                with m.Else():
                    m.next = "EXECUTE"
            with m.State("EXECUTE"):
                self._execute(m, SimpleNamespace(frame=frame, reply=reply, bulk=bulk, running=running,
                                                 run_seq=run_seq, run_cmd=run_cmd, repeat=repeat,
                                                 payloads=payloads, fails=fails))
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

    def _range_checks(self, m, frame):
        """The commands' range rules, registered every cycle (outside the FSM): the frame is latched in
        IDLE, so they hold in EXECUTE (CHECK is the cycle between), and no adder's carry chain reaches the
        bulk writer or the core's enables.  Returns them as one signal with a field per rule."""
        cfg = self.cfg
        args = arguments(frame)
        addr, count, slot, exp = args.addr, args.count, args.slot, args.exp
        exp_limit = 1 << (cfg.exp_bits - 1)
        fails = Signal(data.StructLayout({name: 1 for name in (
            "bulk_over", "read_long", "read_over", "slot_over", "exp_over", "run_bad")}), name="fails")
        for cmd, spec in COMMANDS.items():
            if spec.unit is not None:
                with m.If(frame.cmd == cmd):
                    m.d.sync += fails.bulk_over.eq(addr + frame.units > unit_depth(spec.unit, cfg))
        m.d.sync += [
            fails.read_long.eq(count > cfg.max_payload // cfg.lanes), fails.read_over.eq(addr + count > cfg.tmem_words),
            fails.slot_over.eq(slot >= cfg.tensor_slots), fails.exp_over.eq((exp < -exp_limit) | (exp >= exp_limit)),
            fails.run_bad.eq((addr >= cfg.program_depth) |
                             ((frame.cmd == Cmd.LOOP) & ((args.passes == 0) | (args.advance > 1)))),
        ]
        return fails

    def _execute(self, m, state):
        """EXECUTE: the command's own range rules, then its effect or its answer."""
        cfg, core, frame, reply = self.cfg, self.core, state.frame, state.reply
        count, fails = arguments(frame).count, state.fails
        with m.Switch(frame.cmd):
            with m.Case(Cmd.PING):
                reply(LinkStatus.OK, PING_PAYLOAD_BYTES, state.payloads["ping"])
            with m.Case(Cmd.STATUS):
                reply(LinkStatus.OK, STATUS_PAYLOAD_BYTES, state.payloads["status"])
            with m.Case(Cmd.PROGRESS):
                reply(LinkStatus.OK, PROGRESS_PAYLOAD_BYTES, state.payloads["progress"])
            with m.Case(Cmd.WRITE_CURSOR):
                m.d.comb += core.cursor_w.en.eq(1)
                reply(LinkStatus.OK)
            for cmd, spec in COMMANDS.items():
                if spec.unit is not None:
                    with m.Case(cmd):
                        with m.If(fails.bulk_over):
                            reply(LinkStatus.ADDR_RANGE)
                        with m.Elif(frame.units == 0):
                            reply(LinkStatus.OK)
                        with m.Else():
                            m.d.comb += state.bulk.start.eq(1)
                            m.next = "BULK"
            with m.Case(Cmd.READ_TMEM):
                with m.If(fails.read_long):
                    reply(LinkStatus.BAD_LENGTH)
                with m.Elif(fails.read_over):
                    reply(LinkStatus.ADDR_RANGE)
                with m.Else():
                    reply(LinkStatus.OK, count * cfg.lanes, from_tmem=True)
            with m.Case(Cmd.WRITE_TENSOR):
                with m.If(fails.slot_over | fails.exp_over):
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
                with m.If(fails.slot_over):
                    reply(LinkStatus.ADDR_RANGE)
                with m.Else():
                    m.next = "TABLE_WAIT"
            with m.Case(*RUN_COMMANDS):
                with m.If(fails.run_bad):
                    reply(LinkStatus.ADDR_RANGE)
                with m.Elif(state.repeat):
                    reply(LinkStatus.OK, RUN_PAYLOAD_BYTES, state.payloads["run"])   # repeated RUN: the last result
                with m.Else():
                    m.d.comb += core.run.start.eq(1)
                    m.d.sync += [state.running.eq(1), state.run_seq.eq(frame.seq), state.run_cmd.eq(frame.cmd)]
                    m.next = "IDLE"
