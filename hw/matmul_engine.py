"""MATMUL engine: ACC = op(A) . op(B)^T on the output-stationary MacArray.

op(T) is T, or T^T when the instruction's f0 (A) / f1 (B) is set.  ACC is
M x N = rows(op(A)) x rows(op(B)) with inner length K.  It is computed in
R x C tiles (R = array_rows, C = array_cols = lanes, see CoreConfig): tile
(m0, n0) takes K beats a[r] = op(A)[m0 + r, k], b[c] = op(B)[n0 + c, k].
Because C equals the lane count, array row r of a tile is exactly AMEM word
(m0 + r) * acc_stride + n0 / C.

Each operand has an :class:`OperandFeeder` on its own TMEM read port that
turns the stored row-major tensor into the per-k vectors:
  transposed (flag set)  op(T)[m, k] = T[k, m]: the vector is a segment of
                         stored row k, one word read per beat;
  plain (flag clear)     op(T)[m, k] = T[m, k]: the vector is a column
                         segment; the feeder reads the W words of rows
                         m0 .. m0 + W - 1 at word column k / L into a
                         transpose buffer and emits L consecutive k from it.
Feeders double-buffer (one bank fills while the other empties), so the
array takes one beat per cycle once both banks run; the array's overlapped
readout lets a finished tile leave while the next one accumulates.
"""

from types import SimpleNamespace

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .interfaces import (EngineSignature, ReadPortSignature, amem_addr_shape, dim_shape,
                         tmem_addr_shape, tmem_word_layout)
from .mac_array import MacArray
from .rounding import data_shape


#: Cycles from the last row leaving the array to ``done`` (the readout pipeline).
READOUT_STAGES = 3


