"""Whole-core benches: every instruction, the training step op by op, 50 steps.

The reference is the golden machine (golden_model/machine.py) and, for the
training step, network.ResMLP itself through golden_model.program's host
flow; every comparison is integer equality.
"""

from __future__ import annotations

import os

import numpy as np
import cocotb
from cocotb.decorators import external

from golden_model import isa
from golden_model.data import load_digits_split
from golden_model.machine import Machine, MachineError, words_per_row
from golden_model.network import ResMLP, Trace, quantize_input
from golden_model.program import PARAMS, SLOTS, ProgramTrainer
from golden_model.quant import QTensor

from .common import settings, start
from .core_device import CoreDevice

STEPS = 50


def _layout(cfg, rng, shapes):
    """Slots 0..n-1 with the given shapes packed from word 0, random exponents."""
    entries, base = [], 0
    for rows, cols in shapes:
        entries.append((base, rows, cols, int(rng.integers(-14, 2))))
        base += rows * words_per_row(cols, cfg.lanes)
    return entries


async def _setup(device, machine, rng, entries, extremes: bool):
    """Table entries on both sides; random data for the entries that fit the core."""
    cfg = machine.cfg
    for slot, (base, rows, cols, exp) in enumerate(entries):
        machine.set_tensor(slot, base, rows, cols, exp)
        await device.set_tensor(slot, base, rows, cols, exp)
        fits = rows <= cfg.max_dim and base + rows * words_per_row(cols, cfg.lanes) <= cfg.tmem_words
        if not fits:
            continue
        if extremes and rng.random() < 0.3:
            values = np.full((rows, cols), rng.choice([-128, 127, 0]), dtype=np.int64)
        else:
            values = rng.integers(-128, 128, size=(rows, cols))
        t = QTensor(values.astype(np.int8), exp)
        machine.write_tensor(slot, t)
        await device.write_tensor(slot, t)


async def _compare_state(device, machine, slots, what):
    for slot in slots:
        got = await device.read_tensor(slot)
        want = machine.read_tensor(slot)
        if not np.array_equal(got.q, want.q) or got.exp != want.exp:
            diff = np.argwhere(got.q != want.q)
            where = f"first difference at {tuple(diff[0])}" if diff.size else "exponents differ"
            raise AssertionError(f"{what}: slot {slot} differs ({where}); DUT exp {got.exp}, golden exp {want.exp}")


def _random_program(rng, cfg):
    """A legal instruction sequence over the slot plan of _instruction_shapes."""
    stochastic = bool(rng.integers(2))
    key = int(rng.integers(2**32))
    lr = int(rng.integers(0, 12))

    def qupdate(w):
        return isa.qupdate(w, lr, stochastic_grad=bool(rng.integers(2)), stochastic_update=bool(rng.integers(2)),
                           key=int(rng.integers(2**32)))

    choices = [
        [isa.matmul(0, 1), isa.quant(3, relu=bool(rng.integers(2)))],
        [isa.matmul(2, 1, transpose_b=True), isa.quant(8)],
        [isa.matmul(2, 0, transpose_a=True, transpose_b=True), isa.quant(9, stochastic=stochastic, key=key)],
        [isa.scale(0, 5), isa.quant(7)],
        [isa.add(0, 6), isa.quant(7, relu=True)],
        [isa.add(0, 7), isa.quant(8)],
        [isa.total(2), isa.quant(10, stochastic=stochastic, key=key)],
        [isa.dot(0, 7), isa.quant(10, stochastic=stochastic, key=key)],
        [isa.mask(8, 0, 7)],
        [isa.update(1, 9, lr, stochastic=stochastic, key=key)],
        [isa.update(5, 10, lr, stochastic=stochastic, key=key)],
        # QUANT masked by B > 0 (f2), also in place, and the fused QUPDATE
        [isa.matmul(0, 1), isa.quant(3, relu=bool(rng.integers(2)), mask=2)],
        [isa.matmul(2, 1, transpose_b=True), isa.quant(8, stochastic=stochastic, key=key, mask=0)],
        [isa.add(0, 7), isa.quant(7, mask=7)],
        [isa.matmul(2, 0, transpose_a=True, transpose_b=True), qupdate(1)],
        [isa.matmul(2, 0, transpose_a=True, transpose_b=True), qupdate(4)],
        [isa.total(2), qupdate(5)],
        [isa.dot(0, 7), qupdate(6)],
    ]
    program = []
    for _ in range(int(rng.integers(1, 5))):
        program += choices[int(rng.integers(len(choices)))]
    return program + [isa.halt()]


