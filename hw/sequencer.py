"""The sequencer: fetches instructions, checks them, and issues them to the engines.

    program memory --> inst --> Decoder --(registered)--> pending --> cmd (engine)
                        |          |                         |
          tensor table <+          +--> Checker (error)      +--> IssueTracker (in flight, ACC state)

Per instruction: FETCH (program memory read) -> DECODE -> CHECK -> ISSUE.
The tensor table answers one cycle after it is given the instruction's
slots, and the sequencer registers its entries; the
:class:`~hw.decoder.Decoder` turns instruction, entries and ACC state into
the engine command and issue record, registered once; the
:class:`~hw.checker.Checker` registers every check rule and reports the
status of the first failing check (the golden machine's order and code).
CHECK waits until the checker has settled and the
:class:`~hw.issue_tracker.IssueTracker` says the instruction need not wait
for a running one (exponent write-back, ACC producer); ISSUE waits until the
pending instruction shares no engine, memory port or TMEM words with one in
flight, so two instructions run side by side where they can, and the result
is that of in-order execution.  A failed check waits for the running
instructions, then stops the run with the status code and the pc of the
failing instruction; HALT ends a pass with OK the same way.  A run makes
``passes`` passes from its pc (LOOP; RUN is one pass): after each, with
``advance``, the step register counts on, and the next pass starts once
the new step's key base has settled.  The
:class:`~hw.step_keys.StepKeys` registers give the decoder the step's part
of a step key (instruction flag f4).
"""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import PORTS, Engine, Op, Status, status_bits

from .checker import Checker, checker_inputs
from .decoder import Decoder, issue_record_layout
from .interfaces import (command_layout, instruction_layout, keys_write_signature, pc_shape, result_layout,
                         run_signature, status_layout)
from .issue_tracker import IssueTracker
from .step_keys import StepKeys
from .tensor_table import ExpWriteSignature, TableReadSignature


#: CHECK's wait covers the decoder's registered facts: the instruction is latched, its geometry facts and
#: SQ shift follow Decoder.LATENCY cycles later, then the checker's register stages (hw/checker.py); the
#: table's entries arrive two cycles after the instruction (its read, then the sequencer's register)
assert Checker.LATENCY >= Checker.STAGES + Decoder.LATENCY, "the checker would settle before the decoder's facts"
assert 2 + Checker.ENTRY_LATENCY <= Checker.LATENCY, "the checker would settle before the entries' rules"
#: ... and the issue record: the entries (2 cycles), its word ranges (Decoder.RANGE_LATENCY), then
#: ``staged_record`` and ``pending`` (a cycle each) and the tracker's ``conflict``
#: (IssueTracker.CONFLICT_LATENCY) answer by the first ISSUE cycle, CHECK's LATENCY + 1 cycles after the
#: instruction is latched
assert 2 + Decoder.RANGE_LATENCY + 2 + IssueTracker.CONFLICT_LATENCY <= Checker.LATENCY + 1, \
    "the conflict check would answer for a stale record"
#: ... and the command: its exponent and ACC fields (Decoder.CMD_LATENCY) then ``staged_cmd``, by the last CHECK
#: cycle
assert Decoder.CMD_LATENCY + 1 <= Checker.LATENCY, "the engine command would be stale at ISSUE"
#: ... and the tracker's registered ``must_wait``, after the instruction or the records changed
assert IssueTracker.MUST_WAIT_LATENCY <= Checker.LATENCY, "CHECK would read a stale must_wait"
#: ... and the tracker takes an issue ISSUE_LATENCY cycles late, from ``pending``, which CHECK changes no earlier
#: than three cycles after ISSUE (FETCH, DECODE); its ``issued`` restarts the checker, whose settling then
#: covers the records' conflict compares before the next ISSUE
assert IssueTracker.ISSUE_LATENCY < 3, "the tracker would record the next instruction's pending record"
assert IssueTracker.ISSUE_LATENCY + IssueTracker.CONFLICT_LATENCY <= Checker.LATENCY + 1, \
    "the conflict check would answer before the records hold the last issue"
