"""LossUnit: the softmax cross-entropy error in integers, golden ``int_loss.int_softmax_grid``.

Per command (``rows`` samples of ``cols`` classes, logit exponent ``exp``)
it first takes ``lb = Log2(rows)`` and ``w = Exp2(lb)`` on the grid, then per
row:

  RECV  the row's int8 logits from ``i`` into a row buffer, the first
        maximum (``top``) and the label (from the row's first beat);
  SUM   for each class z = (top value - q) * LOG2E shifted by exp, and the
        sum of Exp2(z) in Q24;
  LOG   ls = Log2(sum);
  GRID  g = Exp2(z + ls + lb - (24 + G) << 16) on the grid into a buffer,
        with the sum of every class but the top;
  EMIT  err = g (the top: w - that sum), minus w at the label, one int32
        per beat on ``o``; the row's last beat carries its loss
        (-log2 p[label] in Q16), whether the top is the label, and
        whether the row has a label (``labelled``).

``rows`` and ``cols`` must be at least 1 (the sequencer's checks see to it).
A row whose label is no class (``max_features``: golden
``int_loss.softmax_grid``) gets no one-hot term; its loss and ``correct``
are then meaningless.

The passes run one class per cycle through the Exp2 pipeline; a row takes
about 5 * cols cycles plus the latencies of Log2eScale, Exp2 (twice) and
Log2.  ``exp`` is clamped to [-25, 5], which changes no result (docs/eoq_arithmetic.md, "Output error on the device").
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.int_loss import EXP_BITS, LOG_FRAC, Z_LIMIT, check_grid

from .interfaces import dim_shape, exp_shape
from .log_domain import Exp2, Log2, Log2eScale
from .rounding import acc_shape, data_shape

#: the clamp of the logit exponent: beyond it z is 0 (right) or saturates (left) for every d
EXP_RIGHT_MOST, EXP_LEFT_MOST = 25, 5


def loss_shapes(cfg: CoreConfig) -> dict:
    """Widths of the unit's values, from the configuration's class limit (max_features) and rows (max_dim)."""
    sum_bits = EXP_BITS + 1 + cfg.max_features.bit_length()
    grid_bits = check_grid(cfg)
    a_bits = max(sum_bits, cfg.max_dim.bit_length()).bit_length() + LOG_FRAC + 3
    return {"sum": sum_bits, "a": a_bits, "loss": Z_LIMIT.bit_length() + sum_bits.bit_length() + LOG_FRAC,
            "grid": grid_bits}


def loss_command(cfg: CoreConfig) -> data.StructLayout:
    return data.StructLayout({"rows": dim_shape(cfg), "cols": range(cfg.max_features + 1), "exp": exp_shape(cfg)})


def logit_layout(cfg: CoreConfig) -> data.StructLayout:
    """A logit with its row's label; label max_features (no class) adds no one-hot term."""
    return data.StructLayout({"logit": data_shape(cfg), "label": range(cfg.max_features + 1)})


def error_layout(cfg: CoreConfig) -> data.StructLayout:
    return data.StructLayout({"error": acc_shape(cfg), "row_last": 1, "last": 1,
                              "loss_bits": unsigned(loss_shapes(cfg)["loss"]), "correct": 1, "labelled": 1})


