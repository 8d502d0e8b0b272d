"""The simulated EoqCore as a device with the golden Machine's API.

:class:`CoreDevice` drives the core's control ports (the ones the host link
drives on a board) from cocotb.  Its coroutines mirror Machine's methods;
:meth:`CoreDevice.blocking` returns an object with the same methods as plain
blocking calls, for host code (golden_model.program.ProgramTrainer) running
in a ``cocotb.external`` thread.  So the trainer that drives the golden
machine drives the simulated hardware unchanged.
"""

from __future__ import annotations

import numpy as np
from cocotb.decorators import function
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, Timer

from golden_model.config import CoreConfig
from golden_model.isa import Status
from golden_model.machine import LossCounters, MachineError, TensorEntry, words_per_row
from golden_model.quant import QTensor
from protocol.wire import Progress
from hw.interfaces import (counters_layout, cursor_layout, progress_layout, status_layout, table_entry_layout,
                           tmem_word_layout)
from hw.step_keys import StepKeys

from .common import CLOCK_NS, decode, encode, read_unsigned


class CoreDevice:
    """Host-side access to the simulated core through its control ports."""

    def __init__(self, dut, cfg: CoreConfig, prefix: str = "control"):
        self.dut, self.cfg = dut, cfg
        self.port = lambda name: getattr(dut, f"{prefix}__{name}")
        self.tword = tmem_word_layout(cfg)
        self.entry_layout = table_entry_layout(cfg)
        self.status_layout = status_layout(cfg)
        self.table = [TensorEntry() for _ in range(cfg.tensor_slots)]
        for name in ("tmem_r__en", "tmem_w__en", "table_w__en", "prog_w__en", "keys_w__en", "counters_clear",
                     "run__start", "data_w__en", "labels_w__en", "cursor_w__en", "run__advance"):
            self.port(name).value = 0
        self.port("run__passes").value = 1
        self.last_cycles = 0
        self.total_cycles = 0

    async def _pulse(self, values: dict) -> None:
        for name, value in values.items():
            self.port(name).value = value
        await FallingEdge(self.dut.clk)
        for name in values:
            if name.endswith("en") or name.endswith("start") or name.endswith("clear"):
                self.port(name).value = 0

    async def write_word(self, addr: int, lanes) -> None:
        await self._pulse({"tmem_w__addr": addr, "tmem_w__data": encode(self.tword, [int(v) for v in lanes]),
                           "tmem_w__en": 1})

    async def read_word(self, addr: int) -> list[int]:
        await self._pulse({"tmem_r__addr": addr, "tmem_r__en": 1})
        await ReadOnly()
        word = decode(self.tword, read_unsigned(self.port("tmem_r__data")))
        await FallingEdge(self.dut.clk)
        return word

    async def set_tensor(self, slot: int, base: int, rows: int, cols: int, exp: int) -> None:
        self.table[slot] = TensorEntry(base, rows, cols, exp)
        entry = encode(self.entry_layout, {"base": base, "rows": rows, "cols": cols, "exp": exp})
        await self._pulse({"table_w__slot": slot, "table_w__entry": entry, "table_w__en": 1})

    async def read_entry(self, slot: int) -> dict:
        """The table answers one cycle after it is given the slot."""
        await self._pulse({"table_r_slot": slot})
        await ReadOnly()
        entry = decode(self.entry_layout, read_unsigned(self.port("table_r")))
        await FallingEdge(self.dut.clk)
        return entry

    async def write_tensor(self, slot: int, t: QTensor) -> None:
        entry = self.table[slot]
        if t.q.shape != (entry.rows, entry.cols):
            raise ValueError(f"tensor slot {slot} holds {entry.rows}x{entry.cols}, got shape {t.q.shape}")
        stride = words_per_row(entry.cols, self.cfg.lanes)
        padded = np.zeros((entry.rows, stride * self.cfg.lanes), dtype=np.int64)
        padded[:, :entry.cols] = t.q
        for index, word in enumerate(padded.reshape(-1, self.cfg.lanes)):
            await self.write_word(entry.base + index, word)
        await self.set_tensor(slot, entry.base, entry.rows, entry.cols, t.exp)

    async def read_words(self, base: int, count: int) -> np.ndarray:
        return np.array([await self.read_word(base + i) for i in range(count)], dtype=np.int64)

    async def read_tensor(self, slot: int) -> QTensor:
        entry = await self.read_entry(slot)
        stride = words_per_row(entry["cols"], self.cfg.lanes)
        words = await self.read_words(entry["base"], entry["rows"] * stride)
        q = words.reshape(entry["rows"], stride * self.cfg.lanes)[:, :entry["cols"]].astype(np.int8)
        return QTensor(q, entry["exp"])

    async def load_program(self, words, start: int = 0) -> None:
        for offset, word in enumerate(words):
            await self._pulse({"prog_w__addr": start + offset, "prog_w__data": int(word), "prog_w__en": 1})

    async def set_keys(self, seed: int, step: int) -> None:
        """The step keys' seed and step; waits until the core's base follows them (the host link's
        turnaround covers that wait on the board: hw/step_keys.py)."""
        await self._pulse({"keys_w__seed": seed, "keys_w__step": step, "keys_w__en": 1})
        await ClockCycles(self.dut.clk, StepKeys.LATENCY)
        await FallingEdge(self.dut.clk)

    async def read_counters(self) -> LossCounters:
        await ReadOnly()
        counters = LossCounters(**decode(counters_layout(), read_unsigned(self.port("counters"))))
        await FallingEdge(self.dut.clk)
        return counters

    async def clear_counters(self) -> None:
        await self._pulse({"counters_clear": 1})

    async def write_data(self, addr: int, words) -> None:
        for offset, word in enumerate(np.asarray(words).reshape(-1, self.cfg.lanes)):
            await self._pulse({"data_w__addr": addr + offset, "data_w__en": 1,
                               "data_w__data": encode(self.tword, [int(v) for v in word])})

    async def write_labels(self, addr: int, labels) -> None:
        for offset, label in enumerate(np.asarray(labels).reshape(-1)):
            await self._pulse({"labels_w__addr": addr + offset, "labels_w__data": int(label) & 0xFF,
                               "labels_w__en": 1})

    async def set_cursor(self, epoch: int, train: int, eval: int) -> None:
        value = encode(cursor_layout(), {"epoch": epoch, "train": train, "eval": eval})
        await self._pulse({"cursor_w__value": value, "cursor_w__en": 1})

    async def progress(self) -> Progress:
        await ReadOnly()
        p = decode(progress_layout(), read_unsigned(self.port("progress")))
        await FallingEdge(self.dut.clk)
        return Progress(p["step"], p["cursor"]["epoch"], p["cursor"]["train"], p["cursor"]["eval"], p["passes"])

    async def status(self) -> dict:
        await ReadOnly()
        status = decode(self.status_layout, read_unsigned(self.port("status")))
        await FallingEdge(self.dut.clk)
        return status

    async def run(self, pc: int = 0, timeout: int = 10_000_000, poll: int = 64) -> int:
        """Run from pc to HALT; raises MachineError (like the golden machine) on a non-OK status."""
        return await self.loop(pc, 1, False, timeout, poll)

    async def loop(self, pc: int, passes: int, advance: bool, timeout: int = 10_000_000, poll: int = 64) -> int:
        """``passes`` runs from pc (LOOP), with ``advance`` the step counting on after each."""
        await self._pulse({"run__pc": pc, "run__passes": passes, "run__advance": int(advance), "run__start": 1})
        waited = 0
        while True:
            status = await self.status()
            if not status["busy"]:
                break
            await Timer(poll * CLOCK_NS, units="ns")  # one callback, not one per clock edge
            waited += poll
            if waited > timeout:
                raise TimeoutError(f"core still busy after {timeout} cycles (pc {status['pc']})")
        self.last_cycles = status["cycles"]
        self.total_cycles += status["cycles"]
        if status["code"] != Status.OK:
            raise MachineError(Status(status["code"]), status["pc"], "reported by the simulated core")
        return status["cycles"]

    def blocking(self):
        """The same API as blocking calls, for code running in a cocotb.external thread."""
        device = self

        class Blocking:
            cfg = device.cfg
            set_tensor = staticmethod(function(device.set_tensor))
            write_tensor = staticmethod(function(device.write_tensor))
            read_tensor = staticmethod(function(device.read_tensor))
            load_program = staticmethod(function(device.load_program))
            set_keys = staticmethod(function(device.set_keys))
            run = staticmethod(function(device.run))
            loop = staticmethod(function(device.loop))
            write_data = staticmethod(function(device.write_data))
            write_labels = staticmethod(function(device.write_labels))
            set_cursor = staticmethod(function(device.set_cursor))
            progress = staticmethod(function(device.progress))
            read_counters = staticmethod(function(device.read_counters))
            clear_counters = staticmethod(function(device.clear_counters))

        return Blocking()
