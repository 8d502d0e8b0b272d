"""The instruction-level machine running the reference programs equals ResMLP bit for bit."""

from dataclasses import replace

import numpy as np
import pytest

from golden_model import isa
from golden_model.arithmetic import Arithmetic
from golden_model.config import CONFIGS, get_config
from golden_model.data import load_digits_split
from golden_model.int_loss import int_softmax_grid
from golden_model.machine import LossCounters, Machine, MachineError
from golden_model.network import ResMLP, quantize_input
from golden_model.prng import UPDATE_KEY_SALT, tensor_key, tensor_mix, update_key
from golden_model.program import PARAMS, MlpLayout, ProgramTrainer, backward_program, step_keys
from golden_model.quant import QTensor, shift_quantize, update_weights


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.mark.parametrize("config", ["default", "small4x4", "wide8x16", "default_nearest"])
@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("loss", ["float", "int"])
def test_programs_match_network(digits, config, seed, loss):
    """The host flow on the machine trains as ResMLP.train_step; with the integer loss the programs run
    LOSS on the device (the host writes labels, not the error)."""
    cfg = get_config(config)
    print(f"config={config} seed={seed} loss={loss}")
    arithmetic = Arithmetic(loss=loss)
    reference = ResMLP(cfg, seed, lr_shift=4, arithmetic=arithmetic)
    trainer = ProgramTrainer(Machine(cfg), ResMLP(cfg, seed, lr_shift=4, arithmetic=arithmetic), batch=16)
    assert ("labels" in trainer.program.places) == (loss == "int")
    rng = np.random.default_rng(seed)
    for step in range(12):
        batch = 16 if step % 4 else 5  # also a short batch: the tensor table is rewritten
        if step == 6:                   # a learning-rate schedule's step: the backward program is rewritten
            reference.lr_shift = trainer.lr_shift = 5
        idx = rng.choice(len(digits.train_y), batch, replace=False)
        x = quantize_input(digits.train_x[idx], cfg)
        assert reference.train_step(x, digits.train_y[idx]) == trainer.train_step(x, digits.train_y[idx])
        for name, param in trainer.params().items():
            assert np.array_equal(param.q, reference.params[name].q), (step, name)
            assert param.exp == reference.params[name].exp, (step, name)
    x_test = quantize_input(digits.test_x[:40], cfg)
    assert np.array_equal(trainer.predict(x_test), reference.predict(x_test))


def test_backward_program_is_written_once_per_batch_size_and_learning_rate(digits):
    """With step keys a step writes the seed and step, not the program (the link's bytes per step)."""
    cfg = get_config("default")

    class Counting(Machine):
        loads = 0

        def load_program(self, words, start=0):
            Counting.loads += start != 0
            super().load_program(words, start)

    trainer = ProgramTrainer(Counting(cfg), ResMLP(cfg, 0, lr_shift=4), batch=16)
    x, labels = quantize_input(digits.train_x[:16], cfg), digits.train_y[:16]
    for _ in range(5):
        trainer.train_step(x, labels)
    assert Counting.loads == 1
    trainer.lr_shift = 6
    trainer.train_step(x, labels)
    assert Counting.loads == 2 and trainer.device.step == 5


def test_instruction_roundtrip():
    inst = isa.update(3, 4, lr_shift=5, stochastic=True, key=0xDEADBEEF)
    assert isa.Instruction.decode(inst.encode()) == inst
    with pytest.raises(ValueError, match="lr=32"):
        isa.update(3, 4, lr_shift=32).encode()
    with pytest.raises(ValueError, match="unknown opcode 15"):
        isa.Instruction.decode(15)
    for inst in (isa.quant(3, relu=True, mask=7, key=5), isa.qupdate(2, 4, stochastic_grad=False, key=9)):
        assert isa.Instruction.decode(inst.encode()) == inst
    assert isa.quant(3, mask=7).encode() >> 29 & 1 == 1 and isa.quant(3).encode() >> 29 & 1 == 0
    assert isa.qupdate(2, 4).encode() & 0xF == 9