class LossUnit(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        self.shapes = loss_shapes(cfg)
        super().__init__({
            "cmd": In(stream.Signature(loss_command(cfg))),
            "i": In(stream.Signature(logit_layout(cfg))),
            "o": Out(stream.Signature(error_layout(cfg))),
        })

    def _batch_constants(self, m, log2, exp2, rows, lb, whole):
        """FSM states from BATCH_LOG to RECV: lb = Log2(rows), then w = Exp2(lb) on the grid."""
        with m.State("BATCH_LOG"):
            m.d.comb += [log2.valid.eq(1), log2.v.eq(rows)]
            m.next = "BATCH_LOG_WAIT"
        with m.State("BATCH_LOG_WAIT"):
            with m.If(log2.out_valid):
                m.d.sync += lb.eq(log2.out)
                m.next = "WHOLE"
        with m.State("WHOLE"):
            m.d.comb += [exp2.valid.eq(1), exp2.z.eq(lb), exp2.offset.eq(EXP_BITS - self.shapes["grid"])]
            m.next = "WHOLE_WAIT"
        with m.State("WHOLE_WAIT"):
            with m.If(exp2.out_valid):
                m.d.sync += whole.eq(exp2.out)
                m.next = "RECV"

    def _first_maximum(self, m, top, top_value):
        """The row's first maximum (``top``, ``top_value``) from the received beats, one cycle behind RECV,
        off the input's path: the last beat's compare lands in SUM's first cycle, a cycle before
        Log2eScale first reads ``top_value``.  Returns the beat register RECV loads."""
        beat = Signal(data.StructLayout({"valid": 1, "first": 1, "col": len(top), "logit": top_value.shape()}))
        m.d.sync += beat.valid.eq(0)
        with m.If(beat.valid & (beat.first | (beat.logit > top_value))):
            m.d.sync += [top.eq(beat.col), top_value.eq(beat.logit)]
        return beat

    def _row_buffers(self, m):
        """The row's logits and its grid values g, one entry per class, as (write, read) port pairs.  In LUT
        RAM, whose registered read is a fabric flip-flop: a block RAM's read takes 5.6 ns from the clock
        before the subtract that makes the error."""
        classes, small = self.cfg.max_features, {"ram_style": "distributed"}
        m.submodules.row = row_mem = Memory(shape=data_shape(self.cfg), depth=classes, init=[], attrs=small)
        m.submodules.g = g_mem = Memory(shape=unsigned(EXP_BITS + 1), depth=classes, init=[], attrs=small)
        return row_mem.write_port(), row_mem.read_port(), g_mem.write_port(), g_mem.read_port()

    def elaborate(self, platform):
        m = Module()
        cfg, shapes = self.cfg, self.shapes
        classes = cfg.max_features
        m.submodules.exp2 = exp2 = Exp2(shapes["a"], tag_bits=max(classes - 1, 1).bit_length())
        m.submodules.log2 = log2 = Log2(shapes["sum"])
        row_write, row_read, g_write, g_read = self._row_buffers(m)

        rows, cols = Signal.like(self.cmd.payload.rows), Signal.like(self.cmd.payload.cols)
        left, right = Signal(range(EXP_LEFT_MOST + 1)), Signal(range(EXP_RIGHT_MOST + 1))
        row, col, issued, received = Signal.like(rows), Signal.like(cols), Signal.like(cols), Signal.like(cols)
        top, label = Signal.like(self.i.payload.label), Signal.like(self.i.payload.label)
        top_value = Signal(data_shape(cfg))
        lb, ls = Signal.like(log2.out), Signal.like(log2.out)
        whole = Signal(EXP_BITS + 1)
        total = Signal(shapes["sum"])
        others = Signal(shapes["sum"])
        z_label = Signal(range(Z_LIMIT + 1))
        grid_pass = Signal()
        base = Signal(signed(shapes["a"]))

        # the z pipeline: row buffer read -> Log2eScale -> Exp2 (z + base, offset 24 on the grid pass)
        issue = Signal()
        m.submodules.scale = scale = Log2eScale(data_bits=cfg.data_bits, left_most=EXP_LEFT_MOST,
                                                right_most=EXP_RIGHT_MOST, tag_bits=len(cols))
        valid, tag = Signal(), Signal.like(cols)
        m.d.comb += [row_read.addr.eq(issued), row_read.en.eq(issue)]
        m.d.sync += [valid.eq(issue), tag.eq(issued)]
        m.d.comb += [scale.valid.eq(valid), scale.tag.eq(tag), scale.q.eq(row_read.data), scale.top.eq(top_value),
                     scale.left.eq(left), scale.right.eq(right)]
        z = scale.z
        with m.If(scale.out_valid & ~grid_pass & (scale.out_tag == label)):
            m.d.sync += z_label.eq(z)
        m.d.comb += [exp2.valid.eq(scale.out_valid), exp2.tag.eq(scale.out_tag),
                     exp2.z.eq(Mux(grid_pass, z + base, z)), exp2.offset.eq(Mux(grid_pass, EXP_BITS, 0))]

        def issue_pass():
            with m.If(issued != cols):
                m.d.comb += issue.eq(1)
                m.d.sync += issued.eq(issued + 1)

        last_result = exp2.out_valid & (received == cols - 1)
        with m.If(exp2.out_valid):
            m.d.sync += received.eq(received + 1)

        top_term = whole - others
        top_g = Signal.like(top_term)                       # final in EMIT: GRID's last sum is 2 cycles before
        m.d.sync += top_g.eq(top_term)
        # what EMIT's class is, compared in EMIT_READ: the error's subtract is then all EMIT holds
        at = Signal(data.StructLayout({"top": 1, "label": 1, "row_end": 1, "end": 1}))
        g_value = Mux(at.top, top_g, g_read.data).as_signed()
        m.d.comb += [
            row_write.addr.eq(col), row_write.data.eq(self.i.payload.logit),
            g_write.addr.eq(exp2.out_tag), g_write.data.eq(exp2.out), g_read.addr.eq(col),
            self.o.payload.error.eq(g_value - Mux(at.label, whole, 0)),
            self.o.payload.row_last.eq(at.row_end), self.o.payload.last.eq(at.end),
            self.o.payload.loss_bits.eq(z_label + ls - (EXP_BITS << LOG_FRAC)),
            self.o.payload.correct.eq(top == label), self.o.payload.labelled.eq(label != classes),
        ]
        beat = self._first_maximum(m, top, top_value)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    exp = self.cmd.payload.exp
                    m.d.sync += [rows.eq(self.cmd.payload.rows), cols.eq(self.cmd.payload.cols), row.eq(0), col.eq(0),
                                 left.eq(Mux(exp > EXP_LEFT_MOST, EXP_LEFT_MOST, Mux(exp > 0, exp, 0))),
                                 right.eq(Mux(exp < -EXP_RIGHT_MOST, EXP_RIGHT_MOST, Mux(exp < 0, -exp, 0)))]
                    m.next = "BATCH_LOG"
            self._batch_constants(m, log2, exp2, rows, lb, whole)
            with m.State("RECV"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.comb += row_write.en.eq(1)
                    m.d.sync += [beat.valid.eq(1), beat.first.eq(col == 0), beat.col.eq(col),
                                 beat.logit.eq(self.i.payload.logit)]
                    with m.If(col == 0):
                        m.d.sync += label.eq(self.i.payload.label)
                    m.d.sync += col.eq(col + 1)
                    with m.If(col == cols - 1):
                        m.d.sync += [col.eq(0), issued.eq(0), received.eq(0), total.eq(0), grid_pass.eq(0)]
                        m.next = "SUM"
            with m.State("SUM"):
                issue_pass()
                with m.If(exp2.out_valid):
                    m.d.sync += total.eq(total + exp2.out)
                with m.If(last_result):
                    m.next = "LOG"
            with m.State("LOG"):
                m.d.comb += [log2.valid.eq(1), log2.v.eq(total)]
                m.next = "LOG_WAIT"
            with m.State("LOG_WAIT"):
                with m.If(log2.out_valid):
                    m.d.sync += [ls.eq(log2.out), base.eq(log2.out + lb - ((EXP_BITS + shapes["grid"]) << LOG_FRAC)),
                                 issued.eq(0), received.eq(0), others.eq(0), grid_pass.eq(1)]
                    m.next = "GRID"
            with m.State("GRID"):
                issue_pass()
                with m.If(exp2.out_valid):
                    m.d.comb += g_write.en.eq(1)
                    with m.If(exp2.out_tag != top):
                        m.d.sync += others.eq(others + exp2.out)
                with m.If(last_result):
                    m.next = "EMIT_READ"
            with m.State("EMIT_READ"):
                m.d.comb += g_read.en.eq(1)
                m.d.sync += [at.top.eq(col == top), at.label.eq(col == label), at.row_end.eq(col == cols - 1),
                             at.end.eq((col == cols - 1) & (row == rows - 1))]
                m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.sync += col.eq(col + 1)
                    m.next = "EMIT_READ"
                    with m.If(col == cols - 1):
                        m.d.sync += [col.eq(0), row.eq(row + 1)]
                        m.next = "RECV"
                        with m.If(row == rows - 1):
                            m.next = "IDLE"
        return m
