"""Element-wise engine: SCALE, ADD, SUM, DOT, MASK, POOL and UNPOOL, one TMEM word per cycle.

Golden ``Machine._scale`` ... ``_unpool``.  A :class:`~hw.vector_walk.VectorWalk`
says which words to read (A's words in order, B's at the same offset or B's
first word when B is 1x1; POOL: the window's words of each pooled pixel;
UNPOOL: the pooled word covering each pixel) and where each result goes.
Three stages after it:

  issue    read A's word (tmem_a) and B's (tmem_b);
  compute  per lane: a * b (SCALE, DOT), align(a) + align(b) (ADD, nearest
           rounding with the command's shift_a / shift_b), a (SUM, POOL,
           UNPOOL), a if b > 0 else 0 (MASK); lanes past the word's valid
           count become 0, so a broadcast scalar never reaches pad lanes, the
           maxima or the sums;
  write    SCALE, ADD, POOL: the ACC word (a group of KH*KW words summed for
           POOL); MASK, UNPOOL: the TMEM word at dst; SUM, DOT: the lane sum
           added to the running total.

Two more stages follow the ACC words for the running max |x| / max(x, 0):
the written word registered, then its lane maxima; ``done`` waits for them.

SUM / DOT then write the total to lane 0 of AMEM word 0 (other lanes 0) and
take the maxima from it.  MASK reads every
word before it writes it and later reads are at higher offsets, so it may
write in place over A or B; UNPOOL's dst must not overlap A (its checks).
"""

from amaranth import C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring

from golden_model.config import CoreConfig
from golden_model.isa import Op

from .interfaces import EngineSignature, amem_addr_shape, command_layout
from .rounding import WORD_BITS, ShiftDecode, round_shift
from .vector_walk import VectorWalk, Walk, walk_request_layout


def _max(values):
    """Largest of unsigned values, as a balanced comparator tree."""
    values = list(values)
    while len(values) > 1:
        paired = [Mux(x > y, x, y) for x, y in zip(values[0::2], values[1::2])]
        values = paired + values[len(paired) * 2:]
    return values[0]


def _sum(values):
    """Sum of signed values, as a balanced adder tree."""
    values = list(values)
    while len(values) > 1:
        paired = [x + y for x, y in zip(values[0::2], values[1::2])]
        values = paired + values[len(paired) * 2:]
    return values[0]


def _abs(x, width):
    """|x| of a signed value as ``unsigned(width)`` (width = x's width holds |min|)."""
    return Mux(x < 0, -x, x).as_unsigned()[:width]


def lane_result(m: Module, op, a, b, dec_a: ShiftDecode, dec_b: ShiftDecode, shape, name: str) -> Signal:
    """One lane of each opcode (golden ``Machine._scale`` ... ``_unpool``): a * b (SCALE, DOT),
    align(a) + align(b) (ADD, nearest rounding), a (SUM, POOL, UNPOOL), a if b > 0 else 0 (MASK)."""
    value = Signal(shape, name=name)
    no_random = C(0, WORD_BITS)
    with m.Switch(op):
        with m.Case(Op.SCALE, Op.DOT):
            m.d.comb += value.eq(a * b)
        with m.Case(Op.ADD):
            m.d.comb += value.eq(round_shift(a, dec_a, C(0), no_random) + round_shift(b, dec_b, C(0), no_random))
        with m.Case(Op.SUM, Op.POOL, Op.UNPOOL):
            m.d.comb += value.eq(a)
        with m.Case(Op.MASK):
            m.d.comb += value.eq(Mux(b > 0, a, 0))
    return value


