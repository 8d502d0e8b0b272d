"""Checker: an instruction's checks in the opcode table's order, on pipeline registers.

Every rule of golden_model.isa.CHECK_RULES is one registered condition
("the rule fails"), computed from the tensor-table entries and the decoder's
outputs; ``error`` is the status of the first failing check of the
instruction's row in golden_model.isa.OPS (ILLEGAL_INSTRUCTION before all),
so the core reports the golden machine's status code.  The rules compare
sizes derived in register stages (:meth:`Checker.sizes`): the inputs (the
decoder's ACC shape and geometry facts) and every operand's words per row
registered; the products (the padded taps, the ACC's and the data set's
words) on registered multipliers fed from those registers (a MULT18X18D
with its own registers on the ECP5); each operand's end (its base plus its
span) from the decoder, which computes it for the issue record in the same
stages; then the rules
themselves; then ``error``, the first failing rule's status, registered (the
opcode's check list is a priority multiplexer: unregistered, it ran from the
instruction register into the sequencer's state), so no path holds a multiply
between fabric flip-flops or more than one add or compare.
:func:`checker_inputs` wires a decoder to it.
``invalidate`` (a new instruction, an exponent write-back, an issue, an
engine finishing) restarts a ``LATENCY``-cycle ``settle`` count, and
``error`` is meaningful once ``settled``.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import CHECK_RULES, OPS, STRICT_FLAGS, Status, status_bits

from .decoder import Decoder, geometry_facts_layout, holds, operand_ends_layout, stride, wide_exp_shape
from .interfaces import dim_shape, instruction_layout, table_entry_layout
from .multiplier import RegisteredMultiplier, registered_product


def checker_inputs(decoder: Decoder, checker: "Checker", acc) -> list:
    """The assignments that feed ``checker`` from ``decoder`` (both given the same instruction and
    entries) and the ACC state ``acc`` (rows, cols, exp)."""
    return [checker.acc.rows.eq(acc.rows), checker.acc.cols.eq(acc.cols), checker.acc_exp.eq(acc.exp),
            checker.produced.rows.eq(decoder.produced.rows), checker.produced.cols.eq(decoder.produced.cols),
            checker.produced_words.eq(decoder.produced_words),
            checker.inner_a.eq(decoder.inner_a), checker.inner_b.eq(decoder.inner_b),
            checker.dst_exp.eq(decoder.dst_exp), checker.geometry.eq(decoder.geometry), checker.ends.eq(decoder.ends)]


class Checker(wiring.Component):
    #: register stages from the decoder's facts to ``error``: the inputs, a registered multiplier's two (its
    #: operands are the registered inputs, so no decode or carry runs into a MULT18X18D), the rules, ``error``
    STAGES = 1 + RegisteredMultiplier.LATENCY + 2
    #: cycles from a latched instruction to a meaningful ``error``: the decoder's facts, then the stages
    LATENCY = Decoder.LATENCY + STAGES
    #: cycles from the table entries to ``error``: the decoder's operand ends or a registered product of their
    #: sizes, then the rules and ``error``
    ENTRY_LATENCY = max(Decoder.RANGE_LATENCY, Decoder.WORDS_LATENCY + 1 + RegisteredMultiplier.LATENCY) + 2
    assert Decoder.EXP_LATENCY + 2 <= LATENCY, "the decoder's exponents would reach the rules late"
    assert ENTRY_LATENCY <= LATENCY, "entries given with the instruction would reach the rules late"

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        entry = table_entry_layout(cfg)
        shape = data.StructLayout({"rows": dim_shape(cfg), "cols": dim_shape(cfg)})
        super().__init__({
            "inst": In(instruction_layout()),
            "dst": In(entry), "a": In(entry), "b": In(entry),
            "acc": In(shape), "produced": In(shape), "produced_words": In(dim_shape(cfg)),
            "inner_a": In(dim_shape(cfg)), "inner_b": In(dim_shape(cfg)),
            "dst_exp": In(wide_exp_shape(cfg)),
            "acc_exp": In(wide_exp_shape(cfg)),
            "geometry": In(geometry_facts_layout(cfg)),
            "ends": In(operand_ends_layout(cfg)),
            "invalidate": In(1),
            "error": Out(status_bits()),
            "settled": Out(1),
        })

    def sizes(self, m=None) -> dict:
        """The sizes the rules compare, registered when ``m`` is given (combinational without it):
        "produced", "geometry" (the inputs), "stride:<x>" (words per row of x: dst, a, b and the produced
        ACC, the last the decoder's ``produced_words``), "set_end" (a data set's end sample), each a
        register stage; the products "padded:<x>" (taps x Cp of x's channels), "acc_words" and
        "data_words" from registered multipliers on those registered sizes (one stage, then
        RegisteredMultiplier.LATENCY); "end:<x>" (one past x's last TMEM word) is the decoder's (``ends``,
        Decoder.RANGE_LATENCY after the entries), or its base plus span without ``m``."""
        cfg = self.cfg

        def stage(value, name):
            if m is None:
                return value
            registered = Signal(value.shape(), name="size_" + name)
            m.d.sync += registered.eq(value)
            return registered

        def product(a, b, name):
            return a * b if m is None else registered_product(m, self.cfg, a, b, name=name)

        entries = {"dst": self.dst, "a": self.a, "b": self.b}
        inputs = {"produced": self.produced, "geometry": self.geometry,
                  "set_end": self.inst.key[:16] + self.inst.key[16:],
                  "stride:produced": self.produced_words}
        for name, x in entries.items():
            inputs[f"stride:{name}"] = stride(cfg, x.cols)
        lanes_log2 = cfg.lanes.bit_length() - 1
        sizes = {name: stage(value, name.replace(":", "_")) for name, value in inputs.items()}
        sizes["acc_words"] = product(sizes["produced"].rows, sizes["stride:produced"], "acc_words")
        sizes["data_words"] = product(sizes["set_end"], sizes["stride:dst"], "data_words")
        for name in ("dst", "a"):
            taps_cp = product(sizes["geometry"].taps, sizes[f"stride:{name}"], f"padded_{name}")
            sizes[f"padded:{name}"] = taps_cp << lanes_log2
        for name, x in entries.items():
            sizes[f"end:{name}"] = x.base + x.rows * inputs[f"stride:{name}"] if m is None else getattr(self.ends, name)
        return sizes

    def rules(self, sizes=None) -> dict:
        """CHECK_RULES name -> the Amaranth condition that the rule fails (over :meth:`sizes`)."""
        cfg, dst, a, b = self.cfg, self.dst, self.a, self.b
        s = self.sizes() if sizes is None else sizes
        g = s["geometry"]
        limit = cfg.max_dim
        exp_limit = 1 << (cfg.exp_bits - 1)

        def dims_bad(x):
            return (x.rows == 0) | (x.cols == 0) | (x.rows > limit) | (x.cols > limit)

        def same(x, y):
            return (x.rows == y.rows) & (x.cols == y.cols)

        def scalar(x):
            return (x.rows == 1) & (x.cols == 1)

        ends = {"dst": s["end:dst"], "a": s["end:a"], "b": s["end:b"]}

        entries = {"dst": dst, "a": a, "b": b}

        def partly_overlaps(x, y):
            """Slots x and y (names) share words but do not start together."""
            return (entries[x].base != entries[y].base) & (entries[x].base < ends[y]) & (entries[y].base < ends[x])

        inst = self.inst
        conv_fails = Mux(inst.f0, (a.rows != g.out_rows) | (b.rows != g.in_rows),
                         Mux(inst.f1, (a.rows != g.out_rows) | (a.cols != b.rows) | (dst.rows != g.in_rows)
                             | (b.cols != s["padded:dst"]),
                             (a.rows != g.in_rows) | (b.cols != s["padded:a"])))
        set_count = inst.key[16:]
        data_fails = (set_count == 0) | (s["set_end"] > cfg.data_samples) | (s["data_words"] > cfg.data_words)
        fails = {"inner": self.inner_a != self.inner_b, "b_scalar": ~scalar(b),
                 "ab_or_b_scalar": ~same(a, b) & ~scalar(b), "ab": ~same(a, b),
                 "dst_ab": ~same(a, b) | ~same(dst, a), "dst_a": ~same(dst, a),
                 "dst_acc": ~same(dst, self.acc), "b_acc": ~same(b, self.acc),
                 "acc_fits": s["acc_words"] > cfg.acc_words,
                 "overlap:dst,a": partly_overlaps("dst", "a"), "overlap:dst,b": partly_overlaps("dst", "b"),
                 "disjoint:dst,a": (dst.base < ends["a"]) & (a.base < ends["dst"]),
                 "conv": conv_fails, "pool": a.rows != g.in_rows,
                 "unpool": (a.rows != g.pool_rows) | (dst.rows != g.in_rows) | (dst.cols != a.cols),
                 "exp_fits": (self.dst_exp < -exp_limit) | (self.dst_exp >= exp_limit),
                 "frozen": dst.exp < self.acc_exp,
                 "loss": (b.rows != a.rows) | (b.cols != 1) | (a.cols > cfg.max_features),
                 "labels": dst.cols != 1, "data_fits": data_fails}
        for name, x in entries.items():
            fails[f"dims:{name}"] = dims_bad(x)
            fails[f"extent:{name}"] = ends[name] > cfg.tmem_words
        assert set(fails) == set(CHECK_RULES), f"rules without a gateware condition: {set(CHECK_RULES) ^ set(fails)}"
        return fails

    def elaborate(self, platform):
        m = Module()
        inst = self.inst
        sizes = self.sizes(m)
        failed = {}
        for name, condition in self.rules(sizes).items():
            failed[name] = Signal(name="fails_" + name.replace(":", "_").replace(",", "_"))
            m.d.sync += failed[name].eq(condition)

        illegal_geometry = Signal()
        m.d.sync += illegal_geometry.eq(~sizes["geometry"].legal)
        error = Signal.like(self.error)
        m.d.sync += self.error.eq(error)
        with m.Switch(inst.opcode):
            for op, spec in OPS.items():
                with m.Case(op):
                    for check in reversed(spec.checks):            # the first failing check wins
                        with m.If(failed[check.rule] & holds(check.when, inst)):
                            m.d.comb += error.eq(check.status)
                    refused = [getattr(inst, flag) for flag in STRICT_FLAGS if flag not in spec.fields]
                    refused += [holds(condition, inst) for condition in spec.illegal]
                    if spec.geometry is not None:
                        refused.append(illegal_geometry)
                    if refused:
                        with m.If(Cat(*refused).any()):
                            m.d.comb += error.eq(Status.ILLEGAL_INSTRUCTION)
            with m.Default():
                m.d.comb += error.eq(Status.ILLEGAL_INSTRUCTION)

        settle = Signal(range(self.LATENCY + 1))
        with m.If(self.invalidate):
            m.d.sync += settle.eq(self.LATENCY)
        with m.Elif(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        m.d.comb += self.settled.eq(settle == 0)
        return m
