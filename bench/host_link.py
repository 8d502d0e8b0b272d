"""Bench section ``host_link``: what bounds a real board, and how fast the simulated board runs.

For training steps of the digits ResMLP (batch 16) on the simulated board
(sim target) it measures:

* host-link bytes per step (host -> device and back) and the time they take
  on a UART at ``baud`` (10 bits per byte; stop-and-wait, so directions add),
  plus the frames (request/answer round trips) per step;
* the core's compute cycles per step (the cycle counts the RUN answers
  report) and their time at ``fmax_mhz``;
* which of the two bounds a real board and by what factor;
* the same for autonomous training (``autonomous``): one epoch of the digits
  on the resident data set as one LOOP and the test set's evaluation, the
  link bytes per step amortised over that epoch, the link's share of the
  board's wall time, the board's throughput at ``fmax_mhz`` (the one-time
  upload reported apart);
* training throughput (samples per wall second) on the sim target and on
  the golden target (the golden Machine behind the same Device API), and
  the simulated board's speed (simulated cycles per wall second, counted
  by the harness over its whole session, idle link cycles included).

Fmax: ``--fmax MHZ`` (``python -m bench.host_link``), else the environment
variable EOQ_FMAX_MHZ, else the lowest achieved core clock of
build/fpga/ulx3s-*-<config>/fpga_report.json when the FPGA flow has written
one, else the board's default core clock (fpga.top.DEFAULT_FREQ).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from fpga.top import DEFAULT_FREQ
from golden_model.arithmetic import Arithmetic
from golden_model.autonomous import AutonomousTrainer
from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.network import ResMLP, quantize_input
from golden_model.program import ProgramTrainer
from host.device import open_device

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BAUD = 3_000_000
BITS_PER_BYTE = 10


def fpga_fmax(config: str = "default") -> tuple[float | None, str | None]:
    """The lowest achieved clock of the newest FPGA report for ``config`` (None if there is none)."""
    reports = sorted((ROOT / "build" / "fpga").glob(f"*-{config}/fpga_report.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(reports):
        try:
            clocks = json.loads(path.read_text()).get("clocks") or []
            achieved = [float(c["achieved_mhz"]) for c in clocks if "achieved_mhz" in c]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if achieved:
            return min(achieved), str(path.relative_to(ROOT))
    return None, None


def choose_fmax(fmax_mhz: float | None, config: str) -> tuple[float, str]:
    if fmax_mhz is not None:
        return float(fmax_mhz), "command line"
    if os.environ.get("EOQ_FMAX_MHZ"):
        return float(os.environ["EOQ_FMAX_MHZ"]), "EOQ_FMAX_MHZ"
    found, source = fpga_fmax(config)
    if found is not None:
        return found, source
    return DEFAULT_FREQ / 1e6, "fpga.top.DEFAULT_FREQ (no FPGA report yet)"


def measure(target: str, steps: int, batch: int = 16, config: str = "default", seed: int = 0) -> dict:
    """Train ``steps`` steps on ``target`` through the Device API; per-step link and cycle figures."""
    cfg = get_config(config)
    data = load_digits_split()
    device = open_device(target, cfg, **({"log": lambda m: print(m, file=sys.stderr)} if target == "sim" else {}))
    try:
        trainer = ProgramTrainer(device, ResMLP(cfg, seed, 4), batch)
        xs = [(quantize_input(data.train_x[i * batch:(i + 1) * batch], cfg), data.train_y[i * batch:(i + 1) * batch])
              for i in range(steps)]
        trainer.train_step(*xs[0])                      # warm-up (first step writes the table once)
        before = device.stats
        start = time.perf_counter()
        for x, labels in xs[1:]:
            trainer.train_step(x, labels)
        seconds = time.perf_counter() - start
        delta = device.stats.minus(before)
    finally:
        device.close()
    n = steps - 1
    result = {
        "steps": n,
        "samples_per_second": round(n * batch / seconds, 2),
        "step_seconds": seconds / n,
        "cycles_per_step": delta.cycles / n,
        "bytes_out_per_step": delta.bytes_out / n,
        "bytes_in_per_step": delta.bytes_in / n,
        "frames_per_step": delta.frames / n,
        "retries": delta.retries,
    }
    harness = getattr(device, "harness_stats", None)
    if harness:
        result["sim_cycles"] = harness.get("cycles")
        result["sim_wall_seconds"] = harness.get("wall_seconds")
        result["sim_cycles_per_second"] = harness.get("cycles_per_second")
    return result


def measure_autonomous(target: str, steps: int | None, batch: int = 16, config: str = "default",
                       seed: int = 0) -> dict:
    """One epoch (``steps``: that many steps) on the resident data set as one LOOP, then the test set's
    evaluation: the link bytes and core cycles of both (golden_model/autonomous.py)."""
    cfg = get_config(config)
    data = load_digits_split()
    device = open_device(target, cfg, **({"log": lambda m: print(m, file=sys.stderr)} if target == "sim" else {}))
    try:
        model = ResMLP(cfg, seed, 4, arithmetic=Arithmetic(loss="int"))
        trainer = AutonomousTrainer(device, model, batch, quantize_input(data.train_x, cfg), data.train_y,
                                    quantize_input(data.test_x, cfg), data.test_y)
        upload = device.stats
        steps = steps or trainer.epoch_steps()
        trainer.train_epoch(steps)
        trained = device.stats
        trainer.evaluate()
        evaluated = device.stats
    finally:
        device.close()
    train, evaluation = trained.minus(upload), evaluated.minus(trained)
    return {"steps": steps, "upload_bytes": upload.bytes_in + upload.bytes_out,
            "train_bytes": train.bytes_in + train.bytes_out, "train_cycles": train.cycles,
            "eval_bytes": evaluation.bytes_in + evaluation.bytes_out, "eval_cycles": evaluation.cycles,
            "poll_bytes": train.poll_bytes + evaluation.poll_bytes}


def autonomous_figures(a: dict, fmax: float, baud: int, batch: int = 16) -> dict:
    """The board's epoch with the host out of the step loop: link bytes per step amortised over the epoch
    (its evaluation included), throughput at ``fmax`` with the link's time added, the link's share.

    The STATUS polls that found the LOOP still busy (``poll_bytes``) are left out: the client polls when
    no answer came within its timeout (1 s), which the simulated core's epoch outlasts (seconds) and a
    board's (tens of milliseconds) does not; ``bytes_per_step_sim`` keeps them."""
    link_bytes = a["train_bytes"] + a["eval_bytes"] - a["poll_bytes"]
    link_seconds = link_bytes * BITS_PER_BYTE / baud
    compute_seconds = (a["train_cycles"] + a["eval_cycles"]) / (fmax * 1e6)
    wall = link_seconds + compute_seconds
    return {"steps": a["steps"], "upload_bytes": a["upload_bytes"],
            "upload_seconds": a["upload_bytes"] * BITS_PER_BYTE / baud,
            "bytes_per_step": round(link_bytes / a["steps"], 2),
            "bytes_per_step_sim": round((link_bytes + a["poll_bytes"]) / a["steps"], 2),
            "core_cycles_per_step": a["train_cycles"] / a["steps"], "eval_cycles": a["eval_cycles"],
            "link_share": round(link_seconds / wall, 5),
            "board_samples_per_second": round(a["steps"] * batch / wall, 1)}


