"""MATMUL engine: ACC = op(A) . op(B)^T on the output-stationary MacArray, and the three products of CONV.

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

CONV is the same product with the feeders gathering (implicit GEMM, no
im2col copy, no flipped or transposed weights in TMEM; hw/feed_addresses.py):

  forward   A = im2col(X) plain (M = B*Ho*Wo output pixels, K = taps x X's words),
            B = W plain (N = O)
  error     A = col2im(E) plain (M = B*H*W input pixels, K = taps x E's words),
            B = W transposed tap by tap (N = C)
  gradient  A = E transposed (M = O, K = B*Ho*Wo), B = im2col(X) transposed (N = taps x X's words)
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring

from golden_model.config import CoreConfig
from golden_model.isa import Op

from .delay import delayed
from .feed_addresses import Gather, feed_params_layout
from .geometry import key_layout, out_height, out_width
from .interfaces import EngineSignature, amem_addr_shape, dim_shape
from .loop_counter import LoopCounter
from .mac_array import MacArray
from .multiplier import RegisteredMultiplier, size_multiplier
from .operand_feeder import OperandFeeder
from .reduction_tree import or_tree, tree_levels


class MatmulEngine(wiring.Component):
    """Executes MATMUL: ACC = op(A) . op(B)^T into AMEM, reporting max |x| and max(x, 0).

    A is fetched on ``tmem_a``, B on ``tmem_b``; ACC rows leave the array's
    readout one AMEM word per array row on ``amem_w`` (rows past M are not
    written; lanes past N are written but masked from the peaks).
    ``overlap`` selects the array's overlapped readout; without it each tile
    costs up to R more cycles but the array needs R*C*acc_bits fewer registers.
    """

    def __init__(self, cfg: CoreConfig, overlap: bool = True):
        if cfg.array_cols != cfg.lanes:
            raise ValueError("MatmulEngine needs array_cols == lanes (array_cols a multiple of array_rows)")
        self.cfg = cfg
        self.overlap = overlap
        super().__init__(EngineSignature(cfg))

    def _sizes(self, m, cmd, enable):
        """The key's sizes by SETUP, so its paths hold one multiply each: Ho, Wo registered from the
        latched command (PREPARE), the taps KH*KW and the image H*W on registered multipliers fed from
        the command as it is accepted (``enable``: the accept and PREPARE cycles, so their products
        hold through SETUP; no multiply between fabric flip-flops)."""
        g, incoming = key_layout()(cmd.key), key_layout()(self.cmd.payload.key)
        sizes = Signal(data.StructLayout({"ho": 8, "wo": 8, "taps": 8, "image": 14}))
        ho, wo = Signal(8, name="sizes_ho"), Signal(8, name="sizes_wo")
        m.d.sync += [ho.eq(out_height(g)), wo.eq(out_width(g))]
        m.d.comb += [sizes.ho.eq(ho), sizes.wo.eq(wo)]
        for name, a, b in (("taps", incoming.kh, incoming.kw), ("image", incoming.height, incoming.width)):
            m.submodules[f"{name}_product"] = product = size_multiplier(self.cfg, a_bits=len(a) + 1,
                                                                        b_bits=len(b) + 1)
            m.d.comb += [product.a.eq(a), product.b.eq(b), product.en.eq(enable),
                         getattr(sizes, name).eq(product.p.as_unsigned())]
        return sizes

    def _parameters(self, m, cmd, sizes, depth, params_a, params_b):
        """SETUP: both operands' feeder parameters and the product's K, from the latched command."""
        cfg = self.cfg
        lanes = cfg.lanes
        g = key_layout()(cmd.key)
        ho, wo = sizes.ho, sizes.wo
        a, b = cmd.a, cmd.b
        m_rows, n_cols = cmd.acc_rows, cmd.acc_cols
        common = {"outer": 1, "repeat": n_cols, "rows": m_rows, "kh": 1, "kw": 1}
        geometry = {"kh": g.kh, "kw": g.kw, "stride_log2": g.stride_log2, "pad_h": g.pad_h, "pad_w": g.pad_w}
        taps = sizes.taps

        def operand(params, t, transposed, gather=Gather.NONE, **fields):
            """Every field of a feeder's parameters (a field a mode does not use is 0)."""
            values = {name: 0 for name, _ in feed_params_layout(cfg)}
            values.update(transposed=transposed, gather=gather, base=t.base, stride=t.stride, **fields)
            m.d.sync += [getattr(params, name).eq(value) for name, value in values.items()]

        b_common = {"outer": m_rows, "repeat": 1, "rows": n_cols, "kh": 1, "kw": 1}
        with m.If(cmd.op == Op.CONV):
            with m.If(cmd.f0):                      # weight gradient: E^T . im2col(X)
                m.d.sync += depth.eq(a.rows)
                operand(params_a, a, 1, **common, depth=a.rows)
                operand(params_b, b, 1, Gather.IM2COL, **{**b_common, **geometry}, depth=a.rows,
                        tap_words=b.stride, walk_h=ho, walk_w=wo, src_h=g.height, src_w=g.width,
                        src_image=sizes.image)
            with m.Elif(cmd.f1):                    # error: col2im(E) . W, W read tap by tap
                k = taps * a.stride * lanes
                m.d.sync += depth.eq(k)
                operand(params_a, a, 0, Gather.COL2IM, **{**common, **geometry}, depth=k, tap_words=a.stride,
                        walk_h=g.height, walk_w=g.width, src_h=ho, src_w=wo, src_image=ho * wo)
                operand(params_b, b, 1, Gather.TAPS, **{**b_common, **geometry}, depth=k,
                        tap_depth=a.stride * lanes, tap_words=cmd.dst.stride, krows=b.rows)
            with m.Else():                          # forward: im2col(X) . W^T
                k = taps * a.stride * lanes
                m.d.sync += depth.eq(k)
                operand(params_a, a, 0, Gather.IM2COL, **{**common, **geometry}, depth=k, tap_words=a.stride,
                        walk_h=ho, walk_w=wo, src_h=g.height, src_w=g.width, src_image=sizes.image)
                operand(params_b, b, 0, **b_common, depth=k)
        with m.Else():                              # MATMUL: op(A) . op(B)^T
            k = Mux(cmd.f0, a.rows, a.cols)
            m.d.sync += depth.eq(k)
            operand(params_a, a, cmd.f0, **common, depth=k)
            operand(params_b, b, cmd.f1, **b_common, depth=k)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows, cols = cfg.array_rows, cfg.array_cols
        dim = dim_shape(cfg)

        m.submodules.array = array = MacArray(cfg, overlap=self.overlap)
        m.submodules.feed_a = feed_a = OperandFeeder(cfg, width=rows, outer_step=1, rep_step=cols)
        m.submodules.feed_b = feed_b = OperandFeeder(cfg, width=cols, outer_step=rows, rep_step=1)
        wiring.connect(m, feed_a.mem, wiring.flipped(self.tmem_a))
        wiring.connect(m, feed_b.mem, wiring.flipped(self.tmem_b))

        # accept the command, register the key's sizes, set the feeders' parameters up (registered),
        # then start them once the parameters have settled (OperandFeeder.PARAMS_LEAD)
        cmd = Signal(self.cmd.payload.shape())
        busy, prepare, setup, finish = Signal(), Signal(), Signal(), Signal()
        accept = self.cmd.valid & ~busy
        m.d.comb += self.cmd.ready.eq(~busy)
        # done follows the last row through the readout pipeline below: the row and its AMEM
        # write, the magnitudes, the levels of the lane maximum
        readout_stages = 2 + tree_levels(cols)
        m.d.comb += self.done.eq(delayed(m, finish, readout_stages, name="finish"))
        m.d.sync += [prepare.eq(accept), setup.eq(prepare), finish.eq(0)]
        start = delayed(m, setup, 1 + OperandFeeder.PARAMS_LEAD, name="start")
        with m.If(accept):
            m.d.sync += [cmd.eq(self.cmd.payload), busy.eq(1)]
        with m.If(self.done):
            m.d.sync += busy.eq(0)

        depth = Signal(dim)
        params_a, params_b = Signal(feed_params_layout(cfg)), Signal(feed_params_layout(cfg))
        assert RegisteredMultiplier.LATENCY == 2, "the key's products must arrive by SETUP, two cycles on"
        sizes = self._sizes(m, cmd, accept | prepare)
        with m.If(setup):
            self._parameters(m, cmd, sizes, depth, params_a, params_b)
        m.d.comb += [feed_a.start.eq(start), feed_b.start.eq(start),
                     feed_a.params.eq(params_a), feed_b.params.eq(params_b)]
        n_rows, n_cols, acc_stride = cmd.acc_rows, cmd.acc_cols, cmd.acc_stride

        # --- compute: one beat when both operands are there ---------------------------------
        # the beat counter keeps "the tile's last beat" in a register (the drain, and with it the
        # array's ready and the feeders' stall, then start from flip-flops)
        k = LoopCounter(m, dim, bound=depth - 1, step=1, exact=1, name="k")
        present = feed_a.o.valid & feed_b.o.valid
        fire = present & array.i.ready
        m.d.comb += [
            array.i.valid.eq(present),
            array.i.payload.a.eq(feed_a.o.payload),
            array.i.payload.b.eq(feed_b.o.payload),
            array.clear.eq(present & (k.value == 0)),
            array.drain.eq(present & k.last),
            feed_a.o.ready.eq(fire),
            feed_b.o.ready.eq(fire),
        ]
        with m.If(start | (fire & k.last)):
            k.restart()
        with m.Elif(fire):
            k.step()

        # --- readout: array rows to AMEM words, peaks over the valid elements -------------
        # Pipelined so the array's row, the magnitudes, the lanes' OR and the
        # running OR each get a clock period: (1) the row leaving the array, its AMEM
        # address and valid lanes are registered; (2) it is written to AMEM, and the valid
        # lanes' |x| and max(x, 0) are registered; (3) their peaks over the lanes, one
        # OR level per cycle; (4) the running peaks are updated.  done comes after (4).
        aaddr = amem_addr_shape(cfg)
        out_m0, out_n0, out_row = Signal(dim), Signal(dim), Signal(dim.width + 1)
        m0_addr, nw, row_addr = Signal(aaddr), Signal(aaddr), Signal(aaddr)
        peak_abs, peak_pos = Signal(cfg.acc_bits), Signal(cfg.acc_bits)
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
            self.result.peak_abs.eq(peak_abs),
            self.result.peak_pos.eq(peak_pos),
        ]
        mag_valid = Signal()
        mags = [Signal(cfg.acc_bits, name=f"mag_{c}") for c in range(cols)]
        poss = [Signal(cfg.acc_bits, name=f"pos_{c}") for c in range(cols)]
        m.d.sync += mag_valid.eq(w_valid)
        for c in range(cols):
            x = w_row[c]
            m.d.sync += [mags[c].eq(Mux(w_ok[c], Mux(x < 0, -x, x).as_unsigned(), 0)),
                         poss[c].eq(Mux(w_ok[c] & (x > 0), x.as_unsigned(), 0))]
        row_abs, row_pos = or_tree(m, mags, name="abs"), or_tree(m, poss, name="pos")
        row_valid_3 = delayed(m, mag_valid, tree_levels(cols), name="row_valid")

        last_col_tile = out_n0 + cols >= n_cols
        last_tile = last_col_tile & (out_m0 + rows >= n_rows)
        with m.If(accept):
            m.d.sync += [out_m0.eq(0), out_n0.eq(0), out_row.eq(0), m0_addr.eq(0), nw.eq(0),
                         row_addr.eq(0), peak_abs.eq(0), peak_pos.eq(0)]
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
            m.d.sync += [peak_abs.eq(peak_abs | row_abs), peak_pos.eq(peak_pos | row_pos)]
        return m
