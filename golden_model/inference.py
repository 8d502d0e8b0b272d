"""Inference with frozen exponents: a sample's prediction does not depend on the rest of its batch.

In training every QUANT gives its result the exponent SQ picks for the whole
batch (the batch's largest value sets it), so a sample's logits would depend on
the samples batched with it.  Inference fixes every exponent instead:

1. :func:`calibrate`: run the trained network's forward pass over the training
   set, in order, in batches of ``max_batch``, and keep for each activation the
   largest (coarsest) exponent it took.
2. :func:`freeze`: walk the inference program once; each QUANT's exponent is
   the larger of the calibrated one and its ACC's exponent (computed from the
   frozen exponents before it), so its shift is never negative.
3. :func:`inference_program`: the forward program with QUANT's f3 (frozen) on
   every QUANT: dst keeps the exponent the host wrote into its table entry, the
   ACC is shifted by dst.exp - ACC.exp and saturated.  Every tensor has a slot
   of its own (cnn_program.CnnProgram ``inference=True``).

Every product row, convolution window and pooling window reads one sample
only, so with the exponents fixed sample i's logits are a function of sample i
and the weights: the same at batch 1 and batch 16 (tests/test_inference.py).
A value beyond what calibration saw saturates at +-127 instead of moving the
grid.  docs/eoq_arithmetic.md states the rule.
"""

from __future__ import annotations

from dataclasses import replace

from . import isa
from .machine import Machine
from .quant import QTensor


def calibrate(model, x: QTensor) -> dict[str, int]:
    """Largest exponent of every forward tensor over ``x`` (the training set), in batches of the largest
    batch the network runs in (``batch_limit``: max_batch unless the images are too large for it)."""
    samples = model.batch_of(x)
    rows = x.q.shape[0] // samples if samples else 1
    chunk = model.batch_limit * rows
    counted, model.macs = model.macs, type(model.macs)()
    exps: dict[str, int] = {}
    try:
        for start in range(0, x.q.shape[0], chunk):
            for name, t in model.forward(QTensor(x.q[start:start + chunk], x.exp)).items():
                exps[name] = max(exps.get(name, t.exp), t.exp)
    finally:
        model.macs = counted
    if not exps:
        raise ValueError("calibration needs at least one sample")
    return exps


def quant_destinations(program) -> list[str]:
    """Names of the tensors the forward program's QUANTs write, in order."""
    names = {place.slot: name for name, place in program.places.items()}
    return [names[inst.dst] for inst in program.forward_program() if inst.op == isa.Op.QUANT]


def freeze(program, calibrated: dict[str, int], table_exps: dict[str, int]) -> dict[str, int]:
    """The frozen exponent of every QUANT destination of ``program`` (an inference layout).

    ``table_exps`` gives the exponents already in the table (parameters, the
    input x).  Each QUANT takes max(calibrated, ACC exponent); the ACC exponent
    follows the instruction's rule (isa.ACC_EXPONENTS) over the frozen table.
    """
    machine = Machine(program.cfg)
    names = {place.slot: name for name, place in program.places.items()}
    for name, place in program.places.items():
        machine.set_tensor(place.slot, place.base, place.rows, place.cols, table_exps.get(name, 0))
    frozen, acc_exp = {}, None
    for inst in program.forward_program():
        if isa.OPS[inst.op].acc == isa.Acc.PRODUCES:
            acc_exp = machine.acc_exponent_of(inst)
        elif inst.op == isa.Op.QUANT:
            name = names[inst.dst]
            if name not in calibrated:
                raise ValueError(f"no calibrated exponent for {name}: calibrate on the same network")
            frozen[name] = machine.table[inst.dst].exp = max(calibrated[name], acc_exp)
    return frozen


def inference_program(program) -> list[isa.Instruction]:
    """The forward program of ``program`` with every QUANT frozen (f3)."""
    return [replace(inst, f3=1) if inst.op == isa.Op.QUANT else inst for inst in program.forward_program()]
