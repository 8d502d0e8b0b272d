"""FeedAddresses: the TMEM reads of one MATMUL or CONV operand, in the order its feeder consumes them.

The feeder of an operand fills two banks of W words (hw/operand_feeder.py).
This component walks the operand's loops and emits one request per bank word
(``o``: an address, or ``zero`` for a word that is all padding) through a
registered pipeline (loop counters, gather coordinates, the row, the address;
each product in a :class:`~hw.multiplier.RegisteredMultiplier`), so no
multiplication or long carry chain sits between two registers of the walk.

Loops, outermost first (the A operand runs over blocks of R rows repeated
once per N tile, B over blocks of C rows once per M tile):

    outer  (0 .. outer, step outer_step)
      block of W rows (row0 = 0, W, .. < rows)
        rep  (0 .. repeat, step rep_step)
          plain:       each K block of L columns: the fill of W words, one row each
          transposed:  each k: a fill of one word (its W lanes from row0 on)

and ``gather`` maps rows and K blocks (golden_model/geometry.py has the layouts):

    NONE    the stored tensor: plain word (row0 + word, K block); transposed word (k, row0 / L)
    IM2COL  rows are output pixels (plain: the forward product's M; transposed: the K of
            the weight gradient); a K block is (tap, word of the tap's channels) and reads
            the input pixel under the tap, zero in the padding
    COL2IM  rows are input pixels (the error product); a K block (tap, word) reads the
            output pixel whose tap covers the row's pixel, zero if there is none
    TAPS    transposed weights tap by tap (the error product): k = (tap, o) reads row o
            from word tap * tap_words + row0 / L on, zero for o >= krows

A NONE fill whose block and K block are still in the bank it would use (the
tile repeats a block whose whole K fits in the two banks) is one ``hit``
request instead of W reads: the feeder re-arms that bank.
"""

import enum

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .delay import delayed
from .interfaces import dim_shape, tmem_addr_shape
from .loop_counter import LoopCounter
from .multiplier import RegisteredMultiplier, size_multiplier
from .pixel_walker import GEOMETRY_BITS, PixelWalker, position_layout


class Gather(enum.IntEnum):
    NONE = 0
    IM2COL = 1
    COL2IM = 2
    TAPS = 3


def feed_params_layout(cfg: CoreConfig) -> data.StructLayout:
    """What the engine tells a feeder about its operand (held from ``FeedAddresses.PARAMS_LEAD`` cycles
    before ``start`` to the last vector).

    rows       valid rows of op(T) (plain: words past them are 0; transposed: lanes past them are pad)
    depth      K steps of the whole product (plain: in blocks of L, the last one partial)
    tap_words  gathers: the words of one tap's channels (K blocks per tap; TAPS: word offset per tap)
    tap_depth  TAPS: k steps per tap; krows: TAPS' stored rows (k at or past them reads zero)
    kh, kw     the kernel's taps (1, 1 without a gather)
    walk_*     the walked pixel grid; src_*: the source image, src_image its rows per image
    """
    dim = dim_shape(cfg)
    return data.StructLayout({
        "transposed": 1, "gather": Gather, "base": tmem_addr_shape(cfg), "stride": dim,
        "rows": dim, "depth": dim, "outer": dim, "repeat": dim,
        "tap_words": dim, "tap_depth": dim, "krows": dim, "kh": 4, "kw": 4,
        "walk_h": GEOMETRY_BITS, "walk_w": GEOMETRY_BITS, "src_h": GEOMETRY_BITS, "src_w": GEOMETRY_BITS,
        "src_image": dim, "stride_log2": 1, "pad_h": 2, "pad_w": 2,
    })


