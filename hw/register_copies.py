"""RegisterCopies: one register duplicated so that each copy drives a share of a wide fan-out."""

from amaranth import ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


class RegisterCopies(wiring.Component):
    """``o[k]`` = ``i`` one cycle later, for ``k`` < ``copies``; reset to 0.

    A control that reaches every accumulator of the MAC array would be one
    flip-flop with thousands of loads and the longest route of the design.
    Copies split the load, but synthesis merges flip-flops with the same
    input (yosys' opt_merge), which would undo them: on an ECP5
    (``platform.family == "ecp5"``) each bit of each copy is a TRELLIS_FF
    marked ``keep`` (synchronous reset, as Amaranth's registers), elsewhere
    (simulation) plain registers with the same values.
    """

    def __init__(self, width: int, *, copies: int):
        self.width, self.copies = width, copies
        super().__init__({
            "i": In(width),
            "o": Out(data.ArrayLayout(width, copies)),
        })

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "family", None) != "ecp5":
            m.d.sync += [copy.eq(self.i) for copy in self.o]
            return m
        for k in range(self.copies):
            q = Signal(self.width, name=f"copy{k}")
            m.d.comb += self.o[k].eq(q)
            for bit in range(self.width):
                m.submodules[f"ff{k}_{bit}"] = Instance(
                    "TRELLIS_FF", a_keep=1,
                    p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR", p_REGSET="RESET",
                    p_SRMODE="LSR_OVER_CE",
                    i_CLK=ClockSignal(), i_LSR=ResetSignal(), i_DI=self.i[bit], o_Q=q[bit])
        return m
