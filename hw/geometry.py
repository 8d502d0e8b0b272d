"""The geometry of CONV, POOL and UNPOOL in gateware: the key field's layout and what follows from it.

golden_model/geometry.py defines the fields (KEY_FIELDS) and the sizes; the
functions here build the same sizes as Amaranth expressions for the decoder,
the checker and the engines.  Divisions are shifts: the stride is 1 or 2 and
a pooling window's sides are powers of two.
"""

from amaranth import Mux, unsigned
from amaranth.lib import data

from golden_model.geometry import KEY_FIELDS


def key_layout() -> data.StructLayout:
    """The 32-bit key field of a geometry instruction (golden_model.geometry.KEY_FIELDS)."""
    fields, position = {}, 0
    for name, (low, width) in sorted(KEY_FIELDS.items(), key=lambda item: item[1][0]):
        assert low == position, f"geometry fields must tile the key: {name} at {low}, expected {position}"
        fields[name] = unsigned(width)
        position += width
    assert position == 32
    return data.StructLayout(fields)


def out_height(g):
    return ((g.height + 2 * g.pad_h - g.kh) >> g.stride_log2) + 1


def out_width(g):
    return ((g.width + 2 * g.pad_w - g.kw) >> g.stride_log2) + 1


def window_fits(g):
    """The kernel fits the padded image (Ho, Wo >= 1)."""
    return (g.height + 2 * g.pad_h >= g.kh) & (g.width + 2 * g.pad_w >= g.kw)


def fields_set(g):
    """Every size field is nonzero."""
    return (g.batch != 0) & (g.height != 0) & (g.width != 0) & (g.kh != 0) & (g.kw != 0)


def power_of_two(x):
    return (x != 0) & ((x & (x - 1)) == 0)


def log2(x):
    """log2 of a power of two (a priority encoder)."""
    result = 0
    for bit in range(len(x)):
        result = Mux(x[bit], bit, result)
    return result


def pool_ok(g):
    """The window tiles the image with a power-of-two area: no padding, stride field 1."""
    return (power_of_two(g.kh) & power_of_two(g.kw) & ((g.height & (g.kh - 1)) == 0)
            & ((g.width & (g.kw - 1)) == 0) & (g.pad_h == 0) & (g.pad_w == 0) & (g.stride_log2 == 0))


def pool_shape(g):
    """(Ho, Wo, log2 of the window's area) of a pooling geometry."""
    shift_h, shift_w = log2(g.kh), log2(g.kw)
    return g.height >> shift_h, g.width >> shift_w, shift_h + shift_w


def legal(g, pool):
    """The key is a geometry the opcode takes (isa.illegal: ILLEGAL_INSTRUCTION otherwise); ``pool`` (a
    value) says the opcode pools."""
    return fields_set(g) & window_fits(g) & (~pool | pool_ok(g))