def _instruction_shapes(rng, cfg):
    batch = int(rng.integers(1, cfg.max_batch + 1))
    k = int(rng.integers(1, cfg.max_features + 1))
    n = int(rng.integers(1, cfg.max_features + 1))
    return [(batch, k), (n, k), (batch, n), (batch, n), (n, k), (1, 1), (1, 1), (batch, k), (batch, k),
            (n, k), (1, 1)]


@cocotb.test()
async def instructions_match_machine(dut):
    """Random legal programs over random tensors: TMEM, exponents and status equal the machine's."""
    s = settings(dut)
    rng = np.random.default_rng(s.seed)
    await start(dut)
    device = CoreDevice(dut, s.cfg)
    for trial in range(12):
        machine = Machine(s.cfg)
        entries = _layout(s.cfg, rng, _instruction_shapes(rng, s.cfg))
        await _setup(device, machine, rng, entries, extremes=trial % 3 == 0)
        program = _random_program(rng, s.cfg)
        words = [inst.encode() for inst in program]
        machine.load_program(words)
        await device.load_program(words)
        machine.run()
        await device.run()
        await _compare_state(device, machine, range(len(entries)),
                             f"trial {trial} program {[i.op.name for i in program]}")


@cocotb.test()
async def errors_match_machine(dut):
    """Illegal instructions and bad shapes stop the core with the machine's status code and pc."""
    s = settings(dut)
    rng = np.random.default_rng(s.seed)
    cfg = s.cfg
    await start(dut)
    device = CoreDevice(dut, cfg)
    machine = Machine(cfg)
    shapes = [(4, 8), (3, 5), (1, 1), (cfg.max_dim, 2)]
    entries = _layout(cfg, rng, shapes)
    entries.append((cfg.tmem_words - 1, 2, 1, 0))          # slot 4: runs past TMEM
    entries.append((0, cfg.max_dim + 1, 1, 0))             # slot 5: too many rows
    entries.append((entries[3][0] + cfg.max_dim, 2, 1, -3))  # slot 6: 2x1, after slot 3
    entries.append((entries[0][0] + 1, 4, 8, 2))           # slot 7: slot 0's shape, one word further
    await _setup(device, machine, rng, entries, extremes=False)
    programs = [
        [isa.Instruction(isa.Op.HALT, reserved=5)],
        [isa.matmul(0, 1), isa.halt()],
        [isa.matmul(0, 0, transpose_b=True), isa.quant(1), isa.halt()],
        [isa.scale(0, 1), isa.halt()],
        [isa.add(0, 1), isa.halt()],
        [isa.dot(0, 2), isa.halt()],
        [isa.mask(0, 0, 1), isa.halt()],
        [isa.update(0, 1, 3), isa.halt()],
        [isa.total(4), isa.halt()],
        [isa.total(5), isa.halt()],
        [isa.total(2), isa.quant(4), isa.halt()],
        [isa.total(0), isa.total(2), isa.halt()],
        # f2 (mask) is defined for QUANT only
        [isa.Instruction(isa.Op.SUM, a=2, f2=1), isa.halt()],
        [isa.Instruction(isa.Op.HALT, f2=1)],
        # masked QUANT: dst dims, dst/ACC shape, dst range, b dims, b range, b shape, in that order
        [isa.total(2), isa.quant(2, mask=2), isa.halt()],
        [isa.total(2), isa.quant(2, mask=0), isa.halt()],
        [isa.total(2), isa.quant(2, mask=5), isa.halt()],
        [isa.total(2), isa.quant(0, mask=5), isa.halt()],
        [isa.add(6, 6), isa.quant(6, mask=4), isa.halt()],
        [isa.add(6, 6), isa.quant(4, mask=5), isa.halt()],
        [isa.add(6, 6), isa.quant(6, relu=True, mask=6), isa.halt()],
        [isa.add(6, 6), isa.quant(6, mask=0), isa.halt()],
        # QUPDATE: W dims, W range, ACC shape
        [isa.total(2), isa.qupdate(2, 3), isa.halt()],
        [isa.total(2), isa.qupdate(0, 3), isa.halt()],
        [isa.add(6, 6), isa.qupdate(4, 3), isa.halt()],
        [isa.add(6, 6), isa.qupdate(5, 3), isa.halt()],
        [isa.add(6, 6), isa.qupdate(6, 2, stochastic_grad=False, key=77), isa.halt()],
        # a destination partly overlapping a source (either direction); in place is legal
        [isa.mask(7, 0, 7), isa.halt()],
        [isa.mask(7, 7, 0), isa.halt()],
        [isa.mask(0, 7, 7), isa.halt()],
        [isa.update(7, 0, 3), isa.halt()],
        [isa.update(0, 7, 3), isa.halt()],
        [isa.add(0, 0), isa.quant(7, mask=0), isa.halt()],
        [isa.add(0, 0), isa.quant(0, mask=7), isa.halt()],
        [isa.mask(7, 7, 7), isa.update(7, 7, 3), isa.add(7, 7), isa.quant(7, mask=7), isa.halt()],
    ]
    for program in programs:
        words = [inst.encode() for inst in program]
        words += [15] if program[-1].op != isa.Op.HALT else []
        machine.load_program(words)
        await device.load_program(words)
        try:
            machine.run()
            want = (isa.Status.OK, None)
        except MachineError as error:
            want = (error.status, error.pc)
        try:
            await device.run()
            got = (isa.Status.OK, None)
        except MachineError as error:
            got = (error.status, error.pc)
        assert got == want, f"program {[i.op.name for i in program]}: DUT {got}, golden {want}"
    await _compare_state(device, machine, [0, 1, 2, 3, 6], "after the error programs")


