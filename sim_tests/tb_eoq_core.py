"""Whole-core benches: every instruction, the training steps op by op, 50 MLP and 20 CNN steps.

The reference is the golden machine (golden_model/machine.py) and, for the
training step, network.ResMLP itself through golden_model.program's host
flow; every comparison is integer equality.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import cocotb
from cocotb.decorators import external

from golden_model import isa
from golden_model.arithmetic import Arithmetic
from golden_model.autonomous import AutonomousTrainer
from golden_model.cnn import ResCNN, input_rows
from golden_model.data import load_digits_split
from golden_model.geometry import Geometry
from golden_model.inference import calibrate
from golden_model.machine import LossCounters, Machine, MachineError, words_per_row
from golden_model.network import ResMLP, Trace, quantize_input
from golden_model.program import PARAMS, SLOTS, ProgramTrainer, largest_batch
from protocol.link_model import machine_progress
from golden_model.quant import QTensor

from host.device import GoldenDevice

from .common import settings, start
from .core_device import CoreDevice
from .port_owners import watch_port_owners

STEPS = 50
CNN_STEPS = 20
INT_LOSS = Arithmetic(loss="int")
#: the resident samples of the random programs: each as many words as the widest row (max_features)
DATA_SAMPLES = 48


async def _start(dut):
    """Clock and reset, and the memory ports' owners watched for the rest of the test."""
    await start(dut)
    watch_port_owners(dut)


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


async def _compare_words(device, machine, slots, what):
    """The slots' TMEM words, pad lanes included (the ISA keeps them 0)."""
    for slot in slots:
        entry = machine.table[slot]
        end = entry.base + entry.rows * words_per_row(entry.cols, machine.cfg.lanes)
        got = await device.read_words(entry.base, end - entry.base)
        want = machine.tmem[entry.base:end]
        if not np.array_equal(got, want):
            word, lane = np.argwhere(got != want)[0]
            raise AssertionError(f"{what}: slot {slot} word {entry.base + word} lane {lane}: DUT {got[word, lane]}, "
                                 f"golden {want[word, lane]}")


async def _compare_state(device, machine, slots, what):
    for slot in slots:
        got = await device.read_tensor(slot)
        want = machine.read_tensor(slot)
        if not np.array_equal(got.q, want.q) or got.exp != want.exp:
            diff = np.argwhere(got.q != want.q)
            where = f"first difference at {tuple(diff[0])}" if diff.size else "exponents differ"
            raise AssertionError(f"{what}: slot {slot} differs ({where}); DUT exp {got.exp}, golden exp {want.exp}")


async def _run_both(device, machine, words):
    """Run a program on the DUT and the machine; each side's (status, failing pc)."""
    machine.load_program(words)
    await device.load_program(words)
    try:
        machine.loop(0, 1, advance=False)       # the device's RUN: one pass
        want = (isa.Status.OK, None)
    except MachineError as error:
        want = (error.status, error.pc)
    try:
        await device.run()
        got = (isa.Status.OK, None)
    except MachineError as error:
        got = (error.status, error.pc)
    return got, want


