"""Element-wise engine: SCALE, ADD, SUM, DOT and MASK, one TMEM word per cycle.

Golden ``Machine.execute`` for these opcodes.  The engine walks A's words
(row-major, ``stride`` words per row) and reads B's word at the same offset,
or always B's first word when B is 1x1 (the SCALE multiplier, a broadcast
ADD bias), so a scalar operand needs no separate fetch.  Three stages:

  issue    read word ``off`` of A (tmem_a) and of B (tmem_b); the lanes whose
           column index is below A's ``cols`` are marked valid;
  compute  per lane: a * b (SCALE, DOT), align(a) + align(b) (ADD, nearest
           rounding with the command's shift_a / shift_b), a (SUM),
           a if b > 0 else 0 (MASK); invalid (pad) lanes become 0, so a
           broadcast scalar never reaches pad lanes, the maxima or the sums;
  write    SCALE / ADD: AMEM word ``off`` (ACC has A's layout) and the running
           max |x| / max(x, 0); MASK: TMEM word dst.base + off; SUM / DOT:
           add the lane sum to the running total.

SUM / DOT then write the total to lane 0 of AMEM word 0 (other lanes 0) and
take the maxima from it.  ``done`` follows the last write.  Every word is
read two cycles before it is written and later reads are at higher offsets,
so MASK may write in place over A or B.
"""

from amaranth import C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring

from golden_model.config import CoreConfig
from golden_model.isa import Op

from .interfaces import EngineSignature, amem_addr_shape, command_layout, dim_shape, tmem_addr_shape
from .rounding import WORD_BITS, ShiftDecode, round_shift


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
    """One lane of each element-wise opcode (golden ``Machine._scale`` ... ``_mask``): a * b (SCALE, DOT),
    align(a) + align(b) (ADD, nearest rounding), a (SUM), a if b > 0 else 0 (MASK)."""
    value = Signal(shape, name=name)
    no_random = C(0, WORD_BITS)
    with m.Switch(op):
        with m.Case(Op.SCALE, Op.DOT):
            m.d.comb += value.eq(a * b)
        with m.Case(Op.ADD):
            m.d.comb += value.eq(round_shift(a, dec_a, C(0), no_random) + round_shift(b, dec_b, C(0), no_random))
        with m.Case(Op.SUM):
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
        broadcast = Signal()
        m.d.comb += broadcast.eq((cmd.b.rows == 1) & (cmd.b.cols == 1))

        dec_a, dec_b = (self._alignment(m, shift, name) for name, shift in (("shift_a", cmd.shift_a),
                                                                             ("shift_b", cmd.shift_b)))

        # --- issue ------------------------------------------------------------
        off = Signal(tmem_addr_shape(cfg))           # word offset within A
        col = Signal(dim_shape(cfg))                 # word within the row
        row = Signal(dim_shape(cfg))
        remaining = Signal(range(max(cfg.max_features, cfg.max_batch) + 1))  # columns left in the row
        issue = Signal()
        row_end = Signal()
        last = Signal()
        m.d.comb += [
            row_end.eq(col == cmd.a.stride - 1),
            last.eq(row_end & (row == cmd.a.rows - 1)),
            self.tmem_a.addr.eq(cmd.a.base + off),
            self.tmem_b.addr.eq(cmd.b.base + Mux(broadcast, 0, off)),
            self.tmem_a.en.eq(issue),
            self.tmem_b.en.eq(issue),
        ]

        # --- compute (memory data valid) --------------------------------------
        p1_valid, p1_last = Signal(), Signal()
        p1_off = Signal(tmem_addr_shape(cfg))
        p1_mask = Signal(lanes)
        m.d.sync += [p1_valid.eq(issue), p1_last.eq(issue & last), p1_off.eq(off)]
        for lane in range(lanes):
            m.d.sync += p1_mask[lane].eq(lane < remaining)

        values = Signal(lane_word)
        for lane in range(lanes):
            b = Mux(broadcast, self.tmem_b.data[0], self.tmem_b.data[lane])
            value = lane_result(m, op, self.tmem_a.data[lane], b, dec_a, dec_b, lane_shape, f"value{lane}")
            m.d.sync += values[lane].eq(Mux(p1_mask[lane], value, 0))

        # --- write ------------------------------------------------------------
        p2_valid, p2_last = Signal(), Signal()
        p2_off = Signal(tmem_addr_shape(cfg))
        m.d.sync += [p2_valid.eq(p1_valid), p2_last.eq(p1_last), p2_off.eq(p1_off)]

        maxabs = Signal(unsigned(cfg.acc_bits))
        maxpos = Signal(unsigned(cfg.acc_bits))
        total = Signal(signed(cfg.acc_bits))
        m.d.comb += [self.result.maxabs.eq(maxabs), self.result.maxpos.eq(maxpos)]

        lane_abs = [_abs(values[lane], lane_shape.width) for lane in range(lanes)]
        lane_pos = [Mux(values[lane] > 0, values[lane].as_unsigned(), 0) for lane in range(lanes)]
        word_maxabs, word_maxpos = _max(lane_abs), _max(lane_pos)
        reduced = op.matches(Op.SUM, Op.DOT)

        with m.If(p2_valid):
            with m.Switch(op):
                with m.Case(Op.SCALE, Op.ADD):
                    m.d.comb += [self.amem_w.en.eq(1), self.amem_w.addr.eq(p2_off)]
                    m.d.comb += [self.amem_w.data[lane].eq(values[lane]) for lane in range(lanes)]
                    m.d.sync += [maxabs.eq(Mux(word_maxabs > maxabs, word_maxabs, maxabs)),
                                 maxpos.eq(Mux(word_maxpos > maxpos, word_maxpos, maxpos))]
                with m.Case(Op.MASK):
                    m.d.comb += [self.tmem_w.en.eq(1), self.tmem_w.addr.eq(cmd.dst.base + p2_off)]
                    m.d.comb += [self.tmem_w.data[lane].eq(values[lane]) for lane in range(lanes)]
                with m.Case(Op.SUM, Op.DOT):
                    m.d.sync += total.eq(total + _sum(values[lane] for lane in range(lanes)))

        # --- control ----------------------------------------------------------
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), off.eq(0), col.eq(0), row.eq(0),
                                 remaining.eq(self.cmd.payload.a.cols),
                                 maxabs.eq(0), maxpos.eq(0), total.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += issue.eq(1)
                m.d.sync += off.eq(off + 1)
                with m.If(row_end):
                    m.d.sync += [col.eq(0), row.eq(row + 1), remaining.eq(cmd.a.cols)]
                with m.Else():
                    m.d.sync += [col.eq(col + 1), remaining.eq(remaining - lanes)]
                with m.If(last):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(p2_valid & p2_last):
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(reduced):
                    m.d.comb += [self.amem_w.en.eq(1), self.amem_w.addr.eq(C(0, amem_addr_shape(cfg)))]
                    m.d.comb += [self.amem_w.data[lane].eq(total if lane == 0 else 0) for lane in range(lanes)]
                    m.d.sync += [maxabs.eq(_abs(total, cfg.acc_bits)),
                                 maxpos.eq(Mux(total > 0, total.as_unsigned(), 0))]
                    m.next = "DONE"
                with m.Else():
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
