"""Output-stationary int8 MAC array."""

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .accumulate_adder import AccumulateAdder
from .multiplier import RegisteredMultiplier
from .register_copies import RegisterCopies
from .rounding import acc_shape, data_shape


class MacArray(wiring.Component):
    """R x C output-stationary array (R = cfg.array_rows, C = cfg.array_cols).

    Each accepted beat on ``i`` carries int8 vectors ``a[0..R-1]`` and
    ``b[0..C-1]`` and every PE does ``acc[r][c] += a[r] * b[c]`` (an outer
    product; accumulators are ``cfg.acc_bits`` signed): one MAC per PE per
    cycle while fed.  After K beats ``acc[r][c] = sum_k a_k[r] * b_k[c]``.

    Why output-stationary: each PE keeps its wide partial sum in place for
    the whole reduction, so per cycle only R + C int8 operands move in
    (instead of R*C 32-bit partial sums moving between PEs or buffers), the
    reduction length K is unbounded by the array size, and the 32-bit results
    leave once per tile, amortised over K cycles.  Because the array only
    computes sums of outer products, forward W.X, backward W^T.E and
    gradient E.X^T differ only in the order the sequencer reads the int8
    buffers; no transposition hardware is needed.

    Controls:
      ``clear``  strobe: start a new tile.  All accumulators restart from 0;
                 a beat accepted in the same cycle is the first term of the
                 new sum (no bubble between tiles).
      ``drain``  strobe: stream the accumulators out on ``o``, one row of C
                 per beat, rows 0..R-1, ``last`` on row R-1.  While draining
                 ``i.ready`` is low and ``clear`` is ignored; readout does not
                 modify the accumulators.  Beats accepted up to and including
                 the ``drain`` cycle are included.

    With ``overlap=True`` the drain copies the sums (including a beat
    accepted in the drain cycle) into a holding bank of R x C registers and
    the readout streams from that copy, shifting it up its columns (no row
    multiplexer: each held sum is wired to its neighbours only), so the next
    tile's beats (and its ``clear``) are accepted while the previous tile
    leaves: no bubble per tile when K > R + LATENCY.  ``i.ready`` then drops only while ``drain``
    is requested before the previous readout has finished; the beat, the
    drain and a clear with it wait together.  Costs R*C*acc_bits more
    registers.

    Pipelined for the clock: each PE's operands first pass a register of
    their own (:class:`~hw.register_copies.RegisterCopies`: an operand drives
    C or R multipliers spread over the chip's DSP rows, and one register with
    that fan-out was the 128-MAC engine's critical route), then each PE's
    product comes from a :class:`~hw.multiplier.RegisteredMultiplier`
    (operands and product registered: the ECP5's DSP registers), and the accumulate adds it
    LATENCY cycles after the beat, with the beat's controls delayed beside
    it; the sum, the clear and the fire are one
    :class:`~hw.accumulate_adder.AccumulateAdder` per PE (on the ECP5 a carry
    chain with both gates in its own LUTs).  Seen from the ports only the
    readout is LATENCY cycles later; the sums are the same.  A drain is taken only when no readout is running or
    on its way through the pipeline (``busy``).
    """

    #: Cycles from an accepted beat to its product entering the accumulators: the operand copies, then
    #: the multiplier.
    LATENCY = 1 + RegisteredMultiplier.LATENCY

    def __init__(self, cfg: CoreConfig, overlap: bool = False):
        self.cfg = cfg
        self.overlap = overlap
        rows, cols = cfg.array_rows, cfg.array_cols
        super().__init__({
            "clear": In(1),
            "drain": In(1),
            "i": In(stream.Signature(data.StructLayout({
                "a": data.ArrayLayout(data_shape(cfg), rows),
                "b": data.ArrayLayout(data_shape(cfg), cols),
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "row": data.ArrayLayout(acc_shape(cfg), cols),
                "last": 1,
            }))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rows, cols = cfg.array_rows, cfg.array_cols
        latency = self.LATENCY
        acc = [[Signal(acc_shape(cfg), name=f"acc_{r}_{c}") for c in range(cols)] for r in range(rows)]
        totals = [[None] * cols for _ in range(rows)]

        # the controls travel beside the operands through the multipliers' registers; the last
        # stage is copied per PE, so no one flip-flop drives every accumulator's enable
        draining = Signal()
        row = Signal(range(rows))
        controls = data.StructLayout({"fire": 1, "clear": 1, "take": 1})
        stages = [Signal(controls, name=f"stage_{s}") for s in range(latency - 1)]
        m.submodules.controls = copies = RegisterCopies(controls.size, copies=rows * cols)
        last = [[controls(copies.o[r * cols + c]) for c in range(cols)] for r in range(rows)]
        busy = draining | Cat(stage.take for stage in [*stages, last[0][0]]).any()  # a readout started or coming
        if self.overlap:
            stalled = busy & self.drain
            m.d.comb += self.i.ready.eq(~stalled)
            clear = self.clear & ~stalled
            held = [[Signal(acc_shape(cfg), name=f"held_{r}_{c}") for c in range(cols)] for r in range(rows)]
        else:
            m.d.comb += self.i.ready.eq(~busy)
            clear = self.clear & ~busy
            held = acc
        entering = Cat(self.i.valid & self.i.ready, clear, self.drain & ~busy)
        chain = [entering, *stages]
        m.d.sync += [later.eq(earlier) for earlier, later in zip(chain, stages)]
        m.d.comb += copies.i.eq(chain[-1])
        take = last[0][0].take

        bits = cfg.data_bits
        a_copies, b_copies = [], []
        for r in range(rows):
            m.submodules[f"a_copies_{r}"] = copy = RegisterCopies(bits, copies=cols)
            m.d.comb += copy.i.eq(self.i.payload.a[r])
            a_copies.append(copy.o)
        for c in range(cols):
            m.submodules[f"b_copies_{c}"] = copy = RegisterCopies(bits, copies=rows)
            m.d.comb += copy.i.eq(self.i.payload.b[c])
            b_copies.append(copy.o)
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"mul_{r}_{c}"] = mul = RegisteredMultiplier(a_bits=bits, b_bits=bits)
                m.d.comb += [mul.a.eq(a_copies[r][c]), mul.b.eq(b_copies[c][r])]
                m.submodules[f"add_{r}_{c}"] = add = AccumulateAdder(acc_bits=cfg.acc_bits, p_bits=len(mul.p))
                m.d.comb += [add.acc.eq(acc[r][c]), add.p.eq(mul.p),
                             add.clear.eq(last[r][c].clear), add.fire.eq(last[r][c].fire)]
                m.d.sync += acc[r][c].eq(add.total)
                totals[r][c] = add.total

        # the readout: rows 0..R-1 leave one per accepted beat; ``next_row`` and ``next_draining`` are
        # the values the two registers take next, so per-PE copies of them can be registered beside
        # the loads they drive (no one register fans out over every accumulator)
        next_row, next_draining = Signal.like(row), Signal()
        m.d.sync += [row.eq(next_row), draining.eq(next_draining)]
        m.d.comb += [next_row.eq(row), next_draining.eq(draining)]
        if self.overlap:
            self._shift_readout(m, held, totals, last, next_draining)
        else:
            self._mux_readout(m, held, next_row)
        m.d.comb += [
            self.o.valid.eq(draining),
            self.o.payload.last.eq(row == rows - 1),
        ]
        with m.If(draining):
            with m.If(self.o.ready):
                m.d.comb += next_row.eq(row + 1)
                with m.If(row == rows - 1):
                    m.d.comb += [next_draining.eq(0), next_row.eq(0)]
        with m.Elif(take):
            m.d.comb += [next_draining.eq(1), next_row.eq(0)]
        return m

    def _shift_readout(self, m, held, totals, last, next_draining):
        """The holding bank leaves as a shift register up each column: row 0 is on ``o``, and every
        accepted beat moves each row one up.  Each held sum is wired to its PE and to the PE one row
        on, never to a multiplexer gathering a column from across the chip's DSP rows."""
        rows, cols = self.cfg.array_rows, self.cfg.array_cols
        m.submodules.draining_copies = copies = RegisterCopies(1, copies=rows * cols)
        m.d.comb += copies.i.eq(next_draining)
        for r in range(rows):
            for c in range(cols):
                with m.If(last[r][c].take):
                    m.d.sync += held[r][c].eq(totals[r][c])
                if r + 1 < rows:
                    with m.Elif(copies.o[r * cols + c] & self.o.ready):
                        m.d.sync += held[r][c].eq(held[r + 1][c])
        for c in range(cols):
            m.d.comb += self.o.payload.row[c].eq(held[0][c])

    def _mux_readout(self, m, held, next_row):
        """Each column's row multiplexer (the accumulators themselves: the readout must not change
        them) has its own copy of the row select, registered from the value the row takes next."""
        rows, cols = self.cfg.array_rows, self.cfg.array_cols
        m.submodules.row_copies = row_copies = RegisterCopies(len(next_row), copies=cols)
        m.d.comb += row_copies.i.eq(next_row)
        for c in range(cols):
            m.d.comb += self.o.payload.row[c].eq(Array(held[r][c] for r in range(rows))[row_copies.o[c]])
