"""The instruction-level machine running the reference programs equals ResMLP bit for bit."""

import numpy as np
import pytest

from golden_model import isa
from golden_model.config import CONFIGS, get_config
from golden_model.data import load_digits_split
from golden_model.machine import Machine, MachineError
from golden_model.network import ResMLP, quantize_input
from golden_model.program import PARAMS, MlpLayout, ProgramTrainer


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.mark.parametrize("config", ["default", "small4x4", "wide8x16", "default_nearest"])
@pytest.mark.parametrize("seed", [0, 7])
def test_programs_match_network(digits, config, seed):
    cfg = get_config(config)
    print(f"config={config} seed={seed}")
    reference = ResMLP(cfg, seed, lr_shift=4)
    trainer = ProgramTrainer(Machine(cfg), ResMLP(cfg, seed, lr_shift=4), batch=16)
    rng = np.random.default_rng(seed)
    for step in range(12):
        batch = 16 if step % 4 else 5  # also a short batch: the tensor table is rewritten
        idx = rng.choice(len(digits.train_y), batch, replace=False)
        x = quantize_input(digits.train_x[idx], cfg)
        assert reference.train_step(x, digits.train_y[idx]) == trainer.train_step(x, digits.train_y[idx])
        for name, param in trainer.params().items():
            assert np.array_equal(param.q, reference.params[name].q), (step, name)
            assert param.exp == reference.params[name].exp, (step, name)
    x_test = quantize_input(digits.test_x[:40], cfg)
    assert np.array_equal(trainer.predict(x_test), reference.predict(x_test))


def test_instruction_roundtrip():
    inst = isa.update(3, 4, lr_shift=5, stochastic=True, key=0xDEADBEEF)
    assert isa.Instruction.decode(inst.encode()) == inst
    with pytest.raises(ValueError, match="lr=32"):
        isa.update(3, 4, lr_shift=32).encode()
    with pytest.raises(ValueError, match="unknown opcode 15"):
        isa.Instruction.decode(15)


def _machine_with(cfg, shapes):
    machine = Machine(cfg)
    base = 0
    for slot, (rows, cols) in enumerate(shapes):
        machine.set_tensor(slot, base, rows, cols, 0)
        base += rows * -(-cols // cfg.lanes)
    return machine


@pytest.mark.parametrize("program, status", [
    ([15], isa.Status.ILLEGAL_INSTRUCTION),
    ([isa.Instruction(isa.Op.HALT, reserved=1).encode()], isa.Status.ILLEGAL_INSTRUCTION),
    ([isa.matmul(0, 1).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
    ([isa.matmul(0, 0, transpose_b=True).encode(), isa.quant(1).encode(), isa.halt().encode()],
     isa.Status.SHAPE_MISMATCH),
    ([isa.scale(0, 1).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
])
def test_errors_stop_with_status(program, status):
    cfg = CONFIGS["default"]
    machine = _machine_with(cfg, [(4, 8), (3, 5)])
    machine.load_program(program)
    with pytest.raises(MachineError) as error:
        machine.run()
    assert error.value.status == status and machine.status == status


def test_tensor_past_tmem_is_reported():
    cfg = CONFIGS["default"]
    machine = Machine(cfg)
    machine.set_tensor(0, cfg.tmem_words - 1, 2, 8, 0)
    machine.set_tensor(1, 0, 1, 8, 0)
    machine.load_program([isa.matmul(0, 1).encode(), isa.halt().encode()])
    with pytest.raises(MachineError, match="TMEM_RANGE"):
        machine.run()


def test_program_without_halt_is_reported():
    cfg = CONFIGS["default"].replace(program_depth=4)
    machine = _machine_with(cfg, [(1, 1)])
    machine.load_program([isa.total(0).encode()] * 4)
    with pytest.raises(MachineError, match="PC_RANGE"):
        machine.run()


def test_layout_rejects_batch_beyond_config():
    cfg = CONFIGS["default"]
    with pytest.raises(ValueError, match="batch 17 outside"):
        MlpLayout(cfg, 17, ResMLP(cfg, 0, 4).sizes)