def _data_and_models(s, seed):
    data = load_digits_split()
    reference = ResMLP(s.cfg, seed, lr_shift=4)
    return data, reference


@cocotb.test()
async def training_step_op_by_op(dut):
    """One training step: every tensor the step writes equals the golden trace's, op by op."""
    s = settings(dut)
    await start(dut)
    device = CoreDevice(dut, s.cfg)
    data, reference = _data_and_models(s, s.seed % 1000)
    idx = np.random.default_rng(s.seed).choice(len(data.train_y), s.cfg.max_batch, replace=False)
    x, labels = quantize_input(data.train_x[idx], s.cfg), data.train_y[idx]

    @external
    def host_step():
        trainer = ProgramTrainer(device.blocking(), ResMLP(s.cfg, s.seed % 1000, lr_shift=4), s.cfg.max_batch)
        trainer.train_step(x, labels)

    await host_step()
    trace = Trace()
    reference.train_step(x, labels, trace)
    outputs = {op: out for op, _, out in trace.records}
    forward = {"a1": "fc1_forward", "z": "fc2_forward", "r": "fc3_forward", "sm": "scale_forward",
               "s": "bias_forward", "a2": "residual_forward", "y": "fc_out_forward"}
    backward = {"e_y": ("host_output_error", "e"),
                "e_join": ("join_relu_backward", "e"), "e_r": ("scale_error", "e"),
                "e_z": ("fc3_error_relu", "e"), "e_branch": ("fc2_error", "e"),
                "e_a1": ("skip_join_relu_backward", "e")}
    checks = {slot: (op, "y") for slot, op in forward.items()} | backward
    for slot_name, (op, name) in checks.items():
        got = await device.read_tensor(SLOTS[slot_name])
        want = outputs[op][name]
        assert np.array_equal(got.q, want.q) and got.exp == want.exp, \
            f"{slot_name} ({op}) differs from the golden trace"
    for name in PARAMS:
        got = await device.read_tensor(SLOTS[name])
        want = reference.params[name]
        assert np.array_equal(got.q.reshape(want.q.shape), want.q) and got.exp == want.exp, \
            f"parameter {name} differs after the update"
    dut._log.info(f"one training step: {device.total_cycles} core cycles")


@cocotb.test(skip=os.environ.get("EOQ_MODE") == "quick")
async def fifty_steps_identical(dut):
    """50 training steps on the simulated core end with the golden model's weights, bit for bit."""
    s = settings(dut)
    await start(dut)
    device = CoreDevice(dut, s.cfg)
    data, reference = _data_and_models(s, s.seed % 1000)
    rng = np.random.default_rng(s.seed)
    batches = [rng.choice(len(data.train_y), s.cfg.max_batch, replace=False) for _ in range(STEPS)]

    @external
    def host_training():
        trainer = ProgramTrainer(device.blocking(), ResMLP(s.cfg, s.seed % 1000, lr_shift=4), s.cfg.max_batch)
        losses = [trainer.train_step(quantize_input(data.train_x[idx], s.cfg), data.train_y[idx]) for idx in batches]
        return losses, trainer.params()

    losses, params = await host_training()
    golden = [reference.train_step(quantize_input(data.train_x[idx], s.cfg), data.train_y[idx]) for idx in batches]
    assert losses == golden, "losses differ: the logits differed at some step"
    for name in PARAMS:
        assert np.array_equal(params[name].q, reference.params[name].q), f"{name} differs after {STEPS} steps"
        assert params[name].exp == reference.params[name].exp
    dut._log.info(f"{STEPS} steps: {device.total_cycles} core cycles, "
                  f"{device.total_cycles / STEPS:.0f} per step; final loss {losses[-1]:.4f}")
