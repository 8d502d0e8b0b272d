"""AccumulateAdder: a MAC's next partial sum, the clear and the fire gated inside the carry chain's LUTs."""

from amaranth import Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: A CCU2C half's LUT4 on (A, B, C, D) = (acc bit, clear, p bit, fire): (A & ~B) ^ (C & D), the sum's
#: propagate; its low quarter (C = D = 0) is A & ~B, the generate the carry logic reads when propagate is 0.
GATED_SUM_INIT = Const(0xD222, 16)


class AccumulateAdder(wiring.Component):
    """``total`` = (``clear`` ? 0 : ``acc``) + (``fire`` ? ``p`` : 0), combinational; ``p`` sign-extended.

    The MAC array's accumulate: a PE keeps ``acc`` <= ``total`` every cycle
    (neither strobe: ``acc`` unchanged).  Inferred, the two gates are a LUT4
    per bit in front of the carry chain (48 of a PE's LUT4 for a 32-bit sum of
    16-bit products).  On an ECP5 (``platform.family == "ecp5"``) the chain is
    instantiated: each CCU2C half takes the accumulator bit, ``clear``, the
    product bit and ``fire`` on its four LUT inputs and computes the gated
    operands' propagate itself (:data:`GATED_SUM_INIT`), so the gates cost no
    LUT.  tests/test_vendor_cells.py proves the two forms equal with yosys'
    CCU2C model.
    """

    def __init__(self, *, acc_bits: int, p_bits: int):
        if not 1 <= p_bits <= acc_bits:
            raise ValueError(f"the product's {p_bits} bits must fit the accumulator's {acc_bits}")
        self.acc_bits, self.p_bits = acc_bits, p_bits
        super().__init__({
            "acc": In(signed(acc_bits)),
            "p": In(signed(p_bits)),
            "clear": In(1),
            "fire": In(1),
            "total": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "family", None) != "ecp5":
            m.d.comb += self.total.eq(Mux(self.clear, 0, self.acc) + Mux(self.fire, self.p, 0))
            return m
        p = Signal(signed(self.acc_bits))                  # sign-extended: the high halves take p's sign bit
        total = Signal(2 * ((self.acc_bits + 1) // 2))
        acc = Signal(len(total))
        m.d.comb += [p.eq(self.p), acc.eq(self.acc), self.total.eq(total)]
        carry = Const(0)
        for cell, bit in enumerate(range(0, len(total), 2)):
            cout = Signal(name=f"carry{cell}")
            halves = {}
            for half in (0, 1):
                i = bit + half
                p_bit = p[min(i, self.acc_bits - 1)]
                halves.update({f"i_A{half}": acc[i], f"i_B{half}": self.clear, f"i_C{half}": p_bit,
                               f"i_D{half}": self.fire, f"o_S{half}": total[i]})
            m.submodules[f"ccu{cell}"] = Instance(
                "CCU2C", p_INIT0=GATED_SUM_INIT, p_INIT1=GATED_SUM_INIT, p_INJECT1_0="NO", p_INJECT1_1="NO",
                i_CIN=carry, o_COUT=cout, **halves)
            carry = cout
        return m
