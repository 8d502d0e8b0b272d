"""Bench section "core": cycles per training step on the simulated core, by phase.

Builds the core with the cocotb harness of sim_tests (Verilator), runs a few
training steps of the reference network (sim_tests/bench_core.py) and
reports: cycles of the forward and backward programs, cycles per opcode,
useful MACs per phase (the golden model's MacCounter), and MAC utilization
= useful MACs / (PEs x cycles) per phase and for the whole step.  Host-link
transfers are not in these cycles: bench/host_link.py measures them.
"""

from __future__ import annotations

import json
import os
import tempfile

from golden_model.network import mlp_sizes


def utilization(macs: int, pes: int, cycles: int) -> float:
    return round(macs / (pes * cycles), 4) if cycles else 0.0


def summarize(raw: dict) -> dict:
    """Turn the cocotb module's counters into per-phase figures."""
    pes = raw["pes"]
    macs = raw["macs"]
    forward, backward = raw["forward_cycles"], raw["backward_cycles"]
    # the weight updates; QUPDATE also quantizes the gradient (fused, one pass)
    update = raw["backward_ops"].get("UPDATE", 0) + raw["backward_ops"].get("QUPDATE", 0)
    step = forward + backward
    useful = sum(macs.values())
    phases = {
        "forward": {"cycles": forward, "macs": macs.get("forward", 0)},
        "backward": {"cycles": backward - update, "macs": macs.get("backward", 0) + macs.get("gradient", 0)},
        "update": {"cycles": update, "macs": 0},
    }
    for phase in phases.values():
        phase["mac_utilization"] = utilization(phase["macs"], pes, phase["cycles"])
    ops = {name: raw["forward_ops"][name] + raw["backward_ops"][name] for name in raw["forward_ops"]}
    matmul = ops["MATMUL"]
    return {
        "config": raw["config"], "batch": raw["batch"], "pes": pes,
        "cycles_per_step": step, "useful_macs_per_step": useful,
        "mac_utilization": utilization(useful, pes, step),
        "phases": phases,
        "cycles_by_opcode": ops,
        "matmul_utilization": utilization(macs.get("forward", 0) + macs.get("backward", 0) + macs.get("gradient", 0)
                                          - _elementwise_macs(raw), pes, matmul),
        "cocotb_cycles_per_wall_second": round(raw["total_cycles"] / raw["wall_seconds"], 1),
    }


def _elementwise_macs(raw: dict) -> int:
    """MACs the vector engine does (scalar multiplier forward and backward, DOT): batch x hidden each."""
    hidden = mlp_sizes()["fc2"][0]
    return 3 * raw["batch"] * hidden


def run(quick: bool = False, config: str = "default") -> dict:
    from sim_tests.test_sim import build
    runner, directory = build("eoq_core", config, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "core.json")
        env = {"EOQ_CONFIG": config, "EOQ_BENCH_OUT": out, "EOQ_SEED": "1",
               "EOQ_BENCH_STEPS": "2" if quick else "3"}
        runner.test(hdl_toplevel="eoq_core", hdl_toplevel_lang="verilog", test_module="sim_tests.bench_core",
                    build_dir=directory, test_dir=directory, extra_env=env, results_xml="bench-results.xml")
        with open(out) as handle:
            raw = json.load(handle)
    return summarize(raw)
