"""cocotb module behind bench/core.py: cycles of training steps on the simulated core, by phase.

Runs STEPS training steps of a network ($EOQ_BENCH_ARCH: mlp, the residual
MLP, or cnn, the ResNet; $EOQ_BENCH_LOSS: float, the host's error, or int,
the core's LOSS; $EOQ_BENCH_BATCH: samples per step, default the
configuration's max_batch) through the same host flow as the golden model
(golden_model.program.ProgramTrainer on sim_tests.core_device.CoreDevice),
reads the sequencer's per-opcode cycle counters around every run, and writes
the figures to $EOQ_BENCH_OUT.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import cocotb
from cocotb.decorators import external, function

from golden_model.arithmetic import Arithmetic
from golden_model.cnn import ResCNN, input_rows
from golden_model.data import load_digits_split
from golden_model.isa import Op
from golden_model.network import ResMLP, quantize_input
from golden_model.program import ProgramTrainer

from .common import read_unsigned, settings, start
from .core_device import CoreDevice

STEPS = int(os.environ.get("EOQ_BENCH_STEPS", "3"))
ARCH = os.environ.get("EOQ_BENCH_ARCH", "mlp")
ARITHMETIC = Arithmetic(loss=os.environ.get("EOQ_BENCH_LOSS", "float"))
BATCH = os.environ.get("EOQ_BENCH_BATCH")


def network(cfg):
    """The benchmarked network and its input conversion."""
    if ARCH == "cnn":
        model = ResCNN(cfg, 0, lr_shift=2, arithmetic=ARITHMETIC)
        return model, lambda pixels: input_rows(pixels, model.spec, cfg)
    return ResMLP(cfg, 0, lr_shift=4, arithmetic=ARITHMETIC), lambda pixels: quantize_input(pixels, cfg)


def op_cycles(dut) -> np.ndarray:
    bits = read_unsigned(dut.sequencer.op_cycles)
    return np.array([(bits >> (32 * op)) & 0xFFFF_FFFF for op in range(len(Op))], dtype=np.int64)


@cocotb.test()
async def training_step_cycles(dut):
    s = settings(dut)
    await start(dut)
    device = CoreDevice(dut, s.cfg)
    data = load_digits_split()
    rng = np.random.default_rng(s.seed)
    batch = int(BATCH) if BATCH else s.cfg.max_batch
    batches = [rng.choice(len(data.train_y), batch, replace=False) for _ in range(STEPS)]
    runs = []

    @function
    async def read_counters():
        return op_cycles(dut)

    class Recording:
        """The device API, recording cycles and per-opcode counters of every run."""

        def __getattr__(self, name):
            return getattr(device.blocking(), name)

        def run(self, pc=0):
            before = read_counters()
            cycles = device.blocking().run(pc)
            runs.append({"pc": pc, "cycles": cycles, "ops": (read_counters() - before).tolist()})
            return cycles

    model, inputs = network(s.cfg)

    @external
    def host():
        trainer = ProgramTrainer(Recording(), model, batch)
        start_time = time.perf_counter()
        for idx in batches:
            trainer.train_step(inputs(data.train_x[idx]), data.train_y[idx])
        return time.perf_counter() - start_time

    wall = await host()
    reference, _ = network(s.cfg)
    reference.train_step(inputs(data.train_x[batches[0]]), data.train_y[batches[0]])
    forward = [r for r in runs if r["pc"] == 0]
    backward = [r for r in runs if r["pc"] != 0]
    result = {
        "config": s.cfg.name, "arch": ARCH, "steps": STEPS, "batch": batch, "pes": s.cfg.num_pes,
        "forward_cycles": forward[-1]["cycles"], "backward_cycles": backward[-1]["cycles"],
        "forward_ops": dict(zip([op.name for op in Op], forward[-1]["ops"])),
        "backward_ops": dict(zip([op.name for op in Op], backward[-1]["ops"])),
        "macs": dict(reference.macs.by_phase),
        "wall_seconds": wall, "total_cycles": sum(r["cycles"] for r in runs),
    }
    with open(os.environ["EOQ_BENCH_OUT"], "w") as handle:
        json.dump(result, handle, indent=2)