def run(quick: bool = False, fmax_mhz: float | None = None, baud: int = DEFAULT_BAUD, config: str = "default",
        steps: int | None = None) -> dict:
    steps = steps or (6 if quick else 40)
    fmax, fmax_source = choose_fmax(fmax_mhz, config)
    sim = measure("sim", steps, config=config)
    golden = measure("golden", steps, config=config)
    autonomous = autonomous_figures(measure_autonomous("sim", 8 if quick else None, config=config), fmax, baud)
    link_bytes = sim["bytes_out_per_step"] + sim["bytes_in_per_step"]
    link_seconds = link_bytes * BITS_PER_BYTE / baud
    compute_seconds = sim["cycles_per_step"] / (fmax * 1e6)
    bound = "host link" if link_seconds > compute_seconds else "core compute"
    factor = max(link_seconds, compute_seconds) / max(min(link_seconds, compute_seconds), 1e-12)
    board_step = link_seconds + compute_seconds
    summary = (f"a real board at {baud / 1e6:g} Mbaud and {fmax:g} MHz is bound by the {bound}: "
               f"{link_seconds * 1e3:.2f} ms of link bytes vs {compute_seconds * 1e3:.3f} ms of core cycles "
               f"per step ({factor:.1f}x)")
    return {
        "config": config,
        "batch": 16,
        "baud": baud,
        "fmax_mhz": fmax,
        "fmax_source": fmax_source,
        "bytes_per_step": {"out": sim["bytes_out_per_step"], "in": sim["bytes_in_per_step"], "total": link_bytes},
        "frames_per_step": sim["frames_per_step"],
        "link_seconds_per_step": link_seconds,
        "core_cycles_per_step": sim["cycles_per_step"],
        "compute_seconds_per_step": compute_seconds,
        "bound": bound,
        "bound_factor": round(factor, 2),
        "summary": summary,
        # The host waits for each answer before the next request and the core runs only
        # between them, so on a board the two add up (host CPU and USB latency not included).
        "board_step_seconds": board_step,
        "board_samples_per_second": round(16 / board_step, 1),
        "sim": {"samples_per_second": sim["samples_per_second"], "step_seconds": sim["step_seconds"],
                "cycles_per_second": sim.get("sim_cycles_per_second"), "retries": sim["retries"]},
        "golden": {"samples_per_second": golden["samples_per_second"], "step_seconds": golden["step_seconds"]},
        "sim_vs_golden_speed": round(sim["samples_per_second"] / golden["samples_per_second"], 3),
        "steps_measured": sim["steps"],
        # the host out of the step loop: the data resident on the core, an epoch per LOOP command
        "autonomous": autonomous,
        "autonomous_vs_host_loop_throughput": round(autonomous["board_samples_per_second"] / (16 / board_step), 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.host_link", description=__doc__.splitlines()[0])
    parser.add_argument("--fmax", type=float, default=None, help="core clock in MHz (default: FPGA report, else the board default)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    parser.add_argument("--config", default="default")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick, args.fmax, args.baud, args.config, args.steps), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