def test_update_key():
    assert update_key(0) == UPDATE_KEY_SALT and update_key(UPDATE_KEY_SALT) == 0
    keys = step_keys(123, 4)
    assert all(upd == grad ^ UPDATE_KEY_SALT for grad, upd in keys.values())
    model = ResMLP(CONFIGS["default"], 3, 4)
    assert model.key("fc2", update=True) == update_key(model.key("fc2"))


def test_backward_program_is_fused():
    """No separate gradient QUANTs, UPDATEs or MASKs: every parameter has one QUPDATE."""
    program = backward_program(CONFIGS["default"], step_keys(0, 0), 4)
    ops = [inst.op for inst in program]
    assert ops.count(isa.Op.QUPDATE) == len(PARAMS)
    assert isa.Op.UPDATE not in ops and isa.Op.MASK not in ops
    assert sum(inst.f2 for inst in program) == 3
    assert len(program) == 23


def test_masked_quant_is_quant_then_mask():
    cfg = CONFIGS["default"]
    rng = np.random.default_rng(1)
    for relu, stochastic in ((False, False), (True, True)):
        fused, plain = _machine_with(cfg, [(5, 11), (5, 11), (5, 11)]), _machine_with(cfg, [(5, 11)] * 3)
        acc = rng.integers(-2**20, 2**20, size=(5, 11))
        mask = rng.integers(-3, 3, size=(5, 11)).astype(np.int8)
        for machine in (fused, plain):
            machine.write_tensor(1, QTensor(mask, 0))
            machine.acc, machine.acc_exp = acc.copy(), -9
        fused.execute(isa.quant(0, relu=relu, stochastic=stochastic, key=11, mask=1))
        plain.execute(isa.quant(2, relu=relu, stochastic=stochastic, key=11))
        plain.execute(isa.mask(0, 2, 1))
        assert np.array_equal(fused.read_tensor(0).q, plain.read_tensor(0).q)
        assert fused.read_tensor(0).exp == plain.read_tensor(0).exp


def test_qupdate_is_sq_then_update():
    cfg = CONFIGS["default"]
    rng = np.random.default_rng(2)
    for f0, f1 in ((0, 0), (1, 1), (0, 1), (1, 0)):
        machine = _machine_with(cfg, [(6, 9)])
        w = QTensor(rng.integers(-127, 128, size=(6, 9)).astype(np.int8), -7)
        machine.write_tensor(0, w)
        machine.acc, machine.acc_exp = rng.integers(-2**18, 2**18, size=(6, 9)), -14
        machine.execute(isa.qupdate(0, 3, stochastic_grad=bool(f0), stochastic_update=bool(f1), key=0x1234))
        g = shift_quantize(machine.acc, -14, "stochastic" if f0 else "nearest", cfg, key=0x1234)
        want = update_weights(w, g, 3, "stochastic" if f1 else "nearest", cfg, update_key(0x1234))
        assert np.array_equal(machine.read_tensor(0).q, want.q) and machine.read_tensor(0).exp == -7


def test_step_keys_round_with_the_tensor_key(rng):
    """QUANT, UPDATE and QUPDATE with f4 round as with the key field tensor_key(seed, step, id), when the
    field holds tensor_mix(id) and the machine's seed and step registers hold seed and step."""
    cfg = CONFIGS["default"]
    seed, step, tid = (int(v) for v in rng.integers(2**32 - 1, size=3))
    w = QTensor(rng.integers(-127, 128, size=(6, 9)).astype(np.int8), -7)
    g = QTensor(rng.integers(-127, 128, size=(6, 9)).astype(np.int8), -9)
    acc = rng.integers(-2**18, 2**18, size=(6, 9))

    def run(inst, at_step):
        machine = _machine_with(cfg, [(6, 9), (6, 9)])
        machine.write_tensor(0, w)
        machine.write_tensor(1, g)
        machine.acc, machine.acc_exp = acc.copy(), -14
        machine.set_keys(seed, at_step)
        machine.execute(inst)
        return [machine.read_tensor(slot).q for slot in (0, 1)]

    for at_step in (step, step + 1):
        key = tensor_key(seed, at_step, tid)
        for inst in (isa.quant(1, stochastic=True, key=key), isa.update(0, 1, 3, key=key), isa.qupdate(0, 3, key=key)):
            fixed, derived = run(inst, at_step), run(replace(inst, key=tensor_mix(tid), f4=1), at_step)
            assert all(np.array_equal(a, b) for a, b in zip(fixed, derived)), f"{inst.op.name} at step {at_step}"


