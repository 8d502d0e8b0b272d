"""Decoder: one instruction and its operands' table entries -> the engine command and its issue record.

Combinational, generated from the opcode table (golden_model.isa.OPS): the
engine, the memory ports and TMEM word ranges the instruction holds while it
runs, the ACC a producer will write (shape and exponent rules), the SQ shift
of the ACC a consumer quantizes (one :class:`~hw.sq_shift.SqShift`), the
exponent written to dst, and the fields an engine needs
(:func:`hw.interfaces.command_layout`; LOSS's ``shift`` carries A's
exponent).  The exponent sums and differences are registered once
(``EXP_LATENCY``), so no path runs from a table entry through two adds
into the command.  The sequencer registers its outputs
before they are used (hw/sequencer.py).
"""

from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import OPS, PORTS, Acc, Engine, Op, field_width

from .delay import delayed
from .geometry import key_layout, legal, out_height, out_width, pool_shape
from .interfaces import (command_layout, dim_shape, exp_shape, instruction_layout, slot_shape, table_entry_layout,
                         tmem_addr_shape)
from .multiplier import RegisteredMultiplier, registered_product
from .prng import xs32
from .sq_shift import SqShift


def wide_exp_shape(cfg: CoreConfig):
    """Exponent arithmetic before the range check: a sum of two exponents plus a shift fits."""
    return signed(cfg.exp_bits + 3)


def geometry_facts_layout(cfg: CoreConfig) -> data.StructLayout:
    """What a geometry instruction's key implies (hw.geometry): sizes for the checks and the ACC shape.

    in_rows, out_rows  B*H*W and B*Ho*Wo; pool_rows: B*(H/KH)*(W/KW); taps: KH*KW;
    window_shift       log2(KH*KW) (pooling); legal: the key is a geometry the opcode takes
    """
    dim = dim_shape(cfg)
    return data.StructLayout({"in_rows": unsigned(dim.width + 8), "out_rows": unsigned(dim.width + 8),
                              "pool_rows": unsigned(dim.width + 8), "taps": 8, "window_shift": 5, "legal": 1})


def acc_state_layout(cfg: CoreConfig) -> data.StructLayout:
    """The ACC tensor as the sequencer tracks it."""
    return data.StructLayout({"rows": dim_shape(cfg), "cols": dim_shape(cfg), "exp": wide_exp_shape(cfg),
                              "peak_abs": unsigned(cfg.acc_bits), "peak_pos": unsigned(cfg.acc_bits)})


def word_end_shape(cfg: CoreConfig):
    """A TMEM word address one past a tensor's end."""
    return unsigned(tmem_addr_shape(cfg).width + 1)


def operand_ends_layout(cfg: CoreConfig) -> data.StructLayout:
    """One past each operand's last TMEM word (base + rows x stride), wide enough for any table entry
    (the checker's extent rule compares it with the TMEM size; the issue record keeps ``word_end_shape``)."""
    end = unsigned(max(tmem_addr_shape(cfg).width, 2 * dim_shape(cfg).width + 1) + 1)
    return data.StructLayout({name: end for name in ("dst", "a", "b")})


def issue_record_layout(cfg: CoreConfig) -> data.StructLayout:
    """What the issue tracker keeps of an instruction in flight: its resources and its effects.

    ports       memory ports it holds (bit i: golden_model.isa.PORTS[i])
    w_*, r0_*, r1_*  TMEM word ranges [lo, hi) it writes (dst) and reads (A, B); empty when unused
    producer    it writes a new ACC; writes_exp: it writes dst's exponent (``wb_exp``) when done
    """
    end = word_end_shape(cfg)
    return data.StructLayout({
        "valid": 1, "op": field_width("opcode"), "dst": slot_shape(cfg), "writes_exp": 1, "producer": 1,
        "ports": len(PORTS), "w_lo": end, "w_hi": end, "r0_lo": end, "r0_hi": end, "r1_lo": end, "r1_hi": end,
        "wb_exp": exp_shape(cfg),
    })


