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

``conflict`` is the OR of one registered answer per record, so the wide
range compares are off the issue path: it answers for ``pending`` and the records of the previous cycle.  Only
an issue adds a record, so a late answer can only be a wait too many, never
a missed conflict, provided ``pending`` held its value in that cycle too (the
sequencer holds it from the cycle before it may issue).

When an engine finishes, its record is cleared, a producer's ACC maxima are
taken from its result, and a pending exponent is written back to the table.
"""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import Engine

from .decoder import acc_state_layout, issue_record_layout, wide_exp_shape
from .interfaces import dim_shape, result_layout, slot_shape
from .tensor_table import ExpWriteSignature


class IssueTracker(wiring.Component):
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
            "conflict": Out(1), "must_wait": Out(1), "any_inflight": Out(1), "finished": Out(1),
            "inflight": Out(data.ArrayLayout(record, engines)),
            "bank": Out(engines),
            "acc": Out(acc_state_layout(cfg)),
            "exp_w": Out(ExpWriteSignature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        records, pending, check = self.inflight, self.pending, self.check
        m.d.comb += self.any_inflight.eq(Cat(*(r.valid for r in records)).any())

        def overlap(lo1, hi1, lo2, hi2):
            return (lo1 < hi2) & (lo2 < hi1)

        def uses(slot):
            return ((check.uses.dst & (check.dst == slot)) | (check.uses.a & (check.a == slot)) |
                    (check.uses.b & (check.b == slot)))

        m.d.comb += [
            self.must_wait.eq(Cat(*(r.valid & ((r.writes_exp & uses(r.dst)) |
                                               (r.producer & (check.consumer | check.producer)))
                                    for r in records)).any()),
            self.finished.eq(Cat(*(self.done[i] & r.valid for i, r in enumerate(records))).any()),
        ]

        conflicts = Signal(len(records))
        m.d.sync += conflicts.eq(Cat(*(
            r.valid & ((Const(index, self.pending_engine.shape()) == self.pending_engine)
                       | (r.ports & pending.ports).any()
                       | overlap(pending.w_lo, pending.w_hi, r.w_lo, r.w_hi)
                       | overlap(pending.w_lo, pending.w_hi, r.r0_lo, r.r0_hi)
                       | overlap(pending.w_lo, pending.w_hi, r.r1_lo, r.r1_hi)
                       | overlap(pending.r0_lo, pending.r0_hi, r.w_lo, r.w_hi)
                       | overlap(pending.r1_lo, pending.r1_hi, r.w_lo, r.w_hi))
            for index, r in enumerate(records))))
        m.d.comb += self.conflict.eq(conflicts.any())

        acc, acc_bank = self.acc, Signal()
        for index, r in enumerate(records):
            with m.If(self.issue & (self.pending_engine == index)):
                m.d.sync += [r.eq(pending), r.valid.eq(1), self.bank[index].eq(pending.producer ^ acc_bank)]
            with m.Elif(self.done[index] & r.valid):
                m.d.sync += r.valid.eq(0)
                with m.If(r.producer):
                    m.d.sync += [acc.maxabs.eq(self.result[index].maxabs), acc.maxpos.eq(self.result[index].maxpos)]
                with m.If(r.writes_exp):
                    m.d.comb += [self.exp_w.en.eq(1), self.exp_w.slot.eq(r.dst), self.exp_w.exp.eq(r.wb_exp)]
        with m.If(self.issue & pending.producer):
            m.d.sync += [acc_bank.eq(~acc_bank), acc.rows.eq(self.pending_acc.rows), acc.cols.eq(self.pending_acc.cols),
                         acc.exp.eq(self.pending_acc.exp)]
        return m