def _random_program(rng, cfg):
    """A legal instruction sequence over the slot plan of _instruction_shapes."""
    stochastic = bool(rng.integers(2))
    base = int(rng.integers(0, DATA_SAMPLES))
    count = int(rng.integers(1, DATA_SAMPLES - base + 1))

    def batch(slot, shuffle):
        """LOAD of a batch's labels (slot 11) and features (``slot``) from the set (base, count)."""
        return [isa.load(11, base, count, labels=True, shuffle=shuffle), isa.load(slot, base, count, shuffle=shuffle)]

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
        # QUANT with a frozen exponent (f3): dst's own exponent, EXP_RANGE when it is finer than the ACC's
        [isa.matmul(0, 1), isa.quant(3), isa.matmul(0, 1),
         isa.quant(3, relu=bool(rng.integers(2)), stochastic=stochastic, key=key, frozen=True)],
        [isa.total(2), isa.quant(10, stochastic=stochastic, key=key, frozen=True)],
        [isa.scale(0, 5), isa.quant(7, relu=bool(rng.integers(2)), frozen=True)],
        [isa.matmul(0, 1), isa.quant(3, mask=2, frozen=True)],
        # the integer loss (labels in slot 11, some outside the classes), and its error quantized
        [isa.loss(0, 11), isa.quant(7)],
        [isa.loss(3, 11), isa.quant(2), isa.matmul(2, 1, transpose_b=True), isa.quant(8)],
        # batches of the resident data set: the training stream (shuffled, epochs) and the evaluation stream
        batch(0, True) + [isa.matmul(0, 1), isa.quant(3)],
        batch(7, False) + [isa.add(0, 7), isa.quant(8)],
        batch(0, bool(rng.integers(2))) + batch(7, True) + [isa.loss(2, 11), isa.quant(8)],
    ]
    program = []
    for _ in range(int(rng.integers(1, 5))):
        program += choices[int(rng.integers(len(choices)))]
    # about half the rounding instructions take step keys (f4): the key field is then a tensor's mix
    program = [replace(inst, f4=1) if "f4" in isa.OPS[inst.op].fields and rng.random() < 0.5 else inst
               for inst in program]
    return program + [isa.halt()]


async def maybe_await(result):
    """The machine's methods return None, the device's coroutines."""
    if result is not None:
        await result


def _instruction_shapes(rng, cfg):
    batch = int(rng.integers(1, cfg.max_batch + 1))
    k = int(rng.integers(1, cfg.max_features + 1))
    n = int(rng.integers(1, cfg.max_features + 1))
    return [(batch, k), (n, k), (batch, n), (batch, n), (n, k), (1, 1), (1, 1), (batch, k), (batch, k),
            (n, k), (1, 1), (batch, 1)]


async def _write_labels(device, machine, rng, slot, entries):
    """Labels for LOSS in ``slot``: classes of the widest operand, and a few that are none (-1, too large)."""
    rows = entries[slot][1]
    classes = max(cols for _, _, cols, _ in entries)
    labels = QTensor(rng.integers(-1, classes + 2, size=(rows, 1)).astype(np.int8), 0)
    machine.write_tensor(slot, labels)
    await device.write_tensor(slot, labels)


@cocotb.test()
async def instructions_match_machine(dut):
    """Random programs over random tensors (legal but for frozen exponents finer than the ACC's), with
    fixed and step keys at a random seed and step: TMEM, exponents and status equal the machine's."""
    s = settings(dut)
    rng = np.random.default_rng(s.seed)
    await _start(dut)
    device = CoreDevice(dut, s.cfg)
    resident = rng.integers(-128, 128, size=(DATA_SAMPLES * words_per_row(s.cfg.max_features, s.cfg.lanes),
                                             s.cfg.lanes))
    labels = rng.integers(-2, 12, size=DATA_SAMPLES)
    await device.write_data(0, resident)
    await device.write_labels(0, labels)
    for trial in range(12):
        machine = Machine(s.cfg)
        machine.write_data(0, resident)
        machine.write_labels(0, labels)
        entries = _layout(s.cfg, rng, _instruction_shapes(rng, s.cfg))
        await _setup(device, machine, rng, entries, extremes=trial % 3 == 0)
        await _write_labels(device, machine, rng, 11, entries)
        seed, step = (int(v) for v in rng.integers(2**32, size=2))
        machine.set_keys(seed, step)
        await device.set_keys(seed, step)
        cursor = (int(rng.integers(2**32)), int(rng.integers(DATA_SAMPLES + 2)), int(rng.integers(DATA_SAMPLES + 2)))
        machine.set_cursor(*cursor)
        await device.set_cursor(*cursor)
        program = _random_program(rng, s.cfg)
        words = [inst.encode() for inst in program]
        got, want = await _run_both(device, machine, words)
        what = f"trial {trial} program {[i.op.name for i in program]}"
        assert got == want, f"{what}: DUT status {got}, golden {want}"
        await _compare_state(device, machine, range(len(entries)), what)
        await _compare_words(device, machine, range(len(entries)), what)
        counters = await device.read_counters()
        assert counters == machine.counters, f"{what}: loss counters {counters}, golden {machine.counters}"
        progress = await device.progress()
        assert progress == machine_progress(machine), f"{what}: progress {progress}, golden {machine_progress(machine)}"
        await device.clear_counters()
        assert await device.read_counters() == LossCounters(), f"{what}: the counters did not clear"