def holds(condition, inst):
    """golden_model.isa.holds in gateware: every (field, value) of the condition matches."""
    return Cat(*(getattr(inst, field) == value for field, value in condition)).all() if condition else C(1)


def port_mask(ports) -> int:
    return sum(1 << PORTS.index(port) for port in ports)


def stride(cfg: CoreConfig, cols):
    """Words per row: ceil(cols / lanes)."""
    return (cols + (cfg.lanes - 1)) >> (cfg.lanes.bit_length() - 1)


class Decoder(wiring.Component):
    """``inst`` with the entries of its dst, a and b slots and the ACC state in; decode out.

    Combinational but for the geometry facts and the SQ shift of the ACC, which follow ``inst``
    and the ACC state after ``LATENCY`` cycles, the exponents (``dst_exp``, ``quant_exp``, the
    produced ACC's, the command's shifts), which follow them after ``EXP_LATENCY``, and the
    record's word ranges and operand ends (``ends``), which follow the entries after
    ``RANGE_LATENCY``, the produced ACC's words per row (``produced_words``), which follow the
    entries after ``WORDS_LATENCY`` (a CONV's with the facts), and the command (``cmd``), whole
    after ``CMD_LATENCY`` (the sequencer's check covers them all: hw/sequencer.py).

    ``uses`` (dst, a, b): the slots whose words or exponent the instruction
    touches (for the exponent write-back hazard); ``inner_a``/``inner_b``:
    MATMUL's inner lengths of op(A) and op(B); ``quant_exp``: ACC.exp plus the
    SQ shift; ``dst_exp``: the exponent it writes to dst, before the range check;
    ``geometry``: what a CONV, POOL or UNPOOL key implies.
    """

    #: cycles from ``inst`` and the ACC state to the geometry facts and the SQ shift (and what derives
    #: from them: a CONV or POOL's ACC shape, QUANT's exponent, a consumer's command)
    LATENCY = 3 * RegisteredMultiplier.LATENCY
    #: cycles from ``inst``, the entries and the ACC state to the exponents: the sums registered once
    EXP_LATENCY = LATENCY + 1
    #: cycles from the entries to the issue record's word ranges and the operands' ends
    RANGE_LATENCY = RegisteredMultiplier.LATENCY + 1
    #: cycles from the entries to ``produced_words`` (the operands' words per row, registered)
    WORDS_LATENCY = 1
    #: cycles from ``inst``, the entries and the ACC state to the whole command: its ACC shape two stages
    #: after the geometry facts (registered, then its words per row), its exponent fields
    CMD_LATENCY = max(LATENCY + 2, EXP_LATENCY)

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        entry = table_entry_layout(cfg)
        super().__init__({
            "inst": In(instruction_layout()),
            "dst": In(entry), "a": In(entry), "b": In(entry),
            "acc": In(acc_state_layout(cfg)),
            "step_base": In(32),
            "cmd": Out(command_layout(cfg)),
            "engine": Out(range(len(Engine))),
            "record": Out(issue_record_layout(cfg)),
            "produced": Out(data.StructLayout({"rows": dim_shape(cfg), "cols": dim_shape(cfg),
                                               "exp": wide_exp_shape(cfg)})),
            "produced_words": Out(dim_shape(cfg)),
            "consumer": Out(1),
            "uses": Out(data.StructLayout({"dst": 1, "a": 1, "b": 1})),
            "inner_a": Out(dim_shape(cfg)), "inner_b": Out(dim_shape(cfg)),
            "quant_exp": Out(wide_exp_shape(cfg)),
            "dst_exp": Out(wide_exp_shape(cfg)),
            "geometry": Out(geometry_facts_layout(cfg)),
            "ends": Out(operand_ends_layout(cfg)),
        })

    def _geometry(self, m):
        """The key's geometry facts (hw.geometry), for every opcode; meaningful for CONV, POOL, UNPOOL.
        Three rounds of registered multipliers (``LATENCY``: a MULT18X18D with its own registers each, no
        multiply between fabric flip-flops): H x W, the pooled image and KH x KW; then times the batch;
        then B x Ho times Wo.  The ACC shape and the command behind them start from registers.  Returns the
        facts and the taps, a registered multiplier's latency ahead of them."""
        cfg, inst, facts = self.cfg, self.inst, self.geometry
        g = key_layout()(inst.key)
        pool_h, pool_w, _ = pool_shape(g)
        rounds = RegisteredMultiplier.LATENCY
        assert rounds >= 2, "the key's copy and the early facts take a round's two cycles"
        # the early facts from a copy of the key (the instruction register drives the whole sequencer: its
        # route and the output size's adds do not share a cycle)
        key = delayed(m, inst.key, 1, name="g_key")
        pooling = delayed(m, inst.opcode.matches(*(op for op, spec in OPS.items() if spec.geometry == "pool")), 1,
                          name="g_pooling")
        gk = key_layout()(key)
        early = Signal(data.StructLayout({"batch": 5, "ho": 8, "wo": 8, "window_shift": 5, "legal": 1}),
                       name="g_early")
        m.d.sync += [
            early.batch.eq(gk.batch), early.ho.eq(out_height(gk)), early.wo.eq(out_width(gk)),
            early.window_shift.eq(pool_shape(gk)[2]), early.legal.eq(legal(gk, pool=pooling)),
        ]
        first = delayed(m, early, rounds - 2, name="g_first")
        image = registered_product(m, cfg, g.height, g.width, name="g_image")
        pooled = registered_product(m, cfg, pool_h, pool_w, name="g_pooled")
        taps = registered_product(m, cfg, g.kh, g.kw, name="g_taps")
        tall = registered_product(m, cfg, first.batch, first.ho, name="g_tall")
        in_rows = registered_product(m, cfg, first.batch, image, name="g_in_rows")
        pool_rows = registered_product(m, cfg, first.batch, pooled, name="g_pool_rows")
        out_rows = registered_product(m, cfg, tall, delayed(m, first.wo, rounds, name="g_wo"), name="g_out_rows")
        late = delayed(m, first, 2 * rounds, name="g_late")
        ahead = delayed(m, taps, rounds, name="g_taps_ahead")
        m.d.comb += [
            facts.out_rows.eq(out_rows), facts.in_rows.eq(delayed(m, in_rows, rounds, name="g_in_rows_late")),
            facts.pool_rows.eq(delayed(m, pool_rows, rounds, name="g_pool_rows_late")),
            facts.taps.eq(delayed(m, ahead, rounds, name="g_taps_late")),
            facts.window_shift.eq(late.window_shift), facts.legal.eq(late.legal),
        ]
        return facts, ahead

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        inst, dst, a, b, acc = self.inst, self.dst, self.a, self.b, self.acc
        entries = {"dst": dst, "a": a, "b": b}
        opcode = inst.opcode

        # the shift of the ACC a consumer quantizes: the SQ shift (QUANT's ReLU takes max(x, 0); QUPDATE's f0
        # is rounding), or with QUANT's f3 the frozen dst.exp - ACC.exp (above max_shift it flushes)
        m.submodules.sq_shift = sq_shift = SqShift(cfg, pipelined=True)
        assert 1 + SqShift.LATENCY <= self.LATENCY, "the SQ shift must arrive by the geometry facts"
        m.d.sync += sq_shift.peak.eq(Mux(inst.f0 & (opcode == Op.QUANT), acc.peak_pos, acc.peak_abs))
        sq = sq_shift.shift                             # registered peak, then SqShift's stages (LATENCY)
        frozen = inst.f3 & (opcode == Op.QUANT)
        frozen_shift = Signal(wide_exp_shape(cfg))
        m.d.sync += frozen_shift.eq(dst.exp - acc.exp)
        flush = cfg.max_shift + 1
        consumer_shift = Mux(frozen, Mux(frozen_shift > flush, flush, frozen_shift), sq)
        m.d.sync += self.quant_exp.eq(Mux(frozen, dst.exp, acc.exp + sq))
        assert 1 + SqShift.LATENCY + 1 <= self.EXP_LATENCY, "QUANT's exponent must arrive with the others"

        # ACC rules (golden_model.isa.ACC_SHAPES, ACC_EXPONENTS) and the dst exponent (DST_EXPONENTS)
        mat_m, mat_n = Mux(inst.f0, a.cols, a.rows), Mux(inst.f1, b.cols, b.rows)
        m.d.comb += [self.inner_a.eq(Mux(inst.f0, a.rows, a.cols)), self.inner_b.eq(Mux(inst.f1, b.rows, b.cols))]
        facts, taps = self._geometry(m)
        # a CONV's taps x Cp of B's channels, on a registered multiplier beside the facts (the taps are its
        # latency ahead of them), so the ACC shape and the command start from registers
        lanes_log2 = cfg.lanes.bit_length() - 1
        padded_words = registered_product(m, cfg, taps, stride(cfg, b.cols), name="padded_taps")
        padded_taps = padded_words << lanes_log2
        conv_rows = Mux(inst.f0, a.cols, Mux(inst.f1, dst.rows, facts.out_rows))
        conv_cols = Mux(inst.f0, padded_taps, Mux(inst.f1, dst.cols, b.rows))
        # each shape's words per row (ceil(cols / lanes), the checker's ACC size) from the operands' own,
        # registered (WORDS_LATENCY), so no carry follows the opcode's multiplexer; the padded taps are whole
        # words: their count is the product, cut as ``produced.cols`` cuts the columns
        dim_bits = dim_shape(cfg).width
        words = {name: delayed(m, stride(cfg, value), self.WORDS_LATENCY, name=f"words_{name}")
                 for name, value in (("a", a.cols), ("b", b.cols), ("b_rows", b.rows), ("dst", dst.cols))}
        col_words = {"matmul": Mux(inst.f1, words["b"], words["b_rows"]), "a": words["a"], "scalar": 1,
                     "conv": Mux(inst.f0, padded_words[:dim_bits - lanes_log2], Mux(inst.f1, words["dst"],
                                                                                   words["b_rows"])),
                     "pool": words["a"]}
        shapes = {"matmul": (mat_m, mat_n), "a": (a.rows, a.cols), "scalar": (1, 1), "conv": (conv_rows, conv_cols),
                  "pool": (facts.pool_rows, a.cols)}
        exp_max = Mux(a.exp > b.exp, a.exp, b.exp)
        exponents = {"a+b": delayed(m, a.exp + b.exp, 1, name="exp_sum"), "max": delayed(m, exp_max, 1, name="exp_max"),
                     "a": a.exp, "a-window": delayed(m, a.exp - facts.window_shift, 1, name="exp_window"),
                     "loss-grid": C(cfg.loss_fixed_exp, wide_exp_shape(cfg))}
        dst_exponents = {"sq": self.quant_exp, "a": a.exp, "a-window": exponents["a-window"]}
        # one past each operand's last word, RANGE_LATENCY cycles after the entries: the span (rows x
        # stride) on a registered multiplier, then the base added
        ends = self.ends
        for name, entry in entries.items():
            span = registered_product(m, cfg, entry.rows, stride(cfg, entry.cols), name=f"span_{name}")
            m.d.sync += ends[name].eq(entry.base + span)
        produced, record = self.produced, self.record
        with m.Switch(opcode):
            for op, spec in OPS.items():
                with m.Case(op):
                    m.d.comb += [self.engine.eq(spec.engine or 0), self.consumer.eq(spec.acc is Acc.CONSUMES),
                                 record.producer.eq(spec.acc is Acc.PRODUCES), record.ports.eq(port_mask(spec.ports)),
                                 record.writes_exp.eq(spec.dst_exp is not None)]
                    if spec.acc is Acc.PRODUCES:
                        rows, cols = shapes[spec.acc_shape]
                        m.d.comb += [produced.rows.eq(rows), produced.cols.eq(cols),
                                     produced.exp.eq(exponents[spec.acc_exp]),
                                     self.produced_words.eq(col_words[spec.acc_shape])]
                    if spec.dst_exp is not None:
                        m.d.comb += self.dst_exp.eq(dst_exponents[spec.dst_exp])
                    for slot in ("dst", "a", "b"):
                        reads = [holds(r.when, inst) for r in spec.reads if r.slot == slot]
                        read = Cat(*reads).any() if reads else C(0)
                        written = slot == "dst" and (spec.writes_dst or spec.dst_exp is not None)
                        m.d.comb += getattr(self.uses, slot).eq(read | written)
                        if slot != "dst":
                            lo, hi = (record.r0_lo, record.r0_hi) if slot == "a" else (record.r1_lo, record.r1_hi)
                            entry = entries[slot]
                            m.d.comb += [lo.eq(entry.base), hi.eq(Mux(read, ends[slot][:len(hi)], entry.base))]
                    m.d.comb += [record.w_lo.eq(dst.base),
                                 record.w_hi.eq(ends["dst"][:len(record.w_hi)] if spec.writes_dst else dst.base)]
        m.d.comb += [record.op.eq(opcode), record.dst.eq(inst.dst), record.wb_exp.eq(self.dst_exp)]

        # the engine command; its ACC shape registered, then its words per row, and ADD's alignment shifts
        # (max(A.exp, B.exp) - each) from the registered difference A.exp - B.exp (CMD_LATENCY)
        cmd = self.cmd
        exp_diff = delayed(m, a.exp - b.exp, 1, name="exp_diff")
        acc_rows, acc_cols = Signal.like(acc.rows, name="cmd_acc_rows"), Signal.like(acc.cols, name="cmd_acc_cols")
        m.d.sync += [acc_rows.eq(Mux(record.producer, produced.rows, acc.rows)),
                     acc_cols.eq(Mux(record.producer, produced.cols, acc.cols))]
        # its words per row: the produced ACC's are the checker's (``produced_words``), a consumer's the ACC's
        acc_stride = Signal.like(cmd.acc_stride, name="cmd_acc_stride")
        m.d.sync += acc_stride.eq(Mux(record.producer, self.produced_words, stride(cfg, acc.cols)))
        for name, entry in entries.items():
            field = getattr(cmd, name)
            m.d.comb += [field.base.eq(entry.base), field.rows.eq(entry.rows), field.cols.eq(entry.cols),
                         field.stride.eq(stride(cfg, entry.cols))]
        m.d.comb += [
            cmd.op.eq(opcode), cmd.f0.eq(inst.f0), cmd.f1.eq(inst.f1), cmd.f2.eq(inst.f2), cmd.lr.eq(inst.lr),
            cmd.key.eq(Mux(inst.f4, xs32(self.step_base ^ inst.key), inst.key)),
            cmd.acc_rows.eq(delayed(m, acc_rows, 1, name="cmd_acc_rows_late")),
            cmd.acc_cols.eq(delayed(m, acc_cols, 1, name="cmd_acc_cols_late")), cmd.acc_stride.eq(acc_stride),
            cmd.shift_a.eq(delayed(m, Mux(exp_diff < 0, -exp_diff, 0), 1, name="shift_a")),
            cmd.shift_b.eq(delayed(m, Mux(exp_diff > 0, exp_diff, 0), 1, name="shift_b")),
            cmd.shift.eq(Mux(opcode == Op.LOSS, a.exp,
                             dst.exp + inst.lr - Mux(opcode == Op.QUPDATE, self.quant_exp, a.exp))),
            cmd.sq_shift.eq(consumer_shift),
        ]
        return m
