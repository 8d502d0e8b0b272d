"""Python reference of the sequencer's decode: instruction + machine state -> engine command.

``resolve(machine, inst)`` returns the :func:`hw.interfaces.command_layout`
fields the sequencer hands to an engine, computed from the golden machine's
tensor table and ACC state exactly as hw/sequencer.py computes them.  Engine
testbenches use it to drive one engine with the command the core would give.
"""

from __future__ import annotations

import numpy as np

from golden_model.isa import Instruction, Op
from golden_model.machine import Machine, words_per_row
from golden_model.quant import sq_shift

from .interfaces import command_layout


def _tensor(machine: Machine, slot: int) -> dict:
    entry = machine.table[slot]
    return {"base": entry.base, "rows": entry.rows, "cols": entry.cols,
            "stride": words_per_row(entry.cols, machine.cfg.lanes)}


def acc_shape_of(machine: Machine, inst: Instruction) -> tuple[int, int]:
    """Shape of ACC after a producer instruction (MATMUL, SCALE, ADD, SUM, DOT)."""
    a, b = machine.table[inst.a], machine.table[inst.b]
    if inst.op == Op.MATMUL:
        rows = a.cols if inst.f0 else a.rows
        cols = b.cols if inst.f1 else b.rows
        return rows, cols
    if inst.op in (Op.SCALE, Op.ADD):
        return a.rows, a.cols
    return 1, 1


def acc_maxima(acc: np.ndarray) -> tuple[int, int]:
    """(max |x|, max(x, 0)) over the ACC tensor, as unsigned accumulator-width values."""
    if acc.size == 0:
        return 0, 0
    return int(np.abs(acc).max()), int(max(acc.max(), 0))


def resolve(machine: Machine, inst: Instruction) -> dict:
    """The engine command for ``inst`` in the machine's current state."""
    cfg = machine.cfg
    table = machine.table
    fields = {"op": int(inst.op), "f0": inst.f0, "f1": inst.f1, "f2": inst.f2, "lr": inst.lr, "key": inst.key,
              "a": _tensor(machine, inst.a), "b": _tensor(machine, inst.b), "dst": _tensor(machine, inst.dst),
              "shift_a": 0, "shift_b": 0, "shift": 0, "maxabs": 0, "maxpos": 0}
    if inst.op in (Op.QUANT, Op.QUPDATE):
        rows, cols = machine.acc.shape
        fields["maxabs"], fields["maxpos"] = acc_maxima(machine.acc)
    elif inst.op in (Op.MATMUL, Op.SCALE, Op.ADD, Op.SUM, Op.DOT):
        rows, cols = acc_shape_of(machine, inst)
    else:
        rows, cols = 0, 0
    fields.update(acc_rows=rows, acc_cols=cols, acc_stride=words_per_row(cols, cfg.lanes) if cols else 0)
    if inst.op == Op.ADD:
        exp = max(table[inst.a].exp, table[inst.b].exp)
        fields["shift_a"] = exp - table[inst.a].exp
        fields["shift_b"] = exp - table[inst.b].exp
    if inst.op == Op.UPDATE:
        fields["shift"] = table[inst.dst].exp + inst.lr - table[inst.a].exp
    if inst.op == Op.QUPDATE:
        gradient_exp = machine.acc_exp + sq_shift(machine.acc, cfg)
        fields["shift"] = table[inst.dst].exp + inst.lr - gradient_exp
    return fields


def pack(cfg, fields: dict) -> int:
    """The command as the integer value of its bits (for testbenches)."""
    value = command_layout(cfg).const(fields).as_bits()
    return int(value)
