"""Element-wise engine: SCALE, ADD, SUM, DOT, MASK, POOL and UNPOOL, one part of a TMEM word per cycle.

Golden ``Machine._scale`` ... ``_unpool``.  A :class:`~hw.vector_walk.VectorWalk`
says which words to read (A's words in order, B's at the same offset or B's
first word when B is 1x1; POOL: the window's words of each pooled pixel;
UNPOOL: the pooled word covering each pixel) and where each result goes,
once for each part of the word: the lanes are ``unit_width`` wide
(hw/word_parts.py).  Stages after it:

  issue    read A's word (tmem_a) and B's (tmem_b);
  load     the read words registered (B's first word in every lane for a 1x1 B), then the
           request's part picked;
  compute  per lane, three stages (the terms: offset sums, shifts; then their sum):
           a * b (SCALE, DOT), align(a) + align(b) (ADD, nearest
           rounding with the command's shift_a / shift_b), a (SUM, POOL,
           UNPOOL), a if b > 0 else 0 (MASK); lanes past the word's valid
           count become 0, so a broadcast scalar never reaches pad lanes, the
           peaks or the sums;
  write    SCALE, ADD, POOL: the ACC word (a group of KH*KW words summed for
           POOL, per part), with its last part; MASK, UNPOOL: the TMEM word at
           dst, put together by a WordAssembler; SUM, DOT: the lane sum added
           to the running total.  Writes are registered on their way to the
           memories (they land a cycle later, before ``done``).

The running peaks (ORs of |x| and max(x, 0)) follow the ACC words: the written word
registered, its lane magnitudes, the lane peaks one tree level per cycle
(hw/reduction_tree.py), then the running OR; the SUM / DOT lane sum is
a registered tree too.  ``done`` waits for them.  The word count and the
walk's image size are registered products, ready two cycles after the
command (state SIZE).

SUM / DOT then write the total to lane 0 of AMEM word 0 (other lanes 0; the
write lands in the ``done`` cycle) and take the peaks from it.  MASK reads every
word before it writes it and later reads are at higher offsets, so it may
write in place over A or B; UNPOOL's dst must not overlap A (its checks).
"""

from amaranth import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring

from golden_model.config import CoreConfig
from golden_model.isa import Op

from .delay import delayed
from .interfaces import EngineSignature, amem_addr_shape, command_layout
from .multiplier import RegisteredMultiplier, size_multiplier
from .reduction_tree import or_tree, sum_tree, tree_levels
from .register_copies import RegisterCopies
from .rounding import WORD_BITS, ShiftDecode, rounding_offset, shift_or_flush
from .vector_walk import VectorWalk, Walk, walk_request_layout
from .word_parts import WordAssembler, word_part


def _abs(x, width):
    """|x| of a signed value as ``unsigned(width)`` (width = x's width holds |min|)."""
    return Mux(x < 0, -x, x).as_unsigned()[:width]


LANE_KIND = data.StructLayout({"product": 1, "align": 1, "mask": 1})
"""What a lane computes, decoded from the opcode (a lane passes ``a`` when no flag is set)."""


def lane_kinds(m: Module, op, lanes: int):
    """The opcode decoded to :data:`LANE_KIND`, one registered copy per lane (the opcode would otherwise
    fan out to every lane's term multiplexers).  Fixed per command: SIZE covers the cycle."""
    m.submodules.kinds = copies = RegisterCopies(LANE_KIND.size, copies=lanes)
    m.d.comb += copies.i.eq(Cat(op.matches(Op.SCALE, Op.DOT), op == Op.ADD, op == Op.MASK))
    return [LANE_KIND(copies.o[lane]) for lane in range(lanes)]


def lane_terms(m: Module, kind, a, b, dec_a: ShiftDecode, dec_b: ShiftDecode, shape, name: str) -> tuple:
    """One lane of each opcode (golden ``Machine._scale`` ... ``_unpool``) as two terms whose sum is the
    result, two register stages after a and b: a * b (SCALE, DOT), align(a) and align(b) (ADD, nearest
    rounding: the offset sum, then the shift), a (SUM, POOL, UNPOOL), a if b > 0 else 0 (MASK); the
    second term is 0 but for ADD.  ``kind`` is the lane's :data:`LANE_KIND`."""
    raw = [Signal(shape, name=f"{name}_raw{i}") for i in range(2)]
    no_random = C(0, WORD_BITS)
    with m.If(kind.product):
        m.d.sync += [raw[0].eq(a * b), raw[1].eq(0)]
    with m.Elif(kind.align):
        m.d.sync += [raw[0].eq(a + rounding_offset(a, dec_a, C(0), no_random)),
                     raw[1].eq(b + rounding_offset(b, dec_b, C(0), no_random))]
    with m.Elif(kind.mask):
        m.d.sync += [raw[0].eq(Mux(b > 0, a, 0)), raw[1].eq(0)]
    with m.Else():
        m.d.sync += [raw[0].eq(a), raw[1].eq(0)]
    terms = [Signal(shape, name=f"{name}_term{i}") for i in range(2)]
    for term, value, dec in zip(terms, raw, (dec_a, dec_b)):
        m.d.sync += term.eq(Mux(kind.align, shift_or_flush(value, dec), value))
    return terms


