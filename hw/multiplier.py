"""RegisteredMultiplier: a signed product with registered operands and a registered result."""

import operator
from functools import reduce

from amaranth import ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: Operand width of the ECP5's MULT18X18D.
DSP_BITS = 18


class RegisteredMultiplier(wiring.Component):
    """``p`` = ``a`` * ``b`` (signed) of the operands presented :data:`LATENCY` cycles before.

    Operands and product are registered without reset, enabled by ``en``
    (1 unless driven; a stalling pipeline drives its ``advance``), so the
    same registers exist on every target: on an ECP5 (``platform.family ==
    "ecp5"``) a MULT18X18D with its own input and output registers enabled
    (REG_INPUTA_CLK, REG_INPUTB_CLK, REG_OUTPUT_CLK; nextpnr times the
    registered DSP as a pipeline stage of its own instead of a combinational
    multiply between fabric flip-flops), elsewhere (simulation, other
    FPGAs) two register stages in logic around a ``*``.  With ``in_logic``
    the product is a sum of shifted partial products between the same two
    register stages on every target, which yosys maps to LUTs and carry
    chains, not to a MULT18X18D: for the small size and address products
    where DSPs are short (``CoreConfig.logic_product_area``).  A result is
    meaningful only for operands that were meant: the caller delays its own
    valid flags beside it.
    """

    #: Cycles from the operands to their product on ``p``.
    LATENCY = 2

    def __init__(self, *, a_bits: int, b_bits: int, in_logic: bool = False):
        if max(a_bits, b_bits) > DSP_BITS:
            raise ValueError(f"operands of {a_bits} and {b_bits} bits: at most {DSP_BITS} (one MULT18X18D)")
        self.a_bits, self.b_bits, self.in_logic = a_bits, b_bits, in_logic
        super().__init__({
            "a": In(signed(a_bits)),
            "b": In(signed(b_bits)),
            "p": Out(signed(a_bits + b_bits)),
            "en": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "family", None) == "ecp5" and not self.in_logic:
            self._ecp5(m)
            return m
        a, b = Signal.like(self.a, reset_less=True), Signal.like(self.b, reset_less=True)
        p = Signal.like(self.p, reset_less=True)
        with m.If(self.en):
            m.d.sync += [a.eq(self.a), b.eq(self.b), p.eq(shift_add_product(a, b) if self.in_logic else a * b)]
        m.d.comb += self.p.eq(p)
        return m

    def _ecp5(self, m):
        wide_a = Signal(signed(DSP_BITS))               # the operands sign-extended to the DSP's width
        wide_b = Signal(signed(DSP_BITS))
        product = Signal(2 * DSP_BITS)
        m.d.comb += [wide_a.eq(self.a), wide_b.eq(self.b), self.p.eq(product[:len(self.p)])]
        ports = {f"i_A{i}": wide_a[i] for i in range(DSP_BITS)}
        ports.update({f"i_B{i}": wide_b[i] for i in range(DSP_BITS)})
        ports.update({f"i_C{i}": Const(0) for i in range(DSP_BITS)})
        ports.update({f"o_P{i}": product[i] for i in range(2 * DSP_BITS)})
        ports.update({f"i_{pin}{i}": Const(0) for pin in ("CE", "RST", "CLK") for i in range(1, 4)})
        m.submodules.dsp = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED", p_GSR="DISABLED", p_RESETMODE="SYNC",
            p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
            i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
            i_CLK0=ClockSignal(), i_CE0=self.en, i_RST0=Const(0),
            **ports,
        )


def shift_add_product(a, b):
    """``a`` x ``b`` (both signed) as the sum of ``a`` shifted by each set bit of ``b``, the sign bit's
    term subtracted (two's complement), added in a balanced tree: a product yosys does not map to a DSP."""
    top = len(b) - 1
    terms = [Mux(b[i], a << i, 0) for i in range(top)] + [Mux(b[top], -(a << top), 0)]
    while len(terms) > 1:
        terms = [reduce(operator.add, terms[i:i + 2]) for i in range(0, len(terms), 2)]
    return terms[0]


def size_multiplier(cfg, *, a_bits: int, b_bits: int) -> RegisteredMultiplier:
    """A RegisteredMultiplier for a size or address product (not the MAC array's): in LUTs where
    ``cfg`` puts products of its operand widths there (``CoreConfig.product_in_logic``)."""
    return RegisteredMultiplier(a_bits=a_bits, b_bits=b_bits, in_logic=cfg.product_in_logic(a_bits, b_bits))


def registered_product(m: Module, cfg, a, b, *, name: str):
    """``a`` x ``b`` of two unsigned values, :attr:`RegisteredMultiplier.LATENCY` cycles later: a
    :func:`size_multiplier` added to ``m`` as ``name``, its product unsigned in ``len(a) + len(b)`` bits."""
    m.submodules[name] = multiplier = size_multiplier(cfg, a_bits=len(a) + 1, b_bits=len(b) + 1)
    m.d.comb += [multiplier.a.eq(a), multiplier.b.eq(b)]
    return multiplier.p.as_unsigned()[:len(a) + len(b)]
