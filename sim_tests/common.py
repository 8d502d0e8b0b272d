"""Shared pieces of the cocotb benches: settings, clock/reset, payload codecs, stream driver/monitor.

The pytest side (sim_tests/test_sim.py) passes the configuration to the
simulator process in environment variables: EOQ_CONFIG (a CONFIGS name),
EOQ_LANES (lane count of laned units), EOQ_MODE (rounding mode under test)
and EOQ_SEED (random seed; drawn and printed when unset).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import cocotb
from amaranth import Shape
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from golden_model.config import CoreConfig, get_config

CLOCK_NS = 10


@dataclass(frozen=True)
class Settings:
    cfg: CoreConfig
    lanes: int | None
    mode: str | None
    seed: int
    rng: random.Random


def settings(dut) -> Settings:
    """Read the bench settings from the environment and log the seed for reproduction."""
    cfg = get_config(os.environ.get("EOQ_CONFIG", "default"))
    lanes = int(os.environ["EOQ_LANES"]) if os.environ.get("EOQ_LANES") else None
    mode = os.environ.get("EOQ_MODE") or None
    seed = int(os.environ["EOQ_SEED"]) if os.environ.get("EOQ_SEED") else random.randrange(2**31)
    dut._log.info(f"EOQ settings: config={cfg.name} lanes={lanes} mode={mode} EOQ_SEED={seed}")
    print(f"EOQ_SEED={seed} (config={cfg.name}, lanes={lanes}, mode={mode})")
    return Settings(cfg, lanes, mode, seed, random.Random(seed))


def needs_mode(mode: str):
    """Skip-condition helper: True when the bench runs for another rounding mode."""
    wanted = os.environ.get("EOQ_MODE")
    return bool(wanted) and wanted != mode


async def start(dut, reset_cycles: int = 2) -> None:
    """Start the clock on dut.clk and pulse dut.rst (inputs idle at 0)."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, units="ns").start())
    dut.rst.value = 1
    for _ in range(reset_cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def start_bench(dut, bench_class):
    """The settings, a ``bench_class(dut, settings)`` (its stream drivers idle the inputs), then clock and reset."""
    bench = bench_class(dut, settings(dut))
    await start(dut)
    return bench


# ---- payload encoding following Amaranth shapes / layouts -----------------------------------

def encode(shape, value) -> int:
    """Pack a Python value (int, list for ArrayLayout, dict for StructLayout) into an unsigned int."""
    if isinstance(shape, data.Layout):
        bits = 0
        items = value.items() if isinstance(value, dict) else enumerate(value)
        fields = dict(shape)
        for key, item in items:
            field = fields[key]
            bits |= encode(field.shape, item) << field.offset
        return bits
    width = Shape.cast(shape).width
    value = int(value)
    if not -(1 << width) < value < (1 << width):
        raise ValueError(f"{value} does not fit {shape}")
    return value & ((1 << width) - 1)


def decode(shape, bits: int):
    """Inverse of :func:`encode`: lists for arrays, dicts for structs, ints (signed if signed)."""
    if isinstance(shape, data.ArrayLayout):
        return [decode(field.shape, bits >> field.offset) for _, field in shape]
    if isinstance(shape, data.Layout):
        return {key: decode(field.shape, bits >> field.offset) for key, field in shape}
    shape = Shape.cast(shape)
    bits &= (1 << shape.width) - 1
    if shape.signed and bits >> (shape.width - 1):
        bits -= 1 << shape.width
    return bits


def read_unsigned(handle) -> int:
    """Value of a simulator signal as an unsigned int (independent of declared signedness)."""
    return int(handle.value.binstr, 2)


def payload_layout(component, port: str):
    """Layout (or shape) of the payload of stream port ``port`` of an Amaranth component."""
    return getattr(component, port).payload.shape()


# ---- streams (drive on the falling edge, sample settled values before the rising edge) ------

class StreamSource:
    """Drives ``<prefix>__valid/__payload`` of a DUT input stream; random idle cycles with ``gap``."""

    def __init__(self, dut, prefix: str, layout, rng: random.Random | None = None, gap: float = 0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.layout = layout
        self.rng = rng or random.Random(0)
        self.gap = gap
        self.valid.value = 0
        self.payload.value = 0

    async def send(self, beats) -> None:
        """Send every beat (Python values per the layout); returns at the falling edge after the last."""
        for beat in beats:
            while self.gap and self.rng.random() < self.gap:
                self.valid.value = 0
                await FallingEdge(self.clk)
            self.valid.value = 1
            self.payload.value = encode(self.layout, beat)
            while True:
                await ReadOnly()
                accepted = read_unsigned(self.ready) == 1
                await FallingEdge(self.clk)
                if accepted:
                    break
        self.valid.value = 0


class StreamSink:
    """Collects beats from ``<prefix>__valid/__payload`` with random back-pressure ``stall``."""

    def __init__(self, dut, prefix: str, layout, rng: random.Random | None = None, stall: float = 0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.layout = layout
        self.rng = rng or random.Random(1)
        self.stall = stall
        self.ready.value = 0

    async def receive(self, count: int | None = None, until_last: bool = False, timeout: int = 200000):
        """Collect ``count`` beats, or up to a beat with ``last``; returns the decoded beats."""
        beats = []
        for _ in range(timeout):
            ready = not (self.stall and self.rng.random() < self.stall)
            self.ready.value = int(ready)
            await ReadOnly()
            done = False
            if ready and read_unsigned(self.valid):
                beat = decode(self.layout, read_unsigned(self.payload))
                beats.append(beat)
                done = (count is not None and len(beats) == count) or (until_last and bool(beat["last"]))
            await FallingEdge(self.clk)
            if done:
                self.ready.value = 0
                return beats
        raise TimeoutError(f"sink saw only {len(beats)} beats in {timeout} cycles")


def chunk(values, lanes: int, pad=0):
    """Split a flat sequence into beats of ``lanes`` (element i -> lane i % lanes), padding the last."""
    values = list(values)
    beats = []
    for start in range(0, max(len(values), 1), lanes):
        part = values[start:start + lanes]
        beats.append(part + [pad] * (lanes - len(part)))
    return beats