class VectorEngine(wiring.Component):
    """Executes SCALE, ADD, SUM, DOT and MASK commands (see the module docstring)."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__(EngineSignature(cfg))

    def _alignment(self, m: Module, shift, name: str) -> ShiftDecode:
        """Decode of an ADD alignment shift.  Nearest rounding of an int8 by more than data_bits gives 0,
        like a flush, so the decoder flushes above min(data_bits, max_shift): exact, and no wide shifter
        per lane."""
        cfg = self.cfg
        align_cfg = cfg.replace(max_shift=min(cfg.data_bits, cfg.max_shift))
        flush = align_cfg.max_shift + 1
        clamped = Signal(range(flush + 1), name=f"{name}_clamped")
        m.d.comb += clamped.eq(Mux(shift > flush, flush, shift))
        return ShiftDecode(m, clamped, align_cfg, name=name)

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.cfg, self.cfg.lanes
        # One lane's result before it is widened to the accumulator: an int8
        # product needs 2 * data_bits bits; sums of two aligned int8 fit too.
        lane_shape = signed(2 * cfg.data_bits)
        lane_word = data.ArrayLayout(lane_shape, lanes)

        cmd = Signal(command_layout(cfg))
        op = cmd.op
        m.submodules.walk = walk = VectorWalk(cfg)
        dec_a, dec_b = (self._alignment(m, shift, name) for name, shift in (("shift_a", cmd.shift_a),
                                                                             ("shift_b", cmd.shift_b)))
        m.d.comb += [walk.a.eq(cmd.a), walk.b.eq(cmd.b), walk.key.eq(cmd.key),
                     walk.walk.eq(Mux(op == Op.POOL, Walk.POOL, Mux(op == Op.UNPOOL, Walk.UNPOOL, Walk.LINEAR))),
                     walk.words.eq(Mux(op == Op.POOL, cmd.acc_rows * cmd.acc_stride,
                                       Mux(op == Op.UNPOOL, cmd.dst.rows * cmd.dst.stride, cmd.a.rows * cmd.a.stride)))]
        broadcast = (cmd.b.rows == 1) & (cmd.b.cols == 1)

        # --- issue ------------------------------------------------------------
        request = walk.o.payload
        m.d.comb += [self.tmem_a.addr.eq(request.a_addr), self.tmem_b.addr.eq(request.b_addr),
                     self.tmem_a.en.eq(walk.o.valid), self.tmem_b.en.eq(walk.o.valid & ~op.matches(Op.POOL, Op.UNPOOL))]

        # --- compute (memory data valid) --------------------------------------
        p1 = Signal(walk_request_layout(cfg))
        p1_valid = Signal()
        m.d.sync += [p1_valid.eq(walk.o.valid), p1.eq(request)]
        values = Signal(lane_word)
        for lane in range(lanes):
            b = Mux(broadcast, self.tmem_b.data[0], self.tmem_b.data[lane])
            value = lane_result(m, op, self.tmem_a.data[lane], b, dec_a, dec_b, lane_shape, f"value{lane}")
            m.d.sync += values[lane].eq(Mux(lane < p1.count, value, 0))

        # --- write ------------------------------------------------------------
        p2 = Signal(walk_request_layout(cfg))
        p2_valid = Signal()
        m.d.sync += [p2_valid.eq(p1_valid), p2.eq(p1)]
        group = Signal(data.ArrayLayout(signed(cfg.acc_bits), lanes))       # POOL: the window's sum so far
        summed = Signal(data.ArrayLayout(signed(cfg.acc_bits), lanes))
        for lane in range(lanes):
            m.d.comb += summed[lane].eq(Mux(p2.first, 0, group[lane]) + values[lane])
        with m.If(p2_valid):
            m.d.sync += group.eq(summed)

        # --- maxima: the written words registered, then their lane maxima, then the running maxima; each
        # step its own cycle (add, |x|, an 8-lane comparator tree and the running compare in one cycle
        # were the 8x8 board build's critical path) ------------------------------------------------------
        maxabs = Signal(unsigned(cfg.acc_bits))
        maxpos = Signal(unsigned(cfg.acc_bits))
        total = Signal(signed(cfg.acc_bits))
        m.d.comb += [self.result.maxabs.eq(maxabs), self.result.maxpos.eq(maxpos)]
        written, written_valid = Signal.like(summed), Signal()
        reduced = op.matches(Op.SUM, Op.DOT)
        m.d.sync += [written.eq(summed), written_valid.eq(p2_valid & p2.last & op.matches(Op.SCALE, Op.ADD, Op.POOL))]
        word_maxabs, word_maxpos, word_valid = Signal.like(maxabs), Signal.like(maxpos), Signal()
        m.d.sync += [word_maxabs.eq(_max(_abs(written[lane], cfg.acc_bits) for lane in range(lanes))),
                     word_maxpos.eq(_max(Mux(written[lane] > 0, written[lane].as_unsigned(), 0)
                                         for lane in range(lanes))),
                     word_valid.eq(written_valid)]
        with m.If(word_valid):
            m.d.sync += [maxabs.eq(Mux(word_maxabs > maxabs, word_maxabs, maxabs)),
                         maxpos.eq(Mux(word_maxpos > maxpos, word_maxpos, maxpos))]

        with m.If(p2_valid):
            with m.Switch(op):
                with m.Case(Op.SCALE, Op.ADD, Op.POOL):
                    with m.If(p2.last):
                        m.d.comb += [self.amem_w.en.eq(1), self.amem_w.addr.eq(p2.out), self.amem_w.data.eq(summed)]
                with m.Case(Op.MASK, Op.UNPOOL):
                    m.d.comb += [self.tmem_w.en.eq(1), self.tmem_w.addr.eq(cmd.dst.base + p2.out)]
                    m.d.comb += [self.tmem_w.data[lane].eq(values[lane]) for lane in range(lanes)]
                with m.Case(Op.SUM, Op.DOT):
                    m.d.sync += total.eq(total + _sum(values[lane] for lane in range(lanes)))

        # --- control ----------------------------------------------------------
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), maxabs.eq(0), maxpos.eq(0), total.eq(0)]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += walk.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(p2_valid & p2.final):
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(reduced):
                    m.d.comb += [self.amem_w.en.eq(1), self.amem_w.addr.eq(C(0, amem_addr_shape(cfg)))]
                    m.d.comb += [self.amem_w.data[lane].eq(total if lane == 0 else 0) for lane in range(lanes)]
                    m.d.sync += [maxabs.eq(_abs(total, cfg.acc_bits)),
                                 maxpos.eq(Mux(total > 0, total.as_unsigned(), 0))]
                    m.next = "DONE"
                with m.Else():
                    m.next = "DRAIN"
            with m.State("DRAIN"):                    # the last word's maxima are one cycle from maxabs
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
