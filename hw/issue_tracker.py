"""IssueTracker: what runs on the engines, whether the next instruction may join it, and the ACC state.

One record per engine (:func:`hw.decoder.issue_record_layout`) holds the
instruction running there: its memory ports, TMEM word ranges, whether it
produces the ACC and which exponent it writes back.  The instruction waiting
to issue (``pending``) conflicts with a running one when they share an
engine, a memory port, or TMEM words (its writes against their reads and
writes, its reads against their writes); it then waits.  The instruction
being checked (``check``) must wait while a running one will still write an
exponent it uses, and an ACC producer or consumer waits while a producer
runs (two ACC banks: each producer writes the bank its predecessor did not,
so a consumer can still read the previous ACC while the next product is
computed).  Results therefore equal in-order execution.

``conflict`` comes ``CONFLICT_LATENCY`` cycles late, so the wide range
compares are off the issue path: the compares of ``pending`` against each
record are registered, then each record's answer, and ``conflict`` is their
OR.  Only an issue adds a record, and the next instruction reaches ISSUE
many cycles after one, so a late answer can only be a wait too many, never a
missed conflict, provided ``pending`` held its value for those cycles (the
sequencer holds it from before it may issue: hw/sequencer.py).
``must_wait`` is registered (``MUST_WAIT_LATENCY``): ``check`` changes only
with a new instruction and the records only at an issue or a finish, and
each of those restarts the sequencer's check, which waits longer than that.

An issue takes effect ``ISSUE_LATENCY`` cycles late (``issued``): the
records and the ACC state are written from ``issued``, a register, so the
sequencer's issue handshake (which waits on the core's command register
across the chip) does not fan out into every record's enable.  ``pending``
is still held then (the sequencer changes it only in CHECK, three cycles
after an issue at the earliest), and ``issued`` restarts the sequencer's
check like an issue did.  Only ``bank`` is set at the issue itself: the
engine may address the ACC from the cycle after its command was taken.

When an engine finishes, its record is cleared, a producer's ACC peaks are
taken from its result, and a pending exponent is written back to the table
``EXP_WRITE_LATENCY`` cycles later (``exp_w`` is a register: the finish
crosses the chip to the table's LUT RAM from a flip-flop).  ``must_wait``
already answers for the cleared record by then, so the sequencer's checker
restarts on ``exp_w.en`` and settles after the table holds the exponent.
"""

import operator
from functools import reduce

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import Engine

from .decoder import acc_state_layout, issue_record_layout, wide_exp_shape
from .interfaces import dim_shape, result_layout, slot_shape
from .tensor_table import ExpWriteSignature