#: ... and the tracker writes a finished instruction's exponent back EXP_WRITE_LATENCY cycles after the
#: finish, which restarts the checker: that restart must come before the finish's own restart settles
assert IssueTracker.EXP_WRITE_LATENCY < Checker.LATENCY, "the checker would settle on an exponent not yet written"


class Sequencer(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        engines = len(Engine)
        super().__init__({
            "prog_w": In(wiring.Signature({"en": Out(1), "addr": Out(pc_shape(cfg)), "data": Out(64)})),
            "run": In(run_signature(cfg)),
            "keys_w": In(keys_write_signature()),
            "seed": Out(32), "step": Out(32), "passes": Out(32),
            "status": Out(status_layout(cfg)),
            "rd_dst": Out(TableReadSignature(cfg)),
            "rd_a": Out(TableReadSignature(cfg)),
            "rd_b": Out(TableReadSignature(cfg)),
            "exp_w": Out(ExpWriteSignature(cfg)),
            "cmd": Out(stream.Signature(command_layout(cfg))),
            "engine": Out(range(engines)),
            "ports": Out(len(PORTS)),
            "done": In(engines),
            "result": In(data.ArrayLayout(result_layout(cfg), engines)),
            "bank": Out(engines),
            "op_cycles": Out(data.ArrayLayout(32, len(Op))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.program = program = Memory(shape=64, depth=cfg.program_depth, init=[])
        m.submodules.decoder = decoder = Decoder(cfg)
        m.submodules.checker = checker = Checker(cfg)
        m.submodules.tracker = tracker = IssueTracker(cfg)
        m.submodules.step_keys = step_keys = StepKeys()
        wiring.connect(m, wiring.flipped(self.keys_w), step_keys.write)
        m.d.comb += [self.seed.eq(step_keys.seed), self.step.eq(step_keys.step)]
        write, read = program.write_port(), program.read_port()
        m.d.comb += [write.en.eq(self.prog_w.en), write.addr.eq(self.prog_w.addr), write.data.eq(self.prog_w.data)]

        # ---- run state ----
        pc, busy, code, cycles = Signal(pc_shape(cfg)), Signal(), Signal(status_bits()), Signal(32)
        start_pc, passes, advance = Signal(pc_shape(cfg)), self.passes, Signal()
        wait = Signal(range(StepKeys.LATENCY + 1))
        inst = Signal(instruction_layout())
        m.d.comb += [self.status.busy.eq(busy), self.status.code.eq(code), self.status.pc.eq(pc),
                     self.status.cycles.eq(cycles)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        # ---- decode and check: the table answers for the latched instruction in the next cycle, registered ----
        m.d.comb += [self.rd_dst.slot.eq(inst.dst), self.rd_a.slot.eq(inst.a), self.rd_b.slot.eq(inst.b)]
        entries = {}                # registered: no path runs from the table's block RAM into a multiply
        for name in ("dst", "a", "b"):
            entries[name] = Signal.like(getattr(self, f"rd_{name}").entry, name=f"entry_{name}")
            m.d.sync += entries[name].eq(getattr(self, f"rd_{name}").entry)
        for part in (decoder, checker):
            m.d.comb += [part.inst.eq(inst)] + [getattr(part, name).eq(entry) for name, entry in entries.items()]
        m.d.comb += [decoder.acc.eq(tracker.acc), decoder.step_base.eq(step_keys.base),
                     *checker_inputs(decoder, checker, tracker.acc)]
        staged_cmd, staged_record = Signal.like(decoder.cmd), Signal.like(decoder.record)
        staged_acc, staged_engine = Signal.like(decoder.produced), Signal.like(decoder.engine)
        m.d.sync += [staged_cmd.eq(decoder.cmd), staged_record.eq(decoder.record), staged_acc.eq(decoder.produced),
                     staged_engine.eq(decoder.engine)]

        # ---- issue ----
        pending_cmd = Signal(command_layout(cfg))
        pending, pending_engine = Signal(issue_record_layout(cfg)), Signal.like(decoder.engine)
        pending_acc = Signal.like(decoder.produced)
        issue, changed = Signal(), Signal()
        finished, results = Signal.like(self.done), Signal.like(self.result)   # registered: engines sit across
        m.d.sync += [finished.eq(self.done), results.eq(self.result)]          # the chip from the tracker
        m.d.comb += [
            self.cmd.payload.eq(pending_cmd), self.engine.eq(pending_engine), self.ports.eq(pending.ports),
            tracker.pending.eq(pending), tracker.pending_engine.eq(pending_engine), tracker.pending_acc.eq(pending_acc),
            tracker.issue.eq(issue), tracker.done.eq(finished), tracker.result.eq(results),
            tracker.check.uses.eq(decoder.uses), tracker.check.dst.eq(inst.dst), tracker.check.a.eq(inst.a),
            tracker.check.b.eq(inst.b), tracker.check.consumer.eq(decoder.consumer),
            tracker.check.producer.eq(decoder.record.producer),
            self.bank.eq(tracker.bank),
            checker.invalidate.eq(changed | tracker.exp_w.en | tracker.issued | tracker.finished),
        ]
        wiring.connect(m, tracker.exp_w, wiring.flipped(self.exp_w))

        self._count_op_cycles(m, tracker, busy)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run.start):
                    m.d.sync += [pc.eq(self.run.pc), start_pc.eq(self.run.pc), passes.eq(self.run.passes),
                                 advance.eq(self.run.advance), code.eq(Status.OK), cycles.eq(0), busy.eq(1)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(pc >= cfg.program_depth):
                    m.d.sync += code.eq(Status.PC_RANGE)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += [read.addr.eq(pc), read.en.eq(1)]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += inst.eq(read.data)
                m.d.comb += changed.eq(1)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [pending_cmd.eq(staged_cmd), pending_engine.eq(staged_engine),   # held from the
                             pending.eq(staged_record), pending_acc.eq(staged_acc)]         # cycle before ISSUE
                with m.If(tracker.must_wait | ~checker.settled):
                    pass
                with m.Elif(checker.error != Status.OK):
                    m.d.sync += code.eq(checker.error)
                    m.next = "DRAIN"
                with m.Elif(inst.opcode == Op.HALT):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(~tracker.conflict):
                    m.d.comb += self.cmd.valid.eq(1)
                    with m.If(self.cmd.ready):
                        m.d.comb += issue.eq(1)
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
            with m.State("DRAIN"):
                with m.If(~tracker.any_inflight):
                    with m.If(code != Status.OK):
                        m.d.sync += busy.eq(0)
                        m.next = "IDLE"
                    with m.Else():                  # a pass ended at HALT: the step counts on, the next pass
                        m.d.comb += step_keys.advance.eq(advance)
                        m.d.sync += [passes.eq(passes - 1), wait.eq(StepKeys.LATENCY)]
                        m.next = "NEXT_PASS"
                        with m.If(passes == 1):
                            m.d.sync += busy.eq(0)
                            m.next = "IDLE"
            with m.State("NEXT_PASS"):              # the new step's key base settles
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.sync += pc.eq(start_pc)
                    m.next = "FETCH"
        return m

    def _count_op_cycles(self, m, tracker, busy):
        """Performance counters: cycles with an instruction of each opcode in flight (two may run side by
        side and count twice); the HALT counter takes the cycles with none in flight."""
        with m.If(busy):
            for op in Op:
                in_flight = (sum(r.valid & (r.op == op) for r in tracker.inflight) if op != Op.HALT
                             else ~tracker.any_inflight)
                m.d.sync += self.op_cycles[op].eq(self.op_cycles[op] + in_flight)