def test_loss_counts_the_labelled_rows(rng):
    """LOSS adds each labelled row to the counters: one sample, correct when the first largest logit is
    the label, and its Q16 loss; a label outside the classes (a padding row) adds nothing."""
    cfg = CONFIGS["default"]
    machine = _machine_with(cfg, [(6, 10), (6, 1)])
    total = LossCounters()
    for _ in range(3):
        q = rng.integers(-127, 128, size=(6, 10)).astype(np.int8)
        labels = rng.integers(-2, 12, size=6)
        machine.write_tensor(0, QTensor(q, -4))
        machine.write_tensor(1, QTensor(labels.reshape(6, 1).astype(np.int8), 0))
        machine.execute(isa.loss(0, 1))
        for row in range(6):
            if 0 <= labels[row] < 10:
                _, bits = int_softmax_grid(QTensor(q[row:row + 1], -4), labels[row:row + 1], cfg)
                total.add(1, int(np.argmax(q[row]) == labels[row]), int(bits[0]))
    assert machine.read_counters() == total and total.samples > 0
    machine.clear_counters()
    assert machine.read_counters() == LossCounters()


def test_loss_counters_wrap_at_their_widths():
    counters = LossCounters(samples=2**32 - 1, correct=5, loss_bits=2**64 - 3)
    counters.add(2, 1, 4)
    assert counters == LossCounters(samples=1, correct=6, loss_bits=1)