def _max_tree(values):
    """Largest of unsigned values (balanced tree of compare-selects)."""
    while len(values) > 1:
        pairs = [Mux(values[i] > values[i + 1], values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        values = pairs + ([values[-1]] if len(values) % 2 else [])
    return values[0]


class OperandFeeder(wiring.Component):
    """Streams the W-element vectors op(T)[row0 .. row0 + W - 1, k] of one MATMUL operand.

    Order: for outer in range(0, outer, outer_step), for each block of W rows
    (row0 = 0, W, .. < rows), repeated for rep in range(0, repeat, rep_step),
    for k in range(depth): one vector.  The A operand runs over blocks of R
    rows repeated once per N tile; B over blocks of C rows, once per M tile.
    Elements past ``rows`` are 0 for plain operands and the stored pad lanes
    (0) for transposed ones.  Parameters are sampled continuously: hold them
    from ``start`` until the last vector has left.

    Two banks of W words buffer the data: the loader fills one (the W words
    of a word column for a plain operand, stopping after the last valid row
    and zeroing the rest; one word per k for a transposed one, whose W lanes
    go to lane 0 of the W words) while ``o`` emits lane ``beat`` of the
    other's words.  Reading leaves a bank intact and each bank is tagged
    with the (row0, k0) it holds, so when a tile repeats a block whose
    whole K fits in the two banks (K <= 2L plain, K <= 2 transposed) the
    loader re-arms the bank without reading: e.g. the A operand of
    E(16x10).W (one load per M tile instead of one per tile).
    """

    def __init__(self, cfg: CoreConfig, width: int, outer_step: int, rep_step: int):
        self.cfg = cfg
        self.width = width
        self.outer_step = outer_step
        self.rep_step = rep_step
        dim = dim_shape(cfg)
        super().__init__({
            "start": In(1),
            "transposed": In(1),
            "base": In(tmem_addr_shape(cfg)),
            "stride": In(dim),
            "rows": In(dim),
            "depth": In(dim),
            "outer": In(dim),
            "repeat": In(dim),
            "mem": Out(ReadPortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
            "o": Out(stream.Signature(data.ArrayLayout(data_shape(cfg), width))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, width = self.cfg, self.width
        lanes, bits = cfg.lanes, cfg.data_bits
        segments = lanes // width
        taddr, dim = tmem_addr_shape(cfg), dim_shape(cfg)
        tr = self.transposed

        # --- loader: issue reads into bank wsel -------------------------------------------
        active = Signal()
        wsel, rsel = Signal(), Signal()
        full = [Signal(name=f"full{b}") for b in range(2)]
        steps = [Signal(range(lanes), name=f"steps{b}") for b in range(2)]   # beats in the bank - 1
        bank = [[Signal(lanes * bits, name=f"bank{b}_{i}") for i in range(width)] for b in range(2)]
        tag_ok = [Signal(name=f"tag_ok{b}") for b in range(2)]
        tag_row = [Signal(dim, name=f"tag_row{b}") for b in range(2)]
        tag_k = [Signal(dim, name=f"tag_k{b}") for b in range(2)]

        outer0, row0, rep0, k0 = Signal(dim), Signal(dim), Signal(dim), Signal(dim)
        word = Signal(range(width))                   # plain: word of the block being read
        row_i = Signal(dim.width + 1)                 # plain: row0 + word
        segment = Signal(range(max(segments, 2)))     # transposed: row0 / W modulo segments
        blk_addr = Signal(taddr)                      # plain: base + row0 * stride; transposed: base + row0 / L
        col_addr = Signal(taddr)                      # plain: blk_addr + k0 / L
        addr = Signal(taddr)                          # next read

        # consumer side (declared here: the loader may refill the bank being freed this cycle)
        beat = Signal(range(lanes))
        pop = self.o.valid & self.o.ready
        freeing = pop & (beat == Array(steps)[rsel])
        writable = ~Array(full)[wsel] | (freeing & (rsel == wsel))
        issue = active & writable
        hit = ((word == 0) & Array(tag_ok)[wsel] & (Array(tag_row)[wsel] == row0) &
               (Array(tag_k)[wsel] == k0))
        read = issue & ~hit

        last_word = tr | hit | (word == width - 1) | (row_i + 1 >= self.rows)
        last_k = Mux(tr, k0 + 1 >= self.depth, k0 + lanes >= self.depth)
        remaining = self.depth - k0
        m.d.comb += [
            self.mem.addr.eq(addr),
            self.mem.en.eq(read),
        ]

        d_valid, d_bank, d_word, d_last = Signal(), Signal(), Signal(range(width)), Signal()
        d_steps, d_segment = Signal(range(lanes)), Signal.like(segment)
        m.d.sync += [
            d_valid.eq(read), d_bank.eq(wsel), d_word.eq(word), d_last.eq(last_word), d_segment.eq(segment),
            d_steps.eq(Mux(tr | (remaining >= lanes), Mux(tr, 0, lanes - 1), remaining - 1)),
        ]

        rep_last = rep0 + self.rep_step >= self.repeat
        blk_last = row0 + width >= self.rows
        outer_last = outer0 + self.outer_step >= self.outer
        seg_wrap = segment == segments - 1

        with m.If(self.start):
            m.d.sync += [active.eq(1), wsel.eq(0), outer0.eq(0), row0.eq(0), rep0.eq(0), k0.eq(0),
                         word.eq(0), row_i.eq(0), segment.eq(0),
                         blk_addr.eq(self.base), col_addr.eq(self.base), addr.eq(self.base)]
            m.d.sync += [t.eq(0) for t in tag_ok]
        with m.Elif(issue):
            with m.If(read & (word == 0)):
                for b in range(2):
                    with m.If(wsel == b):
                        m.d.sync += [tag_ok[b].eq(1), tag_row[b].eq(row0), tag_k[b].eq(k0)]
            with m.If(~last_word):
                m.d.sync += [word.eq(word + 1), row_i.eq(row_i + 1), addr.eq(addr + self.stride)]
            with m.Else():
                m.d.sync += [word.eq(0), row_i.eq(row0), wsel.eq(~wsel)]
                with m.If(~last_k):
                    m.d.sync += k0.eq(k0 + Mux(tr, 1, lanes))
                    with m.If(tr):
                        m.d.sync += addr.eq(addr + self.stride)
                    with m.Else():
                        m.d.sync += [col_addr.eq(col_addr + 1), addr.eq(col_addr + 1)]
                with m.Else():
                    m.d.sync += k0.eq(0)
                    with m.If(~rep_last):
                        m.d.sync += [rep0.eq(rep0 + self.rep_step), col_addr.eq(blk_addr), addr.eq(blk_addr)]
                    with m.Else():
                        m.d.sync += rep0.eq(0)
                        with m.If(~blk_last):
                            step = Mux(tr, seg_wrap, self.stride * width)
                            m.d.sync += [row0.eq(row0 + width), row_i.eq(row0 + width),
                                         segment.eq(Mux(seg_wrap, 0, segment + 1)),
                                         blk_addr.eq(blk_addr + step), col_addr.eq(blk_addr + step),
                                         addr.eq(blk_addr + step)]
                        with m.Else():
                            m.d.sync += [row0.eq(0), row_i.eq(0), segment.eq(0), blk_addr.eq(self.base),
                                         col_addr.eq(self.base), addr.eq(self.base)]
                            with m.If(outer_last):
                                m.d.sync += active.eq(0)
                            with m.Else():
                                m.d.sync += outer0.eq(outer0 + self.outer_step)

        self._banks(m, SimpleNamespace(tr=tr, bank=bank, full=full, steps=steps, rsel=rsel, wsel=wsel, beat=beat,
                                       pop=pop, freeing=freeing, issue=issue, hit=hit, valid=d_valid, which=d_bank,
                                       word=d_word, last=d_last, count=d_steps, segment=d_segment))
        return m

    def _banks(self, m, v):
        """The two banks: capture read words (data valid the cycle after the read), emit their lanes."""
        width, bits = self.width, self.cfg.data_bits
        segments = self.cfg.lanes // width
        # capture: the read word goes into its bank
        raw = self.mem.data.as_value()
        chosen = raw if segments == 1 else Array(raw[s * width * bits:(s + 1) * width * bits]
                                                 for s in range(segments))[v.segment]
        with m.If(v.valid):
            for b in range(2):
                with m.If(v.which == b):
                    for i in range(width):
                        with m.If(v.tr):
                            m.d.sync += v.bank[b][i][:bits].eq(chosen[i * bits:(i + 1) * bits])
                        with m.Elif(v.word == i):
                            m.d.sync += v.bank[b][i].eq(raw)
                        if i:
                            with m.Elif(v.last & (v.word < i)):
                                m.d.sync += v.bank[b][i].eq(0)
                    with m.If(v.last):
                        m.d.sync += [v.full[b].eq(1), v.steps[b].eq(v.count)]

        # emit: lane ``beat`` of the words of bank ``rsel``
        m.d.comb += self.o.valid.eq(Array(v.full)[v.rsel])
        for i in range(width):
            m.d.comb += self.o.payload[i].eq(Mux(v.rsel, v.bank[1][i], v.bank[0][i]).word_select(v.beat, bits))
        with m.If(v.pop):
            with m.If(v.freeing):
                m.d.sync += [v.beat.eq(0), v.rsel.eq(~v.rsel)]
                for b in range(2):
                    with m.If(v.rsel == b):
                        m.d.sync += v.full[b].eq(0)
            with m.Else():
                m.d.sync += v.beat.eq(v.beat + 1)
        # a tag hit re-arms the bank at once (after the clear above when it is freed this cycle)
        with m.If(v.issue & v.hit & ~self.start):
            for b in range(2):
                with m.If(v.wsel == b):
                    m.d.sync += v.full[b].eq(1)
        with m.If(self.start):
            m.d.sync += [v.rsel.eq(0), v.beat.eq(0)] + [f.eq(0) for f in v.full]


class MatmulEngine(wiring.Component):
    """Executes MATMUL: ACC = op(A) . op(B)^T into AMEM, reporting max |x| and max(x, 0).

    A is fetched on ``tmem_a``, B on ``tmem_b``; ACC rows leave the array's
    readout one AMEM word per array row on ``amem_w`` (rows past M are not
    written; lanes past N are written but masked from the maxima).
    ``overlap`` selects the array's overlapped readout; without it each tile
    costs up to R more cycles but the array needs R*C*acc_bits fewer registers.
    """

    def __init__(self, cfg: CoreConfig, overlap: bool = True):
        if cfg.array_cols != cfg.lanes:
            raise ValueError("MatmulEngine needs array_cols == lanes (array_cols a multiple of array_rows)")
        self.cfg = cfg
        self.overlap = overlap
        super().__init__(EngineSignature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows, cols = cfg.array_rows, cfg.array_cols
        dim = dim_shape(cfg)

        m.submodules.array = array = MacArray(cfg, overlap=self.overlap)
        m.submodules.feed_a = feed_a = OperandFeeder(cfg, rows, outer_step=1, rep_step=cols)
        m.submodules.feed_b = feed_b = OperandFeeder(cfg, cols, outer_step=rows, rep_step=1)
        wiring.connect(m, feed_a.mem, wiring.flipped(self.tmem_a))
        wiring.connect(m, feed_b.mem, wiring.flipped(self.tmem_b))

        cmd = Signal(self.cmd.payload.shape())
        busy, start, finish = Signal(), Signal(), Signal()
        accept = self.cmd.valid & ~busy
        m.d.comb += self.cmd.ready.eq(~busy)
        # done follows the last row through the readout pipeline below
        finished = [Signal(name=f"finish_{stage}") for stage in range(READOUT_STAGES)]
        m.d.sync += [a.eq(b) for a, b in zip(finished, [finish] + finished[:-1])]
        m.d.comb += self.done.eq(finished[-1])
        m.d.sync += [start.eq(accept), finish.eq(0)]
        with m.If(accept):
            m.d.sync += [cmd.eq(self.cmd.payload), busy.eq(1)]
        with m.If(self.done):
            m.d.sync += busy.eq(0)

        depth = Mux(cmd.f0, cmd.a.rows, cmd.a.cols)
        n_rows, n_cols, acc_stride = cmd.acc_rows, cmd.acc_cols, cmd.acc_stride
        for feed, operand, flag, valid_rows in ((feed_a, cmd.a, cmd.f0, n_rows), (feed_b, cmd.b, cmd.f1, n_cols)):
            m.d.comb += [feed.start.eq(start), feed.transposed.eq(flag), feed.base.eq(operand.base),
                         feed.stride.eq(operand.stride), feed.rows.eq(valid_rows), feed.depth.eq(depth)]
        m.d.comb += [feed_a.outer.eq(1), feed_a.repeat.eq(n_cols),
                     feed_b.outer.eq(n_rows), feed_b.repeat.eq(1)]

        # --- compute: one beat when both operands are there ---------------------------------
        k = Signal(dim)
        present = feed_a.o.valid & feed_b.o.valid
        fire = present & array.i.ready
        m.d.comb += [
            array.i.valid.eq(present),
            array.i.payload.a.eq(feed_a.o.payload),
            array.i.payload.b.eq(feed_b.o.payload),
            array.clear.eq(present & (k == 0)),
            array.drain.eq(present & (k + 1 == depth)),
            feed_a.o.ready.eq(fire),
            feed_b.o.ready.eq(fire),
        ]
        with m.If(start):
            m.d.sync += k.eq(0)
        with m.Elif(fire):
            m.d.sync += k.eq(Mux(k + 1 == depth, 0, k + 1))

        # --- readout: array rows to AMEM words, maxima over the valid elements -------------
        # Pipelined so the array's row multiplexer, the magnitudes, the lane maximum and the
        # running maximum each get a clock period: (1) the row leaving the array, its AMEM
        # address and valid lanes are registered; (2) it is written to AMEM, and the valid
        # lanes' |x| and max(x, 0) are registered; (3) their maxima over the lanes are
        # registered; (4) the running maxima are updated.  done comes after (4).
        aaddr = amem_addr_shape(cfg)
        out_m0, out_n0, out_row = Signal(dim), Signal(dim), Signal(dim.width + 1)
        m0_addr, nw, row_addr = Signal(aaddr), Signal(aaddr), Signal(aaddr)
        maxabs, maxpos = Signal(cfg.acc_bits), Signal(cfg.acc_bits)
        out = array.o.payload.row
        row_valid = out_row < n_rows
        lane_ok = [out_n0 + c < n_cols for c in range(cols)]

        w_valid, w_addr, w_ok = Signal(), Signal(aaddr), Signal(cols)
        w_row = Signal(out.shape())
        m.d.sync += [w_valid.eq(array.o.valid & row_valid), w_addr.eq(row_addr), w_row.eq(out),
                     w_ok.eq(Cat(*lane_ok))]
        m.d.comb += [
            array.o.ready.eq(1),
            self.amem_w.addr.eq(w_addr),
            self.amem_w.en.eq(w_valid),
            self.amem_w.data.eq(w_row),
            self.result.maxabs.eq(maxabs),
            self.result.maxpos.eq(maxpos),
        ]
        mag_valid = Signal()
        mags = [Signal(cfg.acc_bits, name=f"mag_{c}") for c in range(cols)]
        poss = [Signal(cfg.acc_bits, name=f"pos_{c}") for c in range(cols)]
        m.d.sync += mag_valid.eq(w_valid)
        for c in range(cols):
            x = w_row[c]
            m.d.sync += [mags[c].eq(Mux(w_ok[c], Mux(x < 0, -x, x).as_unsigned(), 0)),
                         poss[c].eq(Mux(w_ok[c] & (x > 0), x.as_unsigned(), 0))]
        row_valid_3 = Signal()
        row_abs, row_pos = Signal(cfg.acc_bits), Signal(cfg.acc_bits)
        m.d.sync += [row_valid_3.eq(mag_valid), row_abs.eq(_max_tree(mags)), row_pos.eq(_max_tree(poss))]

        last_col_tile = out_n0 + cols >= n_cols
        last_tile = last_col_tile & (out_m0 + rows >= n_rows)
        with m.If(accept):
            m.d.sync += [out_m0.eq(0), out_n0.eq(0), out_row.eq(0), m0_addr.eq(0), nw.eq(0),
                         row_addr.eq(0), maxabs.eq(0), maxpos.eq(0)]
        with m.Elif(array.o.valid):
            with m.If(~array.o.payload.last):
                m.d.sync += [out_row.eq(out_row + 1), row_addr.eq(row_addr + acc_stride)]
            with m.Elif(~last_col_tile):
                m.d.sync += [out_n0.eq(out_n0 + cols), nw.eq(nw + 1), out_row.eq(out_m0),
                             row_addr.eq(m0_addr + nw + 1)]
            with m.Else():
                next_addr = m0_addr + acc_stride * rows
                m.d.sync += [out_n0.eq(0), nw.eq(0), out_m0.eq(out_m0 + rows), out_row.eq(out_m0 + rows),
                             m0_addr.eq(next_addr), row_addr.eq(next_addr)]
            with m.If(array.o.payload.last & last_tile):
                m.d.sync += finish.eq(1)
        with m.If(row_valid_3):         # never at accept: the engine is busy until the pipeline is empty
            with m.If(row_abs > maxabs):
                m.d.sync += maxabs.eq(row_abs)
            with m.If(row_pos > maxpos):
                m.d.sync += maxpos.eq(row_pos)
        return m
