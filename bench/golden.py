"""Benchmark section ``golden``: speed of the NumPy EOQ golden model.

For batch 16 and batch 1 it times full training epochs (training steps only,
no evaluation) of the EOQ int8 golden model and of the float32 reference,
interleaved (golden, fp32, golden, fp32, ...) so that both see the same machine
state, and reports medians over the repeats:

    golden.batch16.step_seconds          median time of one training step
    golden.batch16.epoch_seconds         median time of one training epoch
    golden.batch16.fp32_step_seconds / fp32_epoch_seconds
    golden.batch16.int8_over_fp32_time_ratio   median over repeats of golden/fp32 epoch time
    golden.batch16.int_macs_per_step     int8 MACs of one full-batch step (ResMLP MacCounter)
    golden.batch16.int_macs_per_step_by_phase
    golden.batch16.int_macs_per_epoch
    golden.batch16.golden_macs_per_second
    golden.int8_over_fp32_time_ratio     the batch-16 ratio (headline figure)
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from golden_model.config import get_config
from golden_model.data import Digits, batches, load_digits_split
from golden_model.train import FloatTarget, GoldenTarget, default_lr_shift

#: batch -> interleaved repeats (each repeat is one golden and one fp32 epoch)
REPEATS = {16: 5, 1: 3}
QUICK_REPEATS = {16: 2, 1: 1}
SEED = 0


def make_target(kind: str, batch: int, seed: int = SEED):
    lr_shift = default_lr_shift(batch)
    if kind == "golden":
        cfg = get_config("default")
        return GoldenTarget(cfg.replace(max_batch=max(cfg.max_batch, batch)), seed, lr_shift)
    return FloatTarget(seed, lr_shift)


def time_epoch(target, data: Digits, batch: int, seed: int) -> tuple[float, list[float]]:
    """Wall time of one training epoch and of each of its steps (same order for every target)."""
    steps = []
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for idx in batches(len(data.train_y), batch, rng):
        t0 = time.perf_counter()
        target.step(data.train_x[idx], data.train_y[idx])
        steps.append(time.perf_counter() - t0)
    return time.perf_counter() - start, steps


def count_macs(data: Digits, batch: int) -> dict:
    target = make_target("golden", batch)
    target.step(data.train_x[:batch], data.train_y[:batch])
    per_step = target.macs.total
    by_phase = dict(sorted(target.macs.by_phase.items()))
    # a whole epoch, including the smaller last batch (MACs are linear in the batch size)
    full, last = divmod(len(data.train_y), batch)
    per_epoch = full * per_step + (per_step * last) // batch
    return {"int_macs_per_step": per_step, "int_macs_per_step_by_phase": by_phase,
            "int_macs_per_epoch": per_epoch}


def bench_batch(data: Digits, batch: int, repeats: int) -> dict:
    # warm-up: imports, caches, first-call allocations
    for kind in ("golden", "fp32"):
        t = make_target(kind, batch)
        for i in range(3):
            t.step(data.train_x[i * batch:(i + 1) * batch], data.train_y[i * batch:(i + 1) * batch])
    epochs = {"golden": [], "fp32": []}
    steps = {"golden": [], "fp32": []}
    ratios = []
    for r in range(repeats):
        for kind in ("golden", "fp32"):
            seconds, step_times = time_epoch(make_target(kind, batch, SEED + r), data, batch, SEED + r)
            epochs[kind].append(seconds)
            steps[kind].extend(step_times)
        ratios.append(epochs["golden"][-1] / epochs["fp32"][-1])
    result = {
        "batch": batch,
        "repeats": repeats,
        "steps_per_epoch": -(-len(data.train_y) // batch),
        "step_seconds": statistics.median(steps["golden"]),
        "epoch_seconds": statistics.median(epochs["golden"]),
        "fp32_step_seconds": statistics.median(steps["fp32"]),
        "fp32_epoch_seconds": statistics.median(epochs["fp32"]),
        "int8_over_fp32_time_ratio": statistics.median(ratios),
    }
    result.update(count_macs(data, batch))
    result["golden_macs_per_second"] = result["int_macs_per_step"] / result["step_seconds"]
    return result


def run(quick: bool = False) -> dict:
    data = load_digits_split()
    repeats = QUICK_REPEATS if quick else REPEATS
    out = {f"batch{b}": bench_batch(data, b, n) for b, n in repeats.items()}
    out["int8_over_fp32_time_ratio"] = out["batch16"]["int8_over_fp32_time_ratio"]
    return out