class VectorEngine(wiring.Component):
    """Executes SCALE, ADD, SUM, DOT and MASK commands (see the module docstring)."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__(EngineSignature(cfg))

    def _alignment(self, m: Module, shift, name: str) -> ShiftDecode:
        """Decode of an ADD alignment shift.  Nearest rounding of an int8 by more than data_bits gives 0,
        like a flush, so the decoder flushes above min(data_bits, max_shift): exact, and no wide shifter
        per lane.  The clamped shift and its decode are registered (two cycles: the shift is fixed per
        command, and SIZE and the walk's first read cover them), so no lane's shifter hangs off the command."""
        cfg = self.cfg
        align_cfg = cfg.replace(max_shift=min(cfg.data_bits, cfg.max_shift))
        flush = align_cfg.max_shift + 1
        clamped = Signal(range(flush + 1), name=f"{name}_clamped")
        m.d.sync += clamped.eq(Mux(shift > flush, flush, shift))
        return ShiftDecode(m, clamped, align_cfg, name=name, registered=True)

    def _window_sums(self, m: Module, p2, p2_valid, values) -> tuple:
        """The part's ACC lanes (POOL: its window's sum so far plus ``values``; else ``values``), and the
        whole ACC word with the word's last part: the earlier parts' sums are kept per part."""
        cfg, lanes, parts = self.cfg, self.cfg.unit_width, self.cfg.unit_beats
        acc_part = data.ArrayLayout(signed(cfg.acc_bits), lanes)
        group = Signal(data.ArrayLayout(acc_part, parts))
        summed = Signal(acc_part)
        so_far = [Array(group[index][lane] for index in range(parts))[p2.part] if parts > 1 else group[0][lane]
                  for lane in range(lanes)]
        for lane in range(lanes):
            m.d.comb += summed[lane].eq(Mux(p2.first, 0, so_far[lane]) + values[lane])
        with m.If(p2_valid):
            with m.Switch(p2.part):
                for index in range(parts):
                    with m.Case(index):
                        m.d.sync += group[index].eq(summed)
        return summed, Cat(*(group[index] for index in range(parts - 1)), summed)

    def elaborate(self, platform):
        m = Module()
        cfg, lanes, parts = self.cfg, self.cfg.unit_width, self.cfg.unit_beats
        # One lane's result before it is widened to the accumulator: an int8
        # product needs 2 * data_bits bits; sums of two aligned int8 fit too.
        lane_shape = signed(2 * cfg.data_bits)
        lane_word = data.ArrayLayout(lane_shape, lanes)

        cmd = Signal(command_layout(cfg))
        op = cmd.op
        m.submodules.walk = walk = VectorWalk(cfg)
        dec_a, dec_b = (self._alignment(m, shift, name) for name, shift in (("shift_a", cmd.shift_a),
                                                                             ("shift_b", cmd.shift_b)))
        m.submodules.words = words = size_multiplier(cfg, a_bits=len(cmd.a.rows) + 1, b_bits=len(cmd.a.stride) + 1)
        m.d.comb += [words.a.eq(Mux(op == Op.POOL, cmd.acc_rows, Mux(op == Op.UNPOOL, cmd.dst.rows, cmd.a.rows))),
                     words.b.eq(Mux(op == Op.POOL, cmd.acc_stride, Mux(op == Op.UNPOOL, cmd.dst.stride,
                                                                       cmd.a.stride)))]
        m.d.comb += [walk.a.eq(cmd.a), walk.b.eq(cmd.b), walk.key.eq(cmd.key), walk.words.eq(words.p),
                     walk.walk.eq(Mux(op == Op.POOL, Walk.POOL, Mux(op == Op.UNPOOL, Walk.UNPOOL, Walk.LINEAR)))]
        broadcast = Signal()                          # registered: fixed per command, SIZE covers the cycle
        m.d.sync += broadcast.eq((cmd.b.rows == 1) & (cmd.b.cols == 1))

        # --- issue ------------------------------------------------------------
        request = walk.o.payload
        m.d.comb += [self.tmem_a.addr.eq(request.a_addr), self.tmem_b.addr.eq(request.b_addr),
                     self.tmem_a.en.eq(walk.o.valid), self.tmem_b.en.eq(walk.o.valid & ~op.matches(Op.POOL, Op.UNPOOL))]

        # --- load (memory data valid): the words registered ---------------------
        p1 = delayed(m, request, 2, name="p1")
        p1_valid = delayed(m, walk.o.valid, 2, name="p1_valid")
        word_a, word_b = Signal.like(self.tmem_a.data), Signal.like(self.tmem_b.data)
        m.d.sync += [word_a.eq(self.tmem_a.data)] + [
            word_b[lane].eq(Mux(broadcast, self.tmem_b.data[0], self.tmem_b.data[lane])) for lane in range(cfg.lanes)]
        part_a, part_b = word_part(cfg, word_a, p1.part), word_part(cfg, word_b, p1.part)

        # --- compute: the lane's terms, then their sum ---------------------------
        terms = [lane_terms(m, kind, part_a[lane], part_b[lane], dec_a, dec_b, lane_shape, f"lane{lane}")
                 for lane, kind in enumerate(lane_kinds(m, op, lanes))]
        count = delayed(m, p1.count, 2, name="count")
        values = Signal(lane_word)
        for lane, (first, second) in enumerate(terms):
            m.d.sync += values[lane].eq(Mux(lane < count, first + second, 0))

        # --- write ------------------------------------------------------------
        p2 = delayed(m, p1, 3, name="p2")
        p2_valid = delayed(m, p1_valid, 3, name="p2_valid")
        summed, acc_word = self._window_sums(m, p2, p2_valid, values)
        last_part = p2.part == parts - 1

        # --- peaks: the written words registered, their lane magnitudes, the lane peaks one tree level
        # per cycle, then the running peaks (hw/reduction_tree.py) -------------------------------------
        peak_abs = Signal(unsigned(cfg.acc_bits))
        peak_pos = Signal(unsigned(cfg.acc_bits))
        total = Signal(signed(cfg.acc_bits))
        m.d.comb += [self.result.peak_abs.eq(peak_abs), self.result.peak_pos.eq(peak_pos)]
        written, written_valid = Signal.like(summed), Signal()
        reduced = op.matches(Op.SUM, Op.DOT)
        m.d.sync += [written.eq(summed), written_valid.eq(p2_valid & p2.last & op.matches(Op.SCALE, Op.ADD, Op.POOL))]
        mags = [Signal(unsigned(cfg.acc_bits), name=f"mag{lane}") for lane in range(lanes)]
        poss = [Signal(unsigned(cfg.acc_bits), name=f"pos{lane}") for lane in range(lanes)]
        for lane in range(lanes):
            m.d.sync += [mags[lane].eq(_abs(written[lane], cfg.acc_bits)),
                         poss[lane].eq(Mux(written[lane] > 0, written[lane].as_unsigned(), 0))]
        word_peak_abs, word_peak_pos = or_tree(m, mags, name="abs"), or_tree(m, poss, name="pos")
        word_valid = delayed(m, written_valid, 1 + tree_levels(lanes), name="word_valid")
        with m.If(word_valid):
            m.d.sync += [peak_abs.eq(peak_abs | word_peak_abs), peak_pos.eq(peak_pos | word_peak_pos)]

        # --- SUM, DOT: the word's lane sum, one tree level per cycle, into the running total ------------
        word_sum = sum_tree(m, [values[lane] for lane in range(lanes)], name="sum")
        sum_valid = delayed(m, p2_valid & reduced, tree_levels(lanes), name="sum_valid")
        with m.If(sum_valid):
            m.d.sync += total.eq(total + word_sum)

        m.submodules.tmem_word = tmem_word = WordAssembler(cfg)           # MASK, UNPOOL: the int8 word
        m.d.comb += [tmem_word.clear.eq(self.cmd.valid & self.cmd.ready),
                     tmem_word.i.valid.eq(p2_valid & op.matches(Op.MASK, Op.UNPOOL)),
                     *(tmem_word.i.data[lane].eq(values[lane]) for lane in range(lanes))]
        m.d.sync += [self.amem_w.en.eq(0), self.tmem_w.en.eq(0)]   # writes registered: the memories are far
        with m.If(p2_valid & op.matches(Op.SCALE, Op.ADD, Op.POOL) & p2.last & last_part):
            m.d.sync += [self.amem_w.en.eq(1), self.amem_w.addr.eq(p2.out), self.amem_w.data.eq(acc_word)]
        with m.If(tmem_word.o.valid):
            m.d.sync += [self.tmem_w.en.eq(1), self.tmem_w.addr.eq(cmd.dst.base + p2.out),
                         self.tmem_w.data.eq(tmem_word.o.data)]

        # --- control ----------------------------------------------------------
        # the last word's running peaks are final in DONE, and its lane sum in the total in FINISH, when
        # RUN leaves this many cycles after the word's write: the word registered, its magnitudes, the
        # tree, the running compare (the sum's tree and add are a cycle shorter)
        settled = delayed(m, p2_valid & p2.final, tree_levels(lanes) + 1, name="settled")
        sized = delayed(m, self.cmd.valid & self.cmd.ready, RegisteredMultiplier.LATENCY, name="sized")
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), peak_abs.eq(0), peak_pos.eq(0), total.eq(0)]
                    m.next = "SIZE"
            with m.State("SIZE"):                     # the word count and the image size: registered products
                with m.If(sized):
                    m.next = "START"
            with m.State("START"):
                m.d.comb += walk.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(settled):
                    m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(reduced):
                    m.d.sync += [self.amem_w.en.eq(1), self.amem_w.addr.eq(C(0, amem_addr_shape(cfg))),
                                 *(self.amem_w.data[lane].eq(total if lane == 0 else 0) for lane in range(cfg.lanes))]
                    m.d.sync += [peak_abs.eq(_abs(total, cfg.acc_bits)),
                                 peak_pos.eq(Mux(total > 0, total.as_unsigned(), 0))]
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
