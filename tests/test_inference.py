"""Frozen-exponent inference (golden_model/inference.py) on the golden machine, for both networks."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from golden_model.cnn import ResCNN, input_rows
from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.inference import calibrate, freeze, inference_program
from golden_model.machine import Machine
from golden_model.network import ResMLP, quantize_input
from golden_model.program import ProgramTrainer, network_program
from golden_model.quant import QTensor

CFG = get_config("default")
SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def trained(arch: str, digits, steps: int = 6):
    """A model after a few training steps (so no layer is still at its zero init), and its inputs."""
    print(f"EOQ_SEED={SEED}")
    rng = np.random.default_rng(SEED)
    model = ResCNN(CFG, SEED % 1000, 2) if arch == "cnn" else ResMLP(CFG, SEED % 1000, 4)
    inputs = ((lambda p: input_rows(p, model.spec, CFG)) if arch == "cnn" else (lambda p: quantize_input(p, CFG)))
    for _ in range(steps):
        idx = rng.choice(len(digits.train_y), size=16, replace=False)
        model.train_step(inputs(digits.train_x[idx]), digits.train_y[idx])
    return model, inputs


def rows_of(model, x: QTensor, first: int, count: int) -> QTensor:
    per = x.q.shape[0] // model.batch_of(x)
    return QTensor(x.q[first * per:(first + count) * per], x.exp)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_samples_logits_do_not_depend_on_its_batch(arch, digits):
    model, inputs = trained(arch, digits)
    calibrated = calibrate(model, inputs(digits.train_x[:256]))
    trainer = ProgramTrainer(Machine(CFG), model, 16)
    x = inputs(digits.test_x[:16])
    together = trainer.infer(x, calibrated)
    for i in range(16):
        alone = trainer.infer(rows_of(model, x, i, 1), calibrated)
        np.testing.assert_array_equal(alone.q[0], together.q[i], err_msg=f"sample {i} (EOQ_SEED={SEED})")
        assert alone.exp == together.exp
    # the training forward pass does depend on the batch (the reason for the rule)
    forward = [trainer.forward(rows_of(model, x, i, 1)) for i in range(16)]
    assert any(f.exp != together.exp or not np.array_equal(f.q[0], together.q[i]) for i, f in enumerate(forward))
    # predictions in chunks of max_batch equal one by one; training goes on afterwards
    np.testing.assert_array_equal(trainer.predict(x, calibrated), np.argmax(together.q, axis=1))
    trainer.train_step(x, digits.test_y[:16])


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_calibrated_on_the_batch_itself_inference_is_the_forward_pass(arch, digits):
    """Frozen at the exponents SQ gives this very batch, every QUANT shifts as in training: equal logits."""
    model, inputs = trained(arch, digits)
    x = inputs(digits.test_x[16:32])
    want = model.forward(x)["y"]
    got = ProgramTrainer(Machine(CFG), model, 16).infer(x, calibrate(model, x))
    np.testing.assert_array_equal(got.q, want.q)
    assert got.exp == want.exp


def test_freezing_keeps_every_shift_non_negative_and_names_a_missing_tensor(digits):
    model, inputs = trained("cnn", digits, steps=1)
    program = network_program(model, 4, inference=True)
    table = {name: model.params[name].exp for name in program.params} | {"x": -7}
    fine = {name: -40 for name in calibrate(model, inputs(digits.train_x[:4]))}   # finer than any ACC
    frozen = freeze(program, fine, table)
    machine = Machine(CFG)
    for name, place in program.places.items():
        machine.set_tensor(place.slot, place.base, place.rows, place.cols, frozen.get(name, table.get(name, 0)))
    machine.write_tensor(program.slot("x"), inputs(digits.train_x[:4]))
    for name in program.params:
        machine.write_tensor(program.slot(name), QTensor(model.params[name].q.reshape(program.shapes[name]),
                                                         model.params[name].exp))
    machine.load_program([inst.encode() for inst in inference_program(program)])
    machine.run()                                           # no EXP_RANGE: each QUANT's shift is >= 0
    assert all(inst.f3 for inst in inference_program(program) if inst.op.name == "QUANT")
    del fine["s1b1.z"]
    with pytest.raises(ValueError, match="no calibrated exponent for s1b1.z"):
        freeze(program, fine, table)
