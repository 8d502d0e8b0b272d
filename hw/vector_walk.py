"""VectorWalk: the words the vector engine reads and writes, one per cycle, in a fixed-latency pipeline.

Three walks (golden ``Machine._scale`` ... ``_unpool``; golden_model/geometry.py for the pool layout):

    LINEAR   every word of A in order (the element-wise ops); B's word at the same offset, or
             B's first word for a 1x1 B; one word per output word
    POOL     for each pooled pixel and each word of its channels, the window's KH*KW words of A,
             summed into one ACC word (``first`` .. ``last`` of a group)
    UNPOOL   for each pixel of dst and each word, the word of A's pooled pixel that covers it

Each request carries the A and B addresses, the output word (an offset from the ACC base or
from dst's base), the part of the word the engine's ``unit_width`` lanes take (hw/word_parts.py:
every word is requested once per part, the parts innermost), that part's valid lanes and the
group flags (``last`` ends each part's group, ``final`` only the last part of the walk).  The
walk is registered in stages (counters, the source row, the address; each product in a registered
multiplier): ``o`` follows ``start`` by a fixed latency with no back-pressure, and ``busy`` stays high
until the last request has left.
"""

import enum

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .delay import delayed
from .geometry import key_layout, log2, pool_shape
from .interfaces import dim_shape, tensor_layout, tmem_addr_shape
from .multiplier import RegisteredMultiplier, size_multiplier
from .pixel_walker import GEOMETRY_BITS, PixelWalker
from .word_parts import part_count, part_counter, part_shape


class Walk(enum.IntEnum):
    LINEAR = 0
    POOL = 1
    UNPOOL = 2


def walk_request_layout(cfg: CoreConfig) -> data.StructLayout:
    return data.StructLayout({"a_addr": tmem_addr_shape(cfg), "b_addr": tmem_addr_shape(cfg),
                              "out": tmem_addr_shape(cfg), "part": part_shape(cfg), "count": range(cfg.unit_width + 1),
                              "first": 1, "last": 1, "final": 1})