class IssueTracker(wiring.Component):
    #: cycles from ``pending`` to its ``conflict`` answer
    CONFLICT_LATENCY = 2
    #: cycles from ``check`` or a change of the records to ``must_wait``
    MUST_WAIT_LATENCY = 1
    #: cycles from ``issue`` to ``issued``, the cycle whose edge writes the records and the ACC state
    ISSUE_LATENCY = 1
    #: cycles from a finish (``done`` of a record that writes an exponent) to its ``exp_w``
    EXP_WRITE_LATENCY = 1

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        engines = len(Engine)
        record = issue_record_layout(cfg)
        super().__init__({
            "pending": In(record), "pending_engine": In(range(engines)),
            "pending_acc": In(data.StructLayout({"rows": dim_shape(cfg), "cols": dim_shape(cfg),
                                                 "exp": wide_exp_shape(cfg)})),
            "issue": In(1),
            "done": In(engines),
            "result": In(data.ArrayLayout(result_layout(cfg), engines)),
            "check": In(data.StructLayout({"uses": data.StructLayout({"dst": 1, "a": 1, "b": 1}),
                                           "dst": slot_shape(cfg), "a": slot_shape(cfg), "b": slot_shape(cfg),
                                           "consumer": 1, "producer": 1})),
            "conflict": Out(1), "must_wait": Out(1), "any_inflight": Out(1), "finished": Out(1), "issued": Out(1),
            "inflight": Out(data.ArrayLayout(record, engines)),
            "bank": Out(engines),
            "acc": Out(acc_state_layout(cfg)),
            "exp_w": Out(ExpWriteSignature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        records, pending, check = self.inflight, self.pending, self.check
        m.d.comb += self.any_inflight.eq(Cat(*(r.valid for r in records)).any() | self.issued)

        def uses(slot):
            return ((check.uses.dst & (check.dst == slot)) | (check.uses.a & (check.a == slot)) |
                    (check.uses.b & (check.b == slot)))

        m.d.sync += self.must_wait.eq(Cat(*(r.valid & ((r.writes_exp & uses(r.dst)) |
                                                       (r.producer & (check.consumer | check.producer)))
                                            for r in records)).any())
        m.d.comb += [
            self.finished.eq(Cat(*(self.done[i] & r.valid for i, r in enumerate(records))).any()),
        ]

        # two register stages: every compare of the pending instruction against each record, then their
        # combination per record; ``conflict`` is the OR of the per-record answers
        ranges = [("w", "w"), ("w", "r0"), ("w", "r1"), ("r0", "w"), ("r1", "w")]
        conflicts = Signal(len(records))
        for index, r in enumerate(records):
            compares = Signal(2 + 2 * len(ranges), name=f"compares{index}")
            m.d.sync += compares.eq(Cat(
                Const(index, self.pending_engine.shape()) == self.pending_engine, (r.ports & pending.ports).any(),
                *(Cat(getattr(pending, f"{mine}_lo") < getattr(r, f"{theirs}_hi"),
                      getattr(r, f"{theirs}_lo") < getattr(pending, f"{mine}_hi")) for mine, theirs in ranges)))
            overlaps = [compares[2 + 2 * k] & compares[3 + 2 * k] for k in range(len(ranges))]
            m.d.sync += conflicts[index].eq(r.valid & (compares[0] | compares[1] | Cat(*overlaps).any()))
        m.d.comb += self.conflict.eq(conflicts.any())

        acc, acc_bank, issued = self.acc, Signal(), self.issued
        m.d.sync += issued.eq(self.issue)
        for index, r in enumerate(records):
            with m.If(self.issue & (self.pending_engine == index)):
                m.d.sync += self.bank[index].eq(pending.producer ^ acc_bank)
            with m.If(issued & (self.pending_engine == index)):
                m.d.sync += [r.eq(pending), r.valid.eq(1)]
            with m.Elif(self.done[index] & r.valid):
                m.d.sync += r.valid.eq(0)
        # the write-back, EXP_WRITE_LATENCY late: the finishing engines' record multiplexer is registered
        # before it crosses to the table's write port (an issue never meets a finish on its engine: the
        # record is invalid from the issue until ``issued``)
        m.d.sync += self.exp_w.en.eq(0)
        for index, r in enumerate(records):
            with m.If(self.done[index] & r.valid & r.writes_exp):
                m.d.sync += [self.exp_w.en.eq(1), self.exp_w.slot.eq(r.dst), self.exp_w.exp.eq(r.wb_exp)]
        # the finishing producer's peaks: one producer runs at a time (a producer waits in CHECK while one
        # runs: ``must_wait``), so at most one finish is a producer's and the peaks are an AND-OR over the
        # engines instead of a priority chain
        producing = [self.done[index] & r.valid & r.producer for index, r in enumerate(records)]
        with m.If(Cat(*producing).any()):
            for name in ("peak_abs", "peak_pos"):
                terms = [Mux(finishing, getattr(self.result[index], name), 0)
                         for index, finishing in enumerate(producing)]
                m.d.sync += getattr(acc, name).eq(reduce(operator.or_, terms))
        with m.If(issued & pending.producer):
            m.d.sync += [acc_bank.eq(~acc_bank), acc.rows.eq(self.pending_acc.rows), acc.cols.eq(self.pending_acc.cols),
                         acc.exp.eq(self.pending_acc.exp)]
        return m
