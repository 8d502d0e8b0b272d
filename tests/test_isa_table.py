"""The opcode table (golden_model.isa.OPS) is complete and every party implements it."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment

from golden_model import isa
from golden_model.config import get_config
from golden_model.isa import (ACC_EXPONENTS, ACC_SHAPES, CHECK_RULES, DST_EXPONENTS, FIELDS, OPS, PORTS, Acc, Op,
                              Status)
from golden_model.machine import SEMANTICS, Machine
from hw.checker import Checker
from hw.core import ENGINE_PORTS, PORT_MAP

CFG = get_config("small4x4")


def test_every_opcode_has_a_row_and_every_executable_one_has_semantics():
    assert set(OPS) == set(Op)
    assert set(SEMANTICS) == {op for op, spec in OPS.items() if spec.engine is not None}


@pytest.mark.parametrize("op", list(Op))
def test_row_names_only_defined_rules(op):
    spec = OPS[op]
    for check in spec.checks:
        assert check.rule in CHECK_RULES and isinstance(check.status, Status)
        assert all(field in spec.fields for field, _ in check.when)
    assert set(spec.ports) <= set(PORTS)
    assert (spec.acc_shape in ACC_SHAPES) == (spec.acc is Acc.PRODUCES)
    assert (spec.acc_exp in ACC_EXPONENTS) == (spec.acc is Acc.PRODUCES)
    assert spec.dst_exp is None or spec.dst_exp in DST_EXPONENTS
    assert set(spec.fields) <= set(FIELDS) - {"opcode"}
    assert "f4" not in spec.fields or ("key" in spec.fields and spec.geometry is None)
    for read in spec.reads:
        assert read.slot in spec.fields or read.slot == "dst"
        assert all(field in spec.fields for field, _ in read.when)
    for condition in spec.illegal:
        assert all(field in spec.fields for field, _ in condition)
    assert spec.geometry in (None, "conv", "pool") and (spec.geometry is None or "key" in spec.fields)


@pytest.mark.parametrize("op", [op for op in Op if OPS[op].engine is not None])
def test_the_engine_is_wired_to_the_ports_the_table_names(op):
    spec = OPS[op]
    wired = {PORT_MAP[(spec.engine, port)] for port in ENGINE_PORTS if (spec.engine, port) in PORT_MAP}
    assert set(spec.ports) <= wired, f"{op.name}: table ports {spec.ports}, engine wired to {sorted(wired)}"


def test_machine_and_gateware_implement_every_rule():
    for rule in CHECK_RULES:
        assert hasattr(Machine, "_rule_" + rule.partition(":")[0]), rule
    checker = Checker(CFG)
    assert set(checker.rules()) == set(CHECK_RULES)
    Fragment.get(checker, None)         # and it elaborates (its own assertion says the same)


def test_illegal_words():
    """Hand-made words: unknown opcode, f2 outside QUANT, f4 outside the rounding opcodes; a legal word gives None."""
    assert isa.illegal(15) == "unknown opcode 15"
    assert isa.illegal(1 << 31) == "flag f4 is not defined for HALT"
    assert isa.illegal(int(Op.MATMUL) | (1 << 31)) == "flag f4 is not defined for MATMUL"
    assert isa.illegal(isa.qupdate(1, 3, key=7, step_key=True).encode()) is None
    assert isa.illegal(int(Op.MATMUL) | (1 << 30)) == "flag f3 is not defined for MATMUL"
    assert isa.illegal(int(Op.SUM) | (1 << 29)) == "flag f2 is not defined for SUM"
    assert isa.illegal(int(Op.QUANT) | (1 << 29)) is None
    assert isa.illegal(isa.matmul(1, 2, True, True).encode()) is None


def test_status_code_width_holds_every_status():
    assert max(Status) < 1 << isa.status_bits()
    assert isa.field_width("opcode") == 4 and max(Op) < 1 << isa.field_width("opcode")