class VectorWalk(wiring.Component):
    """``start`` with the operands and ``words``, the output words (all held until ``busy`` falls) ->
    one request per cycle on ``o``.  The key's image size goes through a registered multiplier:
    hold the key ``RegisteredMultiplier.LATENCY`` cycles before ``start``."""

    #: Cycles from the counters to ``o``: the counters' register, the source row's operands, their
    #: product, the row, the row times A's stride, the address.
    LATENCY = 1 + 1 + RegisteredMultiplier.LATENCY + 1 + RegisteredMultiplier.LATENCY + 1

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "start": In(1), "walk": In(Walk), "a": In(tensor_layout(cfg)), "b": In(tensor_layout(cfg)),
            "key": In(32), "words": In(tmem_addr_shape(cfg).width + 1),
            "busy": Out(1),
            "o": Out(wiring.Signature({"valid": Out(1), "payload": Out(walk_request_layout(cfg))})),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.cfg, self.cfg.lanes
        dim = dim_shape(cfg)
        a, b = self.a, self.b
        g = key_layout()(self.key)
        pool_h, pool_w, _ = pool_shape(g)
        shift_h, shift_w = log2(g.kh), log2(g.kw)
        m.submodules.walker = walker = PixelWalker(cfg)
        pooling = self.walk == Walk.POOL
        m.submodules.image_product = image_product = size_multiplier(cfg, a_bits=GEOMETRY_BITS + 1,
                                                                          b_bits=GEOMETRY_BITS + 1)
        m.d.comb += [walker.height.eq(Mux(pooling, pool_h, g.height)),
                     walker.width.eq(Mux(pooling, pool_w, g.width)),
                     image_product.a.eq(Mux(pooling, g.height, pool_h)),
                     image_product.b.eq(Mux(pooling, g.width, pool_w)),
                     walker.image_rows.eq(image_product.p)]

        # ---- stage 1: the counters ----
        active = Signal()
        off, cw, th, tw = Signal(tmem_addr_shape(cfg)), Signal(dim), Signal(4), Signal(4)
        remaining = Signal(dim)                          # columns of the row from word cw on
        out = Signal(tmem_addr_shape(cfg).width + 1)             # the output word
        part, last_part = part_counter(m, cfg, restart=self.start, advance=active)   # the counters hold
        window_done = (th + 1 == g.kh) & (tw + 1 == g.kw)
        group_last = Mux(pooling, window_done, 1)
        final = group_last & (out + 1 == self.words) & last_part

        s1 = Signal(data.StructLayout({"valid": 1, "request": walk_request_layout(cfg), "y": 7, "x": 7,
                                       "image": dim, "th": 4, "tw": 4, "cw": dim, "off": tmem_addr_shape(cfg)}))
        m.d.sync += [s1.valid.eq(active), s1.y.eq(walker.at.y), s1.x.eq(walker.at.x), s1.image.eq(walker.at.image),
                     s1.th.eq(th), s1.tw.eq(tw), s1.cw.eq(cw), s1.off.eq(off),
                     s1.request.b_addr.eq(b.base + Mux((b.rows == 1) & (b.cols == 1), 0, off)),
                     s1.request.out.eq(out), s1.request.part.eq(part),
                     s1.request.count.eq(part_count(cfg, Mux(remaining > lanes, lanes, remaining), part)),
                     s1.request.first.eq((th == 0) & (tw == 0)), s1.request.last.eq(group_last),
                     s1.request.final.eq(final)]
        with m.If(self.start | last_part):
            self._step(m, walker, active, off, cw, th, tw, remaining, out, window_done, final, g)

        # ---- stage 2: the source row of A (its pixel, for POOL and UNPOOL) as y * width + partial ----
        s2 = Signal(data.StructLayout({"request": walk_request_layout(cfg), "y": 10, "partial": dim,
                                       "cw": dim, "off": tmem_addr_shape(cfg)}))
        m.d.sync += [s2.request.eq(s1.request), s2.cw.eq(s1.cw), s2.off.eq(s1.off),
                     s2.y.eq(Mux(pooling, (s1.y << shift_h) + s1.th, s1.y >> shift_h)),
                     s2.partial.eq(s1.image + Mux(pooling, (s1.x << shift_w) + s1.tw, s1.x >> shift_w))]
        m.submodules.row_product = row_product = size_multiplier(cfg, a_bits=11, b_bits=GEOMETRY_BITS + 1)
        m.d.comb += [row_product.a.eq(s2.y), row_product.b.eq(Mux(pooling, g.width, pool_w))]
        s3 = delayed(m, s2, RegisteredMultiplier.LATENCY, name="s3")
        s4 = Signal(data.StructLayout({"request": walk_request_layout(cfg), "row": dim, "cw": dim,
                                       "off": tmem_addr_shape(cfg)}))
        m.d.sync += [s4.request.eq(s3.request), s4.cw.eq(s3.cw), s4.off.eq(s3.off),
                     s4.row.eq(s3.partial + row_product.p)]

        # ---- stage 3: the address ----
        dim_bits = dim.width
        m.submodules.address_product = address_product = size_multiplier(cfg, a_bits=dim_bits + 1,
                                                                              b_bits=dim_bits + 1)
        m.d.comb += [address_product.a.eq(s4.row), address_product.b.eq(a.stride)]
        s5 = delayed(m, s4, RegisteredMultiplier.LATENCY, name="s5")
        gathered = a.base + address_product.p + s5.cw
        m.d.sync += [self.o.payload.eq(s5.request),
                     self.o.payload.a_addr.eq(Mux(self.walk == Walk.LINEAR, a.base + s5.off, gathered))]
        valids = [s1.valid]
        for i in range(self.LATENCY - 1):
            valids.append(Signal(name=f"valid_{i}"))
            m.d.sync += valids[-1].eq(valids[-2])
        m.d.comb += [self.o.valid.eq(valids[-1]), self.busy.eq(active | Cat(*valids).any())]
        return m

    def _step(self, m, walker, active, off, cw, th, tw, remaining, out, window_done, final, g):
        """Stage 1's counters: the next word, tap, pixel."""
        a, lanes = self.a, self.cfg.lanes
        pooling = self.walk == Walk.POOL
        with m.If(self.start):
            m.d.comb += walker.restart.eq(1)
            m.d.sync += [active.eq(1), off.eq(0), cw.eq(0), th.eq(0), tw.eq(0), remaining.eq(a.cols), out.eq(0)]
        with m.Elif(active):
            with m.If(final):
                m.d.sync += active.eq(0)
            with m.If(pooling & ~window_done):                  # the next tap of the window, same word
                with m.If(tw + 1 == g.kw):
                    m.d.sync += [tw.eq(0), th.eq(th + 1)]
                with m.Else():
                    m.d.sync += tw.eq(tw + 1)
            with m.Else():                                       # the next word
                m.d.sync += [th.eq(0), tw.eq(0), off.eq(off + 1), out.eq(out + 1)]
                with m.If(cw + 1 == a.stride):                   # the row's last word: the next pixel
                    m.d.comb += walker.step.eq(1)
                    m.d.sync += [cw.eq(0), remaining.eq(a.cols)]
                with m.Else():
                    m.d.sync += [cw.eq(cw + 1), remaining.eq(remaining - lanes)]