def _machine_with(cfg, shapes):
    machine = Machine(cfg)
    base = 0
    for slot, (rows, cols) in enumerate(shapes):
        machine.set_tensor(slot, base, rows, cols, 0)
        base += rows * -(-cols // cfg.lanes)
    return machine


@pytest.mark.parametrize("program, status", [
    ([15], isa.Status.ILLEGAL_INSTRUCTION),
    ([isa.Instruction(isa.Op.HALT, f4=1).encode()], isa.Status.ILLEGAL_INSTRUCTION),
    ([isa.matmul(0, 1).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
    ([isa.matmul(0, 0, transpose_b=True).encode(), isa.quant(1).encode(), isa.halt().encode()],
     isa.Status.SHAPE_MISMATCH),
    ([isa.scale(0, 1).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
    ([isa.Instruction(isa.Op.SUM, a=2, f2=1).encode(), isa.halt().encode()], isa.Status.ILLEGAL_INSTRUCTION),
    ([isa.Instruction(isa.Op.HALT, f3=1).encode()], isa.Status.ILLEGAL_INSTRUCTION),
    ([isa.total(2).encode(), isa.quant(2, mask=0).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
    ([isa.total(2).encode(), isa.quant(2, mask=3).encode(), isa.halt().encode()], isa.Status.TMEM_RANGE),
    ([isa.total(2).encode(), isa.quant(2, mask=4).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
    ([isa.total(2).encode(), isa.quant(3, mask=4).encode(), isa.halt().encode()], isa.Status.TMEM_RANGE),
    ([isa.total(2).encode(), isa.qupdate(0, 2).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
    ([isa.total(2).encode(), isa.qupdate(3, 2).encode(), isa.halt().encode()], isa.Status.TMEM_RANGE),
    ([isa.qupdate(2, 2).encode(), isa.halt().encode()], isa.Status.SHAPE_MISMATCH),
])
def test_errors_stop_with_status(program, status):
    cfg = CONFIGS["default"]
    machine = _machine_with(cfg, [(4, 8), (3, 5), (1, 1)])
    machine.set_tensor(3, cfg.tmem_words, 1, 1, 0)          # past TMEM, 1x1
    machine.set_tensor(4, 0, 0, 1, 0)                       # no rows
    machine.load_program(program)
    with pytest.raises(MachineError) as error:
        machine.run()
    assert error.value.status == status and machine.status == status


@pytest.mark.parametrize("offset", [-3, -1, 1, 3])
def test_partly_overlapping_destination_is_refused(offset):
    cfg = CONFIGS["default"]
    machine = _machine_with(cfg, [(4, 8), (4, 8)])           # 4 words each, at 0 and 4
    machine.set_tensor(0, 8, 4, 8, 0)                        # words 8..11
    machine.set_tensor(2, 8 + offset, 4, 8, 0)               # slot 0's shape, partly over it
    for program in ([isa.mask(2, 0, 0)], [isa.mask(0, 2, 2)], [isa.mask(2, 2, 0)], [isa.update(2, 0, 3)],
                    [isa.update(0, 2, 3)], [isa.add(0, 0), isa.quant(2, mask=0)]):
        machine.load_program([inst.encode() for inst in program] + [isa.halt().encode()])
        with pytest.raises(MachineError, match="OVERLAP") as error:
            machine.run()
        assert error.value.pc == len(program) - 1


def test_in_place_and_disjoint_destinations_are_legal():
    """In-place and disjoint destinations run, and compute what the ISA says (values by hand).

    Every value is a multiple of 8 and every update divides by 8, so no rounding mode matters.
    A (slot 0, exp -6) has rows a and -a, B (slot 1, exp -4) rows b:
      mask(0, 0, 0)     A = relu(A)                    a: [0, 8, 24, 0, 40, 0, 16, 48]   -a: [16, 0, 0, 0, 0, 8, 0, 0]
      update(1, 1, 3)   B = B - B / 8                  [7, -7, 14, 21, -14, 0, 28, 7]
      mask(1, 0, 1)     B = A where B > 0, exp -6      a: [0, 0, 24, 0, 0, 0, 16, 48]   -a: [16, 0, 0, 0, 0, 0, 0, 0]
      update(0, 1, 3)   A = A - B / 8                  a: [0, 8, 21, 0, 40, 0, 14, 42]  -a: [14, 0, 0, 0, 0, 8, 0, 0]
      add(0, 0), quant(0, mask=0)   A = 2A where A > 0, shift 0 (max 84), exp -6
      add(0, 0), quant(1, mask=0)   B = SQ(2A) where A > 0: max 168 needs shift 1, so B = A, exp -5
    """
    cfg = CONFIGS["default"]
    machine = _machine_with(cfg, [(4, 8), (4, 8)])
    a = np.array([-16, 8, 24, 0, 40, -8, 16, 48], np.int8)
    b = np.array([8, -8, 16, 24, -16, 0, 32, 8], np.int8)
    machine.table[0].exp, machine.table[1].exp = -6, -4
    machine.write_tensor(0, QTensor(np.stack([a, -a, a, -a]), -6))
    machine.write_tensor(1, QTensor(np.stack([b, b, b, b]), -4))
    program = [isa.mask(0, 0, 0), isa.update(1, 1, 3), isa.mask(1, 0, 1), isa.update(0, 1, 3),
               isa.add(0, 0), isa.quant(0, mask=0), isa.add(0, 0), isa.quant(1, mask=0), isa.halt()]
    machine.load_program([inst.encode() for inst in program])
    machine.run()
    row_a, row_minus_a = [0, 16, 42, 0, 80, 0, 28, 84], [28, 0, 0, 0, 0, 16, 0, 0]
    want = np.array([row_a, row_minus_a, row_a, row_minus_a])
    got_a, got_b = machine.read_tensor(0), machine.read_tensor(1)
    assert got_a.q.tolist() == want.tolist() and got_a.exp == -6
    assert got_b.q.tolist() == want.tolist() and got_b.exp == -5


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