@cocotb.test()
async def loads_match_machine(dut):
    """LOAD alone, many times: random widths (every remainder of the lanes), sets, streams and cursors (near
    an epoch's end, past an evaluation set's end), passes with the step counting on; every TMEM word, pad
    lanes included, and the progress equal the machine's."""
    s = settings(dut)
    rng = np.random.default_rng(s.seed)
    cfg = s.cfg
    await _start(dut)
    device = CoreDevice(dut, cfg)
    resident = rng.integers(-128, 128, size=(DATA_SAMPLES * words_per_row(cfg.max_features, cfg.lanes), cfg.lanes))
    labels = rng.integers(-2, 12, size=DATA_SAMPLES)
    await device.write_data(0, resident)
    await device.write_labels(0, labels)
    for trial in range(16):
        machine = Machine(cfg)
        machine.write_data(0, resident)
        machine.write_labels(0, labels)
        rows, cols = int(rng.integers(1, cfg.max_batch + 1)), int(rng.integers(1, cfg.max_features + 1))
        entries = [(0, rows, cols, -7), (rows * words_per_row(cols, cfg.lanes), rows, 1, 0)]
        await _setup(device, machine, rng, entries, extremes=False)
        base = int(rng.integers(0, DATA_SAMPLES))
        count = int(rng.integers(1, DATA_SAMPLES - base + 1))
        keys = (int(rng.integers(2**32)), int(rng.integers(2**32)))
        cursor = (int(rng.integers(2**32)), int(rng.integers(max(count - 3, 0), count + 2)),
                  int(rng.integers(max(count - 3, 0), count + 2)))
        for side in (machine, device):
            await maybe_await(side.set_keys(*keys))
            await maybe_await(side.set_cursor(*cursor))
        shuffle = bool(rng.integers(2))
        program = [isa.load(1, base, count, labels=True, shuffle=shuffle), isa.load(0, base, count, shuffle=shuffle),
                   isa.halt()]
        words = [inst.encode() for inst in program]
        passes = int(rng.integers(1, 4))
        machine.load_program(words)
        await device.load_program(words)
        machine.loop(0, passes, advance=True)
        await device.loop(0, passes, True)
        what = f"trial {trial}: {rows}x{cols} from ({base}, {count}) shuffle {shuffle} cursor {cursor} passes {passes}"
        await _compare_words(device, machine, [0, 1], what)
        progress = await device.progress()
        assert progress == machine_progress(machine), f"{what}: progress {progress}, golden {machine_progress(machine)}"


