"""LossEngine: the LOSS instruction, a :class:`~hw.loss_unit.LossUnit` between TMEM and the ACC.

Feeds the logits A (B, C) from TMEM port A one element per cycle, row by
row, each row with its label (lane 0 of B's row, through port B; a label
outside [0, C) marks no class: golden ``int_loss.softmax_grid``), and packs
the unit's int32 errors into ACC words (C elements per row in
ceil(C / lanes) words, from AMEM word 0), keeping the ACC's max |x| and
max(x, 0) for the QUANT that follows.  The logits' exponent arrives in the
command's ``shift`` field (the LossUnit clamps it to its range).
Each ACC word is registered on its way to the memories (they sit across
the chip); ``done`` pulses the cycle after the last word is written.  ``counters``
add up, over the rows with a label, the rows, the correct predictions and
the loss in Q16 bits (golden ``machine.LossCounters``); ``clear`` zeroes them.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .delay import delayed
from .interfaces import (EngineSignature, amem_addr_shape, amem_word_layout, counters_layout, dim_shape,
                         tmem_addr_shape)
from .loss_unit import LossUnit


class LossEngine(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({**EngineSignature(cfg).members, "counters": Out(counters_layout()), "clear": In(1)})

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.cfg, self.cfg.lanes
        m.submodules.unit = unit = LossUnit(cfg)
        cmd = Signal.like(self.cmd.payload)
        row, col = Signal(dim_shape(cfg)), Signal(dim_shape(cfg))
        lane = Signal(range(lanes))
        row_addr, read_addr = Signal(tmem_addr_shape(cfg)), Signal(tmem_addr_shape(cfg))
        word = Signal.like(self.tmem_a.data)
        label = Signal.like(unit.i.payload.label)
        # the label's range check in three registered steps (the TMEM read, the compare with this engine's
        # own copy of the class count, the multiplexer): TMEM and the command register sit across the chip
        raw_label, in_range, classes = Signal.like(self.tmem_b.data[0]), Signal(), Signal.like(cmd.a.cols)

        m.d.comb += [self.tmem_a.addr.eq(read_addr), self.tmem_b.addr.eq(cmd.b.base + row),
                     unit.cmd.payload.rows.eq(self.cmd.payload.a.rows),
                     unit.cmd.payload.cols.eq(self.cmd.payload.a.cols),
                     unit.cmd.payload.exp.eq(self.cmd.payload.shift),
                     unit.i.payload.logit.eq(word[lane]), unit.i.payload.label.eq(label)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.comb += unit.cmd.valid.eq(1)           # the unit is idle whenever the engine is
                    m.d.sync += [cmd.eq(self.cmd.payload), row.eq(0), row_addr.eq(self.cmd.payload.a.base),
                                 read_addr.eq(self.cmd.payload.a.base), classes.eq(self.cmd.payload.a.cols)]
                    m.next = "LABEL"
            with m.State("LABEL"):
                m.d.comb += self.tmem_b.en.eq(1)
                m.next = "LABEL_WAIT"
            with m.State("LABEL_WAIT"):
                m.d.sync += [raw_label.eq(self.tmem_b.data[0]), col.eq(0), lane.eq(0)]
                m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.tmem_a.en.eq(1)
                m.d.sync += in_range.eq((raw_label >= 0) & (raw_label < classes))
                m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                m.d.sync += [word.eq(self.tmem_a.data), read_addr.eq(read_addr + 1),
                             label.eq(Mux(in_range, raw_label, cfg.max_features))]
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += unit.i.valid.eq(1)
                with m.If(unit.i.ready):
                    m.d.sync += [col.eq(col + 1), lane.eq(lane + 1)]
                    with m.If(col == cmd.a.cols - 1):
                        m.d.sync += [row.eq(row + 1), row_addr.eq(row_addr + cmd.a.stride),
                                     read_addr.eq(row_addr + cmd.a.stride)]
                        m.next = "LABEL"
                        with m.If(row == cmd.a.rows - 1):
                            m.next = "DRAIN"
                    with m.Elif(lane == lanes - 1):
                        m.next = "READ"
            with m.State("DRAIN"):
                with m.If(self.done):
                    m.next = "IDLE"
        self._collect(m, unit)
        self._count(m, unit)
        return m

    def _count(self, m, unit):
        """The loss counters, from each labelled row's last beat."""
        out, counters = unit.o.payload, self.counters
        with m.If(self.clear):
            m.d.sync += counters.eq(0)
        with m.Elif(unit.o.valid & out.row_last & out.labelled):
            m.d.sync += [counters.samples.eq(counters.samples + 1),
                         counters.correct.eq(counters.correct + out.correct),
                         counters.loss_bits.eq(counters.loss_bits + out.loss_bits)]

    def _collect(self, m, unit):
        """Errors from the unit into ACC words, with the ACC peaks; ``done`` after the last word.  The
        unit's beats are registered, then their magnitudes, so the unit's last pass, the word's
        write and the running OR each get a clock period."""
        cfg, lanes = self.cfg, self.cfg.lanes
        lane = Signal(lanes, init=1)                # one-hot: each lane's multiplexer takes one flip-flop
        addr = Signal(amem_addr_shape(cfg))
        held = Signal(amem_word_layout(cfg))
        peak_abs, peak_pos = Signal(cfg.acc_bits), Signal(cfg.acc_bits)
        beat, beat_valid = Signal.like(unit.o.payload), Signal()
        m.d.sync += [beat.eq(unit.o.payload), beat_valid.eq(unit.o.valid)]
        error = beat.error
        magnitude, positive, sized = Signal(cfg.acc_bits), Signal(cfg.acc_bits), Signal()
        m.d.sync += [magnitude.eq(Mux(error < 0, -error, error)), positive.eq(Mux(error > 0, error, 0)),
                     sized.eq(beat_valid)]
        merged = Signal.like(held)
        for n in range(lanes):
            m.d.comb += merged[n].eq(Mux(lane[n], error, held[n]))
        write = Signal()                            # the ACC write registered: the memories sit across the chip
        m.d.comb += [unit.o.ready.eq(1), self.amem_w.en.eq(write),
                     self.result.peak_abs.eq(peak_abs), self.result.peak_pos.eq(peak_pos)]
        m.d.sync += [self.amem_w.addr.eq(addr), self.amem_w.data.eq(merged), write.eq(0)]
        finish = Signal()                           # the last word's write decided; written a cycle later
        m.d.sync += finish.eq(0)
        m.d.comb += self.done.eq(delayed(m, finish, 2, name="finish"))
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [lane.eq(1), addr.eq(0), peak_abs.eq(0), peak_pos.eq(0)]
        with m.If(sized):
            m.d.sync += [peak_abs.eq(peak_abs | magnitude), peak_pos.eq(peak_pos | positive)]
        with m.If(beat_valid):
            m.d.sync += [held.eq(merged), lane.eq(lane.rotate_left(1))]
            with m.If(lane[lanes - 1] | beat.row_last):
                m.d.sync += [write.eq(1), held.eq(0), lane.eq(1), addr.eq(addr + 1), finish.eq(beat.last)]

