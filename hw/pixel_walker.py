"""PixelWalker: the pixels of a batch of images, one per step, in tensor row order.

A convolution's operand feeders walk pixels (the output pixels whose taps
they gather, or the input pixels whose error they collect) in the order of
the tensor's rows, row = (b*H + y)*W + x.  The walker keeps (b, y, x) and
``image``, the first row of image b in the *source* tensor (b times the
source image's pixel count), so the gather address needs no division and one
multiplication (golden_model/geometry.py).

Operations (one per cycle, ``restart`` first): ``restart`` goes to pixel 0
and sets the mark there; ``step`` goes to the next pixel; ``rewind`` goes
back to the mark; ``advance`` steps and moves the mark to the new position
(the first pixel of the next block).  ``height``/``width`` are the walked
grid's dimensions, ``image_rows`` the source rows per image; all are held
while the walk runs.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .interfaces import dim_shape

GEOMETRY_BITS = 7            # height and width of an image (golden_model.geometry.KEY_FIELDS)


def position_layout(cfg: CoreConfig) -> data.StructLayout:
    return data.StructLayout({"y": GEOMETRY_BITS, "x": GEOMETRY_BITS, "image": dim_shape(cfg)})


class PixelWalker(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "height": In(GEOMETRY_BITS), "width": In(GEOMETRY_BITS), "image_rows": In(dim_shape(cfg)),
            "restart": In(1), "step": In(1), "rewind": In(1), "advance": In(1),
            "at": Out(position_layout(self.cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        at, mark = self.at, Signal(position_layout(self.cfg))
        following = Signal(position_layout(self.cfg))
        last_x = at.x + 1 == self.width
        last_y = at.y + 1 == self.height
        m.d.comb += following.eq(at)
        with m.If(~last_x):
            m.d.comb += following.x.eq(at.x + 1)
        with m.Else():
            m.d.comb += following.x.eq(0)
            with m.If(~last_y):
                m.d.comb += following.y.eq(at.y + 1)
            with m.Else():
                m.d.comb += [following.y.eq(0), following.image.eq(at.image + self.image_rows)]
        # a mux chain rather than If/Elif: a walker whose unused operations are tied to 0 then elaborates
        # without overlapping case patterns
        moving = self.advance | self.step
        m.d.sync += [
            at.as_value().eq(Mux(self.restart, 0, Mux(moving, following.as_value(),
                                                       Mux(self.rewind, mark.as_value(), at.as_value())))),
            mark.as_value().eq(Mux(self.restart, 0, Mux(self.advance, following.as_value(), mark.as_value()))),
        ]
        return m
