"""Bench section "core": cycles per training step on the simulated core, by phase.

Builds the core with the cocotb harness of sim_tests (Verilator), runs a few
training steps of the reference network (sim_tests/bench_core.py) and
reports: cycles of the forward and backward programs, cycles per opcode,
useful MACs per phase (the golden model's MacCounter), and MAC utilization
= useful MACs / (PEs x cycles) per phase and for the whole step, at the
configuration's batch (16) and at batch 1 (``batch1``: EOQ's online training,
where a matrix-vector product keeps one row of the array busy).  Host-link
transfers are not in these cycles: bench/host_link.py measures them.
"""

from __future__ import annotations

import json
import os
import tempfile

from golden_model.arithmetic import Arithmetic
from golden_model.cnn import ResNetSpec
from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.network import ResMLP, mlp_sizes, quantize_input
from golden_model.program import ProgramTrainer
from host.client import LinkClient
from protocol.link_model import LinkDevice, LoopbackTransport
from sim_tests.runner import build


def utilization(macs: int, pes: int, cycles: int) -> float:
    return round(macs / (pes * cycles), 4) if cycles else 0.0


def summarize(raw: dict, link_bytes_per_step: int | None = None) -> dict:
    """Turn the cocotb module's counters into per-phase figures.

    The counters are cycles with an instruction of each opcode in flight; two
    instructions may be in flight at once, so they add up to more than the
    run.  ``HALT`` counts the cycles with none in flight (fetch, checks,
    waits).  ``overlapped_cycles`` is how many cycles two ran side by side.
    """
    pes = raw["pes"]
    macs = raw["macs"]
    forward, backward = raw["forward_cycles"], raw["backward_cycles"]
    step = forward + backward
    useful = sum(macs.values())
    ops = {name: raw["forward_ops"][name] + raw["backward_ops"][name] for name in raw["forward_ops"]}
    idle = ops.pop("HALT")
    phases = {
        "forward": {"cycles": forward, "macs": macs.get("forward", 0)},
        "backward_and_update": {"cycles": backward, "macs": macs.get("backward", 0) + macs.get("gradient", 0)},
    }
    for phase in phases.values():
        phase["mac_utilization"] = utilization(phase["macs"], pes, phase["cycles"])
    result = {
        "config": raw["config"], "batch": raw["batch"], "pes": pes,
        "cycles_per_step": step, "useful_macs_per_step": useful,
        "mac_utilization": utilization(useful, pes, step),
        "phases": phases,
        "update_engine_cycles": ops.get("UPDATE", 0) + ops.get("QUPDATE", 0),
        "overlapped_cycles": sum(ops.values()) + idle - step,
        "sequencer_idle_cycles": idle,
        "cycles_in_flight_by_opcode": ops,
        "product_utilization": utilization(useful - _elementwise_macs(raw), pes, ops["MATMUL"] + ops.get("CONV", 0)),
        "cocotb_cycles_per_wall_second": round(raw["total_cycles"] / raw["wall_seconds"], 1),
    }
    if link_bytes_per_step:
        result["transfers"] = {
            "link_bytes_per_step": link_bytes_per_step,
            "cycles_at_one_byte_per_cycle": link_bytes_per_step,
            "mac_utilization_with_transfers": utilization(useful, pes, step + link_bytes_per_step),
        }
    return result


def _elementwise_macs(raw: dict) -> int:
    """MACs the vector engine does (each block's scalar multiplier forward and backward, and its DOT):
    three passes over the block's output each."""
    if raw.get("arch", "mlp") == "cnn":
        return sum(3 * b.conv2.geometry(raw["batch"]).out_rows * b.conv2.out_channels for b in ResNetSpec().blocks)
    return 3 * raw["batch"] * mlp_sizes()["fc2"][0]


def simulate(config: str, arch: str, steps: int, loss: str = "float", batch: int | None = None) -> dict:
    """The cocotb module's raw counters for ``steps`` training steps of ``arch`` on the simulated core
    (``loss``: the output error from the host, float, or from the core's LOSS, int; ``batch``: samples per
    step, None for the configuration's max_batch)."""
    runner, directory = build("eoq_core", config, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "core.json")
        env = {"EOQ_CONFIG": config, "EOQ_BENCH_OUT": out, "EOQ_SEED": "1", "EOQ_BENCH_STEPS": str(steps),
               "EOQ_BENCH_ARCH": arch, "EOQ_BENCH_LOSS": loss, "EOQ_BENCH_BATCH": str(batch or "")}
        runner.test(hdl_toplevel="eoq_core", hdl_toplevel_lang="verilog", test_module="sim_tests.bench_core",
                    build_dir=directory, test_dir=directory, extra_env=env, results_xml="bench-results.xml")
        with open(out) as handle:
            return json.load(handle)


def run(quick: bool = False, config: str = "default") -> dict:
    """The step with the host's float error; ``device_loss``: the same step with the core's LOSS;
    ``batch1``: the step of one sample."""
    steps = 2 if quick else 3
    result = summarize(simulate(config, "mlp", steps), link_bytes_per_step())
    result["device_loss"] = summarize(simulate(config, "mlp", steps, loss="int"), link_bytes_per_step(loss="int"))
    result["batch1"] = summarize(simulate(config, "mlp", steps, batch=1), link_bytes_per_step(batch=1))
    return result


def link_bytes_per_step(config: str = "default", loss: str = "float", batch: int | None = None) -> int:
    """Host-link bytes (both directions) of one training step of ``batch`` samples (None: the
    configuration's max_batch), counted on the golden device."""
    cfg = get_config(config)
    data = load_digits_split()
    client = LinkClient(LoopbackTransport(LinkDevice(cfg)), cfg)
    batch = batch or cfg.max_batch
    trainer = ProgramTrainer(client, ResMLP(cfg, 0, lr_shift=4, arithmetic=Arithmetic(loss=loss)), batch)
    x, y = quantize_input(data.train_x[:batch], cfg), data.train_y[:batch]
    trainer.train_step(x, y)
    before = client.stats.bytes_out + client.stats.bytes_in
    trainer.train_step(x, y)
    return client.stats.bytes_out + client.stats.bytes_in - before