@cocotb.test()
async def errors_match_machine(dut):
    """Illegal instructions and bad shapes stop the core with the machine's status code and pc."""
    s = settings(dut)
    rng = np.random.default_rng(s.seed)
    cfg = s.cfg
    await _start(dut)
    device = CoreDevice(dut, cfg)
    machine = Machine(cfg)
    shapes = [(4, 8), (3, 5), (1, 1), (cfg.max_dim, 2)]
    entries = _layout(cfg, rng, shapes)
    entries.append((cfg.tmem_words - 1, 2, 1, 0))          # slot 4: runs past TMEM
    entries.append((0, cfg.max_dim + 1, 1, 0))             # slot 5: too many rows
    entries.append((entries[3][0] + cfg.max_dim, 2, 1, -3))  # slot 6: 2x1, after slot 3
    entries.append((entries[0][0] + 1, 4, 8, 2))           # slot 7: slot 0's shape, one word further
    entries.append((0, 2, cfg.max_features + 1, 0))        # slot 8: more classes than LOSS takes
    await _setup(device, machine, rng, entries, extremes=False)
    labels = rng.integers(0, 10, size=8)                   # the DUT's data, cursor and keys outlive a test
    for side in (machine, device):
        await maybe_await(side.write_labels(0, labels))
        await maybe_await(side.set_cursor(0, 0, 0))
        await maybe_await(side.set_keys(5, 6))
    tiny = Geometry(batch=1, height=2, width=2, kh=1, kw=1)        # slot 0 (4x8) is its input
    programs = [
        [isa.Instruction(isa.Op.HALT, f4=1)],
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
        # geometry instructions: a key that is no geometry, CONV's f0 without f1, a window that does not
        # tile the image, shapes the geometry does not fit, a legal POOL
        [isa.Instruction(isa.Op.CONV, a=0, b=1, key=0), isa.halt()],
        [isa.Instruction(isa.Op.CONV, a=0, b=1, f0=1, key=tiny.encode()), isa.halt()],
        [isa.pool(0, Geometry(batch=1, height=3, width=4, kh=2, kw=2)), isa.halt()],
        [isa.conv(0, 1, tiny), isa.halt()],
        [isa.conv(1, 0, tiny, mode="gradient"), isa.halt()],
        [isa.unpool(7, 0, Geometry(batch=1, height=2, width=2, kh=2, kw=2)), isa.halt()],
        [isa.pool(0, Geometry(batch=1, height=2, width=2, kh=2, kw=2)), isa.quant(2), isa.halt()],
        # LOSS: labels not (rows of A) x 1, too many classes, A past TMEM, then a legal one
        [isa.loss(0, 6), isa.halt()],
        [isa.loss(0, 1), isa.halt()],
        [isa.loss(8, 6), isa.halt()],
        [isa.loss(4, 6), isa.halt()],
        [isa.loss(6, 6), isa.quant(6), isa.halt()],
        # LOAD: labels into more than one column, an empty set, a set past the label memory or the data
        # memory, dst past TMEM, then a legal one
        [isa.load(0, 0, 4, labels=True), isa.halt()],
        [isa.Instruction(isa.Op.LOAD, dst=6, key=5), isa.halt()],
        [isa.load(6, cfg.data_samples - 2, 3, labels=True), isa.halt()],
        [isa.load(8, 0, cfg.data_samples), isa.halt()],
        [isa.load(4, 0, 1), isa.halt()],
        [isa.Instruction(isa.Op.LOAD, dst=6, f0=1, f4=1, key=5 << 16), isa.halt()],
        [isa.load(6, 0, 5, labels=True, shuffle=True), isa.halt()],
    ]
    for program in programs:
        words = [inst.encode() for inst in program]
        words += [15] if program[-1].op != isa.Op.HALT else []
        got, want = await _run_both(device, machine, words)
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
    await _start(dut)
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
    await _start(dut)
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


@cocotb.test(skip=os.environ.get("EOQ_MODE") == "quick")
async def autonomous_epoch_identical(dut):
    """A whole training epoch of the digits on the resident data set (one LOOP), then the test set's
    evaluation: the core's weights, loss counters and progress equal the golden machine's."""
    s = settings(dut)
    await _start(dut)
    device = CoreDevice(dut, s.cfg)
    data = load_digits_split()
    sets = (quantize_input(data.train_x, s.cfg), data.train_y, quantize_input(data.test_x, s.cfg), data.test_y)
    seed = s.seed % 1000

    def run(dev):
        trainer = AutonomousTrainer(dev, ResMLP(s.cfg, seed, lr_shift=4, arithmetic=INT_LOSS), s.cfg.max_batch, *sets)
        steps = trainer.epoch_steps()
        return steps, trainer.train_epoch(), trainer.evaluate(), trainer.params(), dev.progress()

    got = await external(run)(device.blocking())
    want = run(GoldenDevice(s.cfg))
    assert got[0] == want[0]
    for name in PARAMS:
        assert np.array_equal(got[3][name].q, want[3][name].q) and got[3][name].exp == want[3][name].exp, \
            f"{name} differs after an autonomous epoch"
    assert got[1:3] == want[1:3], f"loss counters (train, test) {got[1:3]}, golden {want[1:3]}"
    assert got[4] == want[4], f"progress {got[4]}, golden {want[4]}"
    dut._log.info(f"autonomous epoch: {got[0]} steps, {device.total_cycles} core cycles with the evaluation; "
                  f"train {got[1]}, test {got[2]}")