def feed_request_layout(cfg: CoreConfig, width: int) -> data.StructLayout:
    """One bank word: read ``addr`` (or zeros), as word ``word`` of the fill; ``last`` ends the fill,
    ``steps`` + 1 vectors come out of it, ``segment`` picks a transposed word's W lanes; ``hit``
    re-arms the bank instead (a whole fill)."""
    return data.StructLayout({
        "addr": tmem_addr_shape(cfg), "zero": 1, "hit": 1, "word": range(width), "last": 1,
        "steps": range(cfg.lanes), "segment": range(max(cfg.lanes // width, 2)),
    })


def _source_layout(cfg: CoreConfig, width: int) -> data.StructLayout:
    """A request before its row is gathered: the row (NONE, TAPS) or pixel and tap, the word column, and
    the K position ``k`` (the request's ``steps`` follow from it a stage later)."""
    dim = dim_shape(cfg)
    return data.StructLayout({
        "request": feed_request_layout(cfg, width), "gather": Gather, "row": dim, "at": position_layout(cfg),
        "th": 4, "tw": 4, "column": dim, "k": dim,
    })


def _offsets_layout(cfg: CoreConfig, width: int) -> data.StructLayout:
    """A request with its gather's pixel coordinates (signed: a tap may fall into the padding)."""
    dim = dim_shape(cfg)
    return data.StructLayout({
        "request": feed_request_layout(cfg, width), "gather": Gather, "row": dim, "column": dim, "image": dim,
        "y": signed(GEOMETRY_BITS + 3), "x": signed(GEOMETRY_BITS + 3),
    })


def _operands_layout(cfg: CoreConfig, width: int) -> data.StructLayout:
    """A request whose row is ``y * src_w + partial``."""
    dim = dim_shape(cfg)
    return data.StructLayout({
        "request": feed_request_layout(cfg, width), "column": dim, "y": signed(GEOMETRY_BITS + 3), "partial": dim,
    })


def _mode(transposed: int, gather: Gather) -> int:
    """The value of Cat(transposed, gather) for a Switch case."""
    return transposed | int(gather) << 1


class Move(enum.IntEnum):
    """How the walk moved a counter in the last cycle: kept it, stepped it, or set it to 0."""
    SAME = 0
    STEP = 1
    ZERO = 2


class BankTags:
    """The block row and K block each feeder bank holds (``record``), and ``hit``: the current fill's
    (``row0``, ``kblock``) is the one in bank ``wsel``.

    Every tag compare is registered a cycle ahead, for each value the counters can take next (the same,
    a step: ``row0 + row_step`` or ``kblock + 1``, or 0); the walk says which in the cycle it moves them
    (``moved``), so ``hit`` selects among flip-flops instead of comparing two counters with two tags in
    front of the walk's next decision.  A bank's tag is written at its fill's first word and compared
    at the first word of a later fill (the banks alternate), so the compares never see a stale tag.
    """

    def __init__(self, m, row0, kblock, *, row_step: int):
        self.m, self.row0, self.kblock = m, row0, kblock
        self.row_move, self.k_move = Signal(Move, name="row_move"), Signal(Move, name="k_move")
        m.d.sync += [self.row_move.eq(Move.SAME), self.k_move.eq(Move.SAME)]      # unless ``moved`` says
        self.tags = []
        self.matches = []
        for b in range(2):
            ok, t_row, t_k = Signal(name=f"tag_ok{b}"), Signal.like(row0, name=f"tag_row{b}"), \
                Signal.like(kblock, name=f"tag_k{b}")
            rows = {move: Signal(name=f"tag{b}_row_{move.name.lower()}") for move in Move}
            ks = {move: Signal(name=f"tag{b}_k_{move.name.lower()}") for move in Move}
            m.d.sync += [rows[Move.SAME].eq(t_row == row0), rows[Move.STEP].eq(t_row == row0 + row_step),
                         rows[Move.ZERO].eq(t_row == 0), ks[Move.SAME].eq(t_k == kblock),
                         ks[Move.STEP].eq(t_k == kblock + 1), ks[Move.ZERO].eq(t_k == 0)]
            self.tags.append((ok, t_row, t_k))
            # ``ok`` as it is now, not a cycle ago: ``clear`` at a start holds off the first fill's hit
            self.matches.append(ok & Cat(*rows.values()).bit_select(self.row_move, 1) &
                                Cat(*ks.values()).bit_select(self.k_move, 1))

    def hit(self, wsel):
        return Mux(wsel, self.matches[1], self.matches[0])

    def moved(self, *, row: Move = None, k: Move = None):
        """The walk moves row0 and/or kblock this cycle (its sync assignments to them)."""
        if row is not None:
            self.m.d.sync += self.row_move.eq(row)
        if k is not None:
            self.m.d.sync += self.k_move.eq(k)

    def record(self, wsel):
        """Bank ``wsel`` now holds the current fill."""
        for b, (ok, t_row, t_k) in enumerate(self.tags):
            with self.m.If(wsel == b):
                self.m.d.sync += [ok.eq(1), t_row.eq(self.row0), t_k.eq(self.kblock)]

    def clear(self):
        self.m.d.sync += [ok.eq(0) for ok, _, _ in self.tags]


class FeedAddresses(wiring.Component):
    def __init__(self, cfg: CoreConfig, *, width: int, outer_step: int, rep_step: int):
        self.cfg, self.width, self.outer_step, self.rep_step = cfg, width, outer_step, rep_step
        super().__init__({
            "start": In(1),
            "params": In(feed_params_layout(cfg)),
            "o": Out(stream.Signature(feed_request_layout(cfg, width))),
        })

    #: Cycles ``params`` must hold their new values before ``start`` (the walk's mode is registered from them)
    PARAMS_LEAD = 1

    #: Cycles from a request's loop counters to ``o``: the source, the gather coordinates, the
    #: gathered pixel row's operands, its product (a registered multiplier), the row, the row times
    #: the stride (another), and the address.
    LATENCY = 1 + 1 + 1 + RegisteredMultiplier.LATENCY + 1 + RegisteredMultiplier.LATENCY + 1

    def elaborate(self, platform):
        m = Module()
        cfg, p = self.cfg, self.params
        m.submodules.walker = walker = PixelWalker(cfg)
        m.d.comb += [walker.height.eq(p.walk_h), walker.width.eq(p.walk_w), walker.image_rows.eq(p.src_image)]

        # one global stall: every stage, the multipliers' registers included, moves on when the output
        # register is free or taken; ``start`` empties the pipeline
        advance = ~self.o.valid | self.o.ready
        source, produced = self._loops(m, walker, advance)

        def stage(value, name):
            return delayed(m, value, 1, name=name, en=advance)

        def valid_after(valid, cycles, name):
            for i in range(cycles):
                valid, earlier = Signal(name=f"{name}_{i}"), valid
                with m.If(self.start):
                    m.d.sync += valid.eq(0)
                with m.Elif(advance):
                    m.d.sync += valid.eq(earlier)
            return valid

        b = stage(source, "b")
        c = stage(self._gather_offsets(m, b), "c")
        d = stage(self._gathered_operands(m, c), "d")
        m.submodules.row_product = row_product = size_multiplier(cfg, a_bits=len(d.y) + 1,
                                                                      b_bits=GEOMETRY_BITS + 1)
        m.d.comb += [row_product.a.eq(d.y), row_product.b.eq(p.src_w), row_product.en.eq(advance)]
        e = delayed(m, d, RegisteredMultiplier.LATENCY, name="e", en=advance)
        dim_bits = dim_shape(cfg).width
        row = stage((e.partial + row_product.p)[:dim_bits], "row")          # a row of the stored tensor
        f = stage(e, "f")
        m.submodules.address_product = address_product = size_multiplier(cfg, a_bits=dim_bits + 1,
                                                                              b_bits=dim_bits + 1)
        m.d.comb += [address_product.a.eq(row), address_product.b.eq(p.stride), address_product.en.eq(advance)]
        g = delayed(m, f, RegisteredMultiplier.LATENCY, name="g", en=advance)
        with m.If(advance):
            m.d.sync += [self.o.payload.eq(g.request),
                         self.o.payload.addr.eq(p.base + address_product.p + g.column)]
        m.d.comb += self.o.valid.eq(valid_after(produced, self.LATENCY, "valid"))
        return m

    def _gather_offsets(self, m, b):
        """Stage C: the pixel coordinates a gather reads, before the bounds check, and the vectors a
        plain fill yields (``steps`` + 1: the K block's columns left, at most L).

        IM2COL reads the input pixel under tap (th, tw) of output pixel (y, x): (y << s) + th - pad;
        COL2IM reads the output pixel whose tap (th, tw) covers input pixel (y, x): (y + pad - th) >> s.
        """
        p, step, lanes = self.params, self.params.stride_log2, self.cfg.lanes
        y, x = b.at.y.as_signed(), b.at.x.as_signed()
        c = Signal(_offsets_layout(self.cfg, self.width))
        remaining = p.depth - b.k
        m.d.comb += [c.request.eq(b.request), c.gather.eq(b.gather), c.row.eq(b.row), c.column.eq(b.column),
                     c.image.eq(b.at.image),
                     c.request.steps.eq(Mux(p.transposed, 0, Mux(remaining >= lanes, lanes - 1, remaining - 1)))]
        with m.If(b.gather == Gather.COL2IM):
            m.d.comb += [c.y.eq(y + p.pad_h - b.th), c.x.eq(x + p.pad_w - b.tw)]
        with m.Else():
            m.d.comb += [c.y.eq((y << step) + b.th - p.pad_h), c.x.eq((x << step) + b.tw - p.pad_w)]
        return c

    def _gathered_operands(self, m, c):
        """Stage D: the gathered row as ``y * src_w + partial`` (a pixel: y, image + x; a stored row:
        0, row), and padding (a pixel outside the source) as a zero word."""
        p, step = self.params, self.params.stride_log2
        pixel = c.gather.matches(Gather.IM2COL, Gather.COL2IM)
        aligned = ~step | (~c.y[0] & ~c.x[0])                   # COL2IM: the tap lands on a strided pixel
        y = Mux(c.gather == Gather.COL2IM, c.y >> step, c.y)
        x = Mux(c.gather == Gather.COL2IM, c.x >> step, c.x)
        inside = (c.y >= 0) & (c.x >= 0) & (y < p.src_h) & (x < p.src_w)
        inside &= (c.gather != Gather.COL2IM) | aligned
        d = Signal(_operands_layout(self.cfg, self.width))
        m.d.comb += [d.request.eq(c.request), d.request.zero.eq(c.request.zero | (pixel & ~inside)),
                     d.column.eq(c.column), d.y.eq(Mux(pixel, y, 0)), d.partial.eq(Mux(pixel, c.image + x, c.row))]
        return d

    def _mode(self, m):
        """The walk's decisions on the operand's mode, registered from the parameters (which settle
        PARAMS_LEAD cycles before ``start``), so no decision starts with a decode of them."""
        p = self.params
        mode = Signal(data.StructLayout({"transposed": 1, "none": 1, "taps_k": 1, "plain_gather": 1,
                                         "block_taps": 1}))
        m.d.sync += [
            mode.transposed.eq(p.transposed),
            mode.none.eq(p.gather == Gather.NONE),
            mode.taps_k.eq(p.transposed & (p.gather == Gather.TAPS)),
            mode.plain_gather.eq(~p.transposed & p.gather.matches(Gather.IM2COL, Gather.COL2IM)),
            mode.block_taps.eq(p.transposed & (p.gather == Gather.IM2COL)),  # tap and word belong to the block
        ]
        return mode

    def _loops(self, m, walker, advance):
        """Stage A: the loop counters; returns the current request's source and whether one is made."""
        cfg, width, p = self.cfg, self.width, self.params
        lanes, dim = cfg.lanes, dim_shape(cfg)
        segments = lanes // width
        active = Signal()
        gather = p.gather
        mode = self._mode(m)
        tr, taps_k, plain_gather, block_taps = mode.transposed, mode.taps_k, mode.plain_gather, mode.block_taps
        # the loops whose last-iteration tests the walk decides on keep them in registers (hw/loop_counter.py)
        outer = LoopCounter(m, dim, bound=p.outer - self.outer_step, step=self.outer_step, name="outer0")
        block = LoopCounter(m, dim, bound=p.rows - width, step=width, name="row0")
        rep = LoopCounter(m, dim, bound=p.repeat - self.rep_step, step=self.rep_step, name="rep0")
        k = LoopCounter(m, dim, bound=Mux(~tr, p.depth - lanes, Mux(taps_k, p.tap_depth - 1, p.depth - 1)),
                        step=Mux(~tr, lanes, 1), exact=taps_k, name="k0")
        row = LoopCounter(m, dim.width + 1, bound=p.rows - 1, step=1, name="row_i")
        row0, k0, row_i = block.value, k.value, row.value
        kblock, cw, tap_column = Signal(dim), Signal(dim), Signal(dim)
        th, tw = Signal(4), Signal(4)
        word = Signal(range(width))
        segment, block_word = Signal(range(max(segments, 2))), Signal(dim)    # transposed: the block's lanes
        wsel = Signal()
        tags = BankTags(m, row0, kblock, row_step=width)

        # the other loops' bounds, registered from the parameters (set up before ``start``): a
        # last-iteration test is then one compare, not an add and a compare
        bound = signed(dim.width + 2)
        last = Signal(data.StructLayout({"tap_word": bound, "kh": 5, "kw": 5, "row_block": bound, "row": bound}))
        m.d.sync += [last.tap_word.eq(p.tap_words - 1), last.kh.eq(p.kh - 1), last.kw.eq(p.kw - 1),
                     last.row_block.eq(p.rows - 1 - width), last.row.eq(p.rows - 1)]

        last_tap = (th == last.kh) & (tw == last.kw)
        last_cw = cw == last.tap_word
        last_k = Mux(plain_gather, last_cw & last_tap, k.last & (~taps_k | last_tap))
        hit = mode.none & (word == 0) & tags.hit(wsel)
        last_word = tr | hit | (word == width - 1) | row.last

        source = Signal(_source_layout(cfg, width))
        request = source.request
        m.d.comb += [
            request.hit.eq(hit), request.word.eq(word), request.last.eq(last_word), request.segment.eq(segment),
            source.gather.eq(gather), source.at.eq(walker.at), source.th.eq(th), source.tw.eq(tw), source.k.eq(k0),
        ]
        with m.Switch(Cat(tr, gather)):
            with m.Case(_mode(0, Gather.NONE)):                       # plain
                m.d.comb += [source.row.eq(row_i), source.column.eq(kblock)]
            with m.Case(_mode(1, Gather.NONE)):                       # transposed
                m.d.comb += [source.row.eq(k0), source.column.eq(block_word)]
            with m.Case(_mode(1, Gather.TAPS)):
                m.d.comb += [source.row.eq(k0), source.column.eq(tap_column + block_word),
                             request.zero.eq(k0 >= p.krows)]
            with m.Default():                                             # IM2COL, COL2IM: the word of the tap
                m.d.comb += source.column.eq(cw)

        produced = active & advance
        with m.If(produced & ~hit & (word == 0) & mode.none):
            tags.record(wsel)

        def next_tap():
            with m.If(tw == last.kw):
                m.d.sync += [tw.eq(0), th.eq(th + 1)]
            with m.Else():
                m.d.sync += tw.eq(tw + 1)

        def restart_k():
            k.restart()
            tags.moved(k=Move.ZERO)
            m.d.sync += [kblock.eq(0), tap_column.eq(0)]
            with m.If(~block_taps):
                m.d.sync += [cw.eq(0), th.eq(0), tw.eq(0)]

        with m.If(self.start):
            m.d.comb += walker.restart.eq(1)
            for counter in (outer, block, rep, k, row):
                counter.restart()
            tags.clear()
            tags.moved(row=Move.ZERO, k=Move.ZERO)
            m.d.sync += [active.eq(1), word.eq(0), segment.eq(0), block_word.eq(0), wsel.eq(0), kblock.eq(0),
                         tap_column.eq(0), cw.eq(0), th.eq(0), tw.eq(0)]
        with m.Elif(produced & ~last_word):                               # the next word of a plain fill
            m.d.comb += walker.step.eq(plain_gather)
            row.step()
            m.d.sync += word.eq(word + 1)
        with m.Elif(produced):                                            # a fill is done
            row.load(row0, row.test(row0, last.row))
            m.d.sync += [word.eq(0), wsel.eq(~wsel)]
            with m.If(~last_k):
                self._next_k(m, mode, walker, k, kblock, cw, tap_column, next_tap, last_cw)
                tags.moved(k=Move.STEP)
            with m.Else():
                restart_k()
                with m.If(~rep.last):
                    m.d.comb += walker.rewind.eq(plain_gather)
                    m.d.comb += walker.restart.eq(block_taps)
                    rep.step()
                with m.Else():
                    rep.restart()
                    with m.If(~block.last):
                        block.step()
                        tags.moved(row=Move.STEP)
                        row.load(row0 + width, row0 >= last.row_block)
                        self._next_block(m, mode, walker, last, segment, block_word, cw, next_tap)
                    with m.Else():
                        m.d.comb += walker.restart.eq(1)
                        block.restart()
                        tags.moved(row=Move.ZERO)
                        row.restart()
                        m.d.sync += [segment.eq(0), block_word.eq(0), cw.eq(0), th.eq(0), tw.eq(0)]
                        with m.If(outer.last):
                            m.d.sync += active.eq(0)
                        with m.Else():
                            outer.step()
        return source, produced

    def _next_k(self, m, mode, walker, k, kblock, cw, tap_column, next_tap, last_cw):
        """The next K position of the same block and rep."""
        p = self.params
        m.d.sync += kblock.eq(kblock + 1)
        with m.If(~mode.transposed):                                      # plain: the next K block
            k.step()
            m.d.comb += walker.rewind.eq(mode.plain_gather)
            with m.If(mode.plain_gather):
                with m.If(last_cw):
                    m.d.sync += cw.eq(0)
                    next_tap()
                with m.Else():
                    m.d.sync += cw.eq(cw + 1)
        with m.Elif(mode.taps_k):                                         # (tap, o): the next o, then tap
            with m.If(k.last):
                k.restart()
                m.d.sync += tap_column.eq(tap_column + p.tap_words)
                next_tap()
            with m.Else():
                k.step()
        with m.Else():                                                    # the next k (IM2COL: pixel)
            k.step()
            m.d.comb += walker.step.eq(mode.block_taps)

    def _next_block(self, m, mode, walker, last, segment, block_word, cw, next_tap):
        """The next block of W rows (plain) or lanes (transposed); the caller steps the row counters."""
        segments = self.cfg.lanes // self.width
        wrap = segment == segments - 1
        m.d.sync += [segment.eq(Mux(wrap, 0, segment + 1)), block_word.eq(block_word + wrap)]
        with m.If(~mode.transposed):
            m.d.comb += walker.advance.eq(1)
        with m.Elif(mode.block_taps):                                     # the lanes' (tap, word) of X
            m.d.comb += walker.restart.eq(1)
            with m.If(cw == last.tap_word):
                m.d.sync += cw.eq(0)
                next_tap()
            with m.Else():
                m.d.sync += cw.eq(cw + 1)
