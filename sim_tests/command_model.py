"""Python reference of the sequencer's decode: instruction + golden machine state -> engine command.

``resolve(machine, inst)`` returns the :func:`hw.interfaces.command_layout`
fields the sequencer hands to an engine, from the golden machine's tensor
table and ACC state and the opcode table (golden_model.isa.OPS: the
producer's ACC shape rule, the consumer's SQ shift).  Engine benches use it
to drive one engine with the command the core would give.
"""

from __future__ import annotations

import numpy as np

from golden_model.isa import OPS, Acc, Instruction, Op
from golden_model.machine import Machine, words_per_row
from hw.interfaces import command_layout


def _tensor(machine: Machine, slot: int) -> dict:
    entry = machine.table[slot]
    return {"base": entry.base, "rows": entry.rows, "cols": entry.cols,
            "stride": words_per_row(entry.cols, machine.cfg.lanes)}


def acc_peaks(acc: np.ndarray) -> tuple[int, int]:
    """(OR of |x|, OR of max(x, 0)) over the ACC tensor, as unsigned accumulator-width values: the
    engines' reported peaks (hw/interfaces.py ``result_layout``)."""
    values = np.asarray(acc, dtype=np.int64).ravel()
    return (int(np.bitwise_or.reduce(np.abs(values), initial=0)),
            int(np.bitwise_or.reduce(np.maximum(values, 0), initial=0)))


def resolve(machine: Machine, inst: Instruction) -> dict:
    """The engine command for ``inst`` in the machine's current state."""
    cfg, table, spec = machine.cfg, machine.table, OPS[inst.op]
    fields = {"op": int(inst.op), "f0": inst.f0, "f1": inst.f1, "f2": inst.f2, "lr": inst.lr, "key": machine.key_of(inst),
              "a": _tensor(machine, inst.a), "b": _tensor(machine, inst.b), "dst": _tensor(machine, inst.dst),
              "shift_a": 0, "shift_b": 0, "shift": 0, "sq_shift": 0}
    rows, cols = 0, 0
    if spec.acc is Acc.CONSUMES:
        rows, cols = machine.acc.shape
        # a frozen QUANT's shift dst.exp - ACC.exp can be any size: beyond max_shift the decoder sends
        # max_shift + 1, which flushes alike
        fields["sq_shift"] = min(machine.quant_shift(inst), cfg.max_shift + 1)
    elif spec.acc is Acc.PRODUCES:
        rows, cols = machine.acc_shape_of(inst)
    fields.update(acc_rows=rows, acc_cols=cols, acc_stride=words_per_row(cols, cfg.lanes) if cols else 0)
    if inst.op == Op.ADD:
        exp = machine.acc_exponent_of(inst)
        fields["shift_a"] = exp - table[inst.a].exp
        fields["shift_b"] = exp - table[inst.b].exp
    if inst.op == Op.UPDATE:
        fields["shift"] = table[inst.dst].exp + inst.lr - table[inst.a].exp
    if inst.op == Op.QUPDATE:
        fields["shift"] = table[inst.dst].exp + inst.lr - machine.quant_exponent(inst)
    if inst.op == Op.LOSS:          # the logits' exponent (the LossUnit clamps it to its range)
        fields["shift"] = table[inst.a].exp
    return fields


def pack(cfg, fields: dict) -> int:
    """The command as the integer value of its bits (for testbenches)."""
    return int(command_layout(cfg).const(fields).as_bits())