# ---- the convolutional instructions and network ---------------------------------------------------

def _geometry_program(rng, cfg):
    """A random geometry, tensors of its shapes, and a program of CONV, POOL and UNPOOL over them."""
    while True:
        pool = Geometry(batch=int(rng.integers(1, 3)), height=int(rng.choice([2, 4])), width=int(rng.choice([2, 4])),
                        kh=2, kw=2)
        try:        # a window larger than the padded image is drawn again
            g = Geometry(batch=pool.batch, height=pool.height, width=pool.width, kh=int(rng.choice([1, 3])),
                         kw=int(rng.choice([1, 3])), stride=int(rng.choice([1, 2])), pad_h=int(rng.integers(2)),
                         pad_w=int(rng.integers(2)))
            break
        except ValueError:
            continue
    c, o = int(rng.integers(1, 2 * cfg.lanes)), int(rng.integers(1, 2 * cfg.lanes))
    cp = -(-c // cfg.lanes) * cfg.lanes
    shapes = [(g.in_rows, c), (o, g.taps * cp), (g.out_rows, o), (g.in_rows, c), (g.out_rows, o), (o, g.taps * cp),
              (pool.pool_map().out_rows, c), (g.in_rows, c)]
    lr, key = int(rng.integers(0, 12)), int(rng.integers(2**32))
    rounding = [{"stochastic": bool(rng.integers(2)), "key": int(rng.integers(2**32))} for _ in range(3)]
    program = [isa.conv(0, 1, g), isa.quant(4, relu=True, **rounding[0]),          # forward
               isa.conv(4, 1, g, mode="error", dst=0), isa.quant(3, mask=0, **rounding[1]),   # error, masked
               isa.conv(4, 0, g, mode="gradient"),                                  # gradient -> update
               isa.qupdate(1, lr, stochastic_grad=bool(rng.integers(2)), stochastic_update=True, key=key),
               isa.pool(3, pool), isa.quant(6, **rounding[2]), isa.unpool(7, 6, pool), isa.halt()]
    return shapes, program


@cocotb.test()
async def conv_instructions_match_machine(dut):
    """Random geometries: CONV's three products (with their QUANT and masked QUANT, each nearest or stochastic,
    and QUPDATE), POOL and UNPOOL on the core leave the machine's TMEM and exponents."""
    s = settings(dut)
    rng = np.random.default_rng(s.seed)
    await _start(dut)
    device = CoreDevice(dut, s.cfg)
    for trial in range(4):
        shapes, program = _geometry_program(rng, s.cfg)
        machine = Machine(s.cfg)
        entries = _layout(s.cfg, rng, shapes)
        await _setup(device, machine, rng, entries, extremes=trial == 0)
        w = machine.table[1]                          # the weights' padding channels are 0 (the layout's rule)
        cp = -(-shapes[0][1] // s.cfg.lanes) * s.cfg.lanes
        q = machine.read_tensor(1).q.reshape(w.rows, -1, cp)
        q[:, :, shapes[0][1]:] = 0
        t = QTensor(q.reshape(w.rows, w.cols), w.exp)
        machine.write_tensor(1, t)
        await device.write_tensor(1, t)
        words = [inst.encode() for inst in program]
        machine.load_program(words)
        await device.load_program(words)
        machine.loop(0, 1, advance=False)       # the device's RUN: one pass
        await device.run()
        await _compare_state(device, machine, range(len(entries)), f"trial {trial} {[i.op.name for i in program]}")


def _cnn(s):
    data = load_digits_split()
    return data, ResCNN(s.cfg, s.seed % 1000, lr_shift=2)


@cocotb.test()
async def cnn_step_op_by_op(dut):
    """One training step of the convolutional ResNet (batch 4, or the largest below it whose tensors all
    fit TMEM in words of their own): every activation, error and parameter equals the golden ResCNN's,
    tensor by tensor."""
    s = settings(dut)
    await _start(dut)
    device = CoreDevice(dut, s.cfg)
    data, reference = _cnn(s)
    batch = largest_batch(reference, most=4, reuse=False)
    idx = np.random.default_rng(s.seed).choice(len(data.train_y), batch, replace=False)
    x, labels = input_rows(data.train_x[idx], reference.spec, s.cfg), data.train_y[idx]

    @external
    def host_step():
        trainer = ProgramTrainer(device.blocking(), ResCNN(s.cfg, s.seed % 1000, lr_shift=2), batch, reuse=False)
        trainer.train_step(x, labels)
        return trainer.program

    program = await host_step()
    trace = Trace()
    reference.train_step(x, labels, trace)
    tensors = {name: out for name, _, out in trace.records}
    compared = 0
    for name, place in program.places.items():
        if name in program.params:
            want = reference.params[name]
        elif name in tensors:
            want = next(iter(tensors[name].values()))
        else:
            continue
        got = await device.read_tensor(place.slot)
        assert np.array_equal(got.q.reshape(want.q.shape), want.q) and got.exp == want.exp, \
            f"{name} differs from the golden ResCNN (EOQ_SEED={s.seed})"
        compared += 1
    assert compared >= len(program.params) + 20, f"only {compared} tensors compared"
    dut._log.info(f"one CNN step at batch {batch}: {device.total_cycles} core cycles, {compared} tensors compared")

    # frozen-exponent inference with the trained weights, calibrated on the batch, at its size and 1
    calibrated = calibrate(reference, x)
    machine = ProgramTrainer(Machine(s.cfg), reference, batch)
    rows = x.q.shape[0] // batch

    @external
    def host_inference():
        trainer = ProgramTrainer(device.blocking(), reference, batch)
        return [trainer.infer(x, calibrated), trainer.infer(QTensor(x.q[:rows], x.exp), calibrated)]

    together, alone = await host_inference()
    want = machine.infer(x, calibrated)
    assert np.array_equal(together.q, want.q) and together.exp == want.exp, "frozen inference differs"
    assert np.array_equal(alone.q[0], want.q[0]), "a sample's frozen-inference logits depend on its batch"


@cocotb.test(skip=os.environ.get("EOQ_MODE") == "quick")
async def cnn_twenty_steps_identical(dut):
    """20 training steps of the ResNet at the largest batch the configuration holds (max_batch, or fewer
    where TMEM is smaller; words reused by lifetime) end with the golden model's weights, bit for bit."""
    s = settings(dut)
    await _start(dut)
    device = CoreDevice(dut, s.cfg)
    data, reference = _cnn(s)
    batch = largest_batch(reference)
    rng = np.random.default_rng(s.seed)
    batches = [rng.choice(len(data.train_y), batch, replace=False) for _ in range(CNN_STEPS)]
    inputs = [input_rows(data.train_x[idx], reference.spec, s.cfg) for idx in batches]

    @external
    def host_training():
        trainer = ProgramTrainer(device.blocking(), ResCNN(s.cfg, s.seed % 1000, lr_shift=2), batch)
        losses = [trainer.train_step(x, data.train_y[idx]) for x, idx in zip(inputs, batches)]
        return losses, trainer.params()

    losses, params = await host_training()
    golden = [reference.train_step(x, data.train_y[idx]) for x, idx in zip(inputs, batches)]
    assert losses == golden, "losses differ: the logits differed at some step"
    for name, want in reference.params.items():
        assert np.array_equal(params[name].q, want.q) and params[name].exp == want.exp, \
            f"{name} differs after {CNN_STEPS} steps (EOQ_SEED={s.seed})"
    dut._log.info(f"{CNN_STEPS} CNN steps at batch {batch}: {device.total_cycles} core cycles, "
                  f"{device.total_cycles / CNN_STEPS:.0f} per step; final loss {losses[-1]:.4f}")
