"""cocotb side of engine benches: one engine in hw.memories.EngineHarness against the golden machine.

Typical bench:

    bench = EngineBench(dut, cfg)
    await bench.start()
    machine = random_machine(cfg, rng, shapes)      # tensors with random int8 data
    await bench.load(machine)                       # copy the machine's TMEM into the DUT
    inst = isa.matmul(0, 1)
    result, cycles = await bench.execute(machine, inst)   # DUT runs it; machine.execute(inst) too
    await bench.check_tmem(machine, slot)           # dst tensor bit-exact
    await bench.check_acc(machine)                  # ACC tensor bit-exact
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from golden_model.config import CoreConfig
from golden_model.isa import Instruction
from golden_model.machine import Machine, words_per_row
from golden_model.quant import QTensor
from sim_tests.command_model import acc_peaks, pack, resolve
from hw.interfaces import amem_word_layout, result_layout, tmem_word_layout

from .common import decode, encode, read_unsigned, start


def random_machine(cfg: CoreConfig, rng: np.random.Generator, shapes: list[tuple[int, int]],
                   exps: list[int] | None = None, low: int = -128, high: int = 127) -> Machine:
    """A machine whose slots 0..n-1 hold random int8 tensors of the given shapes, packed from word 0."""
    machine = Machine(cfg)
    base = 0
    for slot, (rows, cols) in enumerate(shapes):
        exp = exps[slot] if exps else int(rng.integers(-12, 4))
        machine.set_tensor(slot, base, rows, cols, exp)
        values = rng.integers(low, high + 1, size=(rows, cols), dtype=np.int64).astype(np.int8)
        machine.write_tensor(slot, QTensor(values, exp))
        base += rows * words_per_row(cols, cfg.lanes)
    if base > cfg.tmem_words:
        raise ValueError(f"tensors need {base} words, TMEM has {cfg.tmem_words}")
    return machine


class EngineBench:
    def __init__(self, dut, cfg: CoreConfig):
        self.dut, self.cfg = dut, cfg
        self.tword = tmem_word_layout(cfg)
        self.aword = amem_word_layout(cfg)
        self.result_layout = result_layout(cfg)
        dut.cmd_valid.value = 0
        dut.host_tmem_w__en.value = 0
        dut.host_tmem_r__en.value = 0
        dut.host_amem_r__en.value = 0
        dut.host_amem_w__en.value = 0

    async def start(self):
        await start(self.dut)

    async def write_tmem(self, addr: int, lanes) -> None:
        dut = self.dut
        dut.host_tmem_w__addr.value = addr
        dut.host_tmem_w__data.value = encode(self.tword, [int(v) for v in lanes])
        dut.host_tmem_w__en.value = 1
        await FallingEdge(dut.clk)
        dut.host_tmem_w__en.value = 0

    async def write_amem(self, addr: int, lanes) -> None:
        dut = self.dut
        dut.host_amem_w__addr.value = addr
        dut.host_amem_w__data.value = encode(self.aword, [int(v) for v in lanes])
        dut.host_amem_w__en.value = 1
        await FallingEdge(dut.clk)
        dut.host_amem_w__en.value = 0

    async def load_acc(self, machine: Machine, pad=0) -> None:
        """Copy the machine's ACC tensor into the DUT's AMEM (row-major padded words from 0; pad lanes = ``pad``)."""
        rows, cols = machine.acc.shape
        stride = words_per_row(cols, self.cfg.lanes)
        words = np.full((rows, stride * self.cfg.lanes), pad, dtype=np.int64)
        words[:, :cols] = machine.acc
        for addr, word in enumerate(words.reshape(-1, self.cfg.lanes)):
            await self.write_amem(addr, word)

    async def _read(self, prefix: str, layout, addr: int) -> list[int]:
        dut = self.dut
        getattr(dut, f"{prefix}__addr").value = addr
        getattr(dut, f"{prefix}__en").value = 1
        await FallingEdge(dut.clk)
        getattr(dut, f"{prefix}__en").value = 0
        await ReadOnly()
        value = decode(layout, read_unsigned(getattr(dut, f"{prefix}__data")))
        await FallingEdge(dut.clk)
        return value

    async def read_tmem(self, addr: int) -> list[int]:
        return await self._read("host_tmem_r", self.tword, addr)

    async def read_amem(self, addr: int) -> list[int]:
        return await self._read("host_amem_r", self.aword, addr)

    async def load(self, machine: Machine, words: int | None = None) -> None:
        """Copy the machine's TMEM (the first ``words`` words, default all in use) into the DUT."""
        used = words if words is not None else self.words_in_use(machine)
        for addr in range(used):
            await self.write_tmem(addr, machine.tmem[addr])

    @staticmethod
    def words_in_use(machine: Machine) -> int:
        ends = [e.base + e.rows * words_per_row(e.cols, machine.cfg.lanes) for e in machine.table if e.rows]
        return max(ends, default=0)

    async def execute(self, machine: Machine, inst: Instruction, timeout: int = 1_000_000):
        """Run ``inst`` on the DUT (command from sim_tests.command_model.resolve) and on the machine.

        Returns (result dict, cycles from command accepted to done)."""
        dut = self.dut
        fields = resolve(machine, inst)
        dut.cmd_payload.value = pack(self.cfg, fields)
        dut.cmd_valid.value = 1
        while True:
            await ReadOnly()
            accepted = read_unsigned(dut.cmd_ready) == 1
            await FallingEdge(dut.clk)
            if accepted:
                break
        dut.cmd_valid.value = 0
        for cycles in range(1, timeout):
            await ReadOnly()
            if read_unsigned(dut.done):
                result = decode(self.result_layout, read_unsigned(dut.result))
                # Writes issued in the done cycle land at its closing edge: return
                # in the next cycle, so host reads see them (reads are not transparent).
                await FallingEdge(dut.clk)
                await FallingEdge(dut.clk)
                break
            await RisingEdge(dut.clk)
        else:
            raise TimeoutError(f"{inst.op.name} did not finish in {timeout} cycles")
        machine.execute(inst)
        return result, cycles

    async def tensor(self, machine: Machine, slot: int) -> np.ndarray:
        """The DUT's copy of a tensor slot's mantissas (pad lanes included, as words)."""
        entry = machine.table[slot]
        stride = words_per_row(entry.cols, self.cfg.lanes)
        words = [await self.read_tmem(entry.base + i) for i in range(entry.rows * stride)]
        return np.array(words, dtype=np.int64).reshape(entry.rows, stride * self.cfg.lanes)

    async def check_tmem(self, machine: Machine, slot: int, what: str = "") -> None:
        """The DUT's words of ``slot`` equal the machine's, pad lanes included."""
        entry = machine.table[slot]
        stride = words_per_row(entry.cols, self.cfg.lanes)
        got = await self.tensor(machine, slot)
        want = machine.tmem[entry.base:entry.base + entry.rows * stride].astype(np.int64)
        want = want.reshape(entry.rows, stride * self.cfg.lanes)
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)[0]
            raise AssertionError(f"{what} slot {slot} differs first at (row {bad[0]}, lane col {bad[1]}): "
                                 f"DUT {got[tuple(bad)]} golden {want[tuple(bad)]}")

    async def acc(self, rows: int, cols: int) -> np.ndarray:
        """The DUT's ACC tensor (valid elements only)."""
        stride = words_per_row(cols, self.cfg.lanes)
        words = [await self.read_amem(i) for i in range(rows * stride)]
        return np.array(words, dtype=np.int64).reshape(rows, stride * self.cfg.lanes)[:, :cols]

    async def check_acc(self, machine: Machine, result: dict | None = None, what: str = "") -> None:
        """The DUT's ACC equals the machine's; with ``result``, the reported peaks too."""
        rows, cols = machine.acc.shape
        got = await self.acc(rows, cols)
        if not np.array_equal(got, machine.acc):
            bad = np.argwhere(got != machine.acc)[0]
            raise AssertionError(f"{what} ACC differs first at {tuple(bad)}: DUT {got[tuple(bad)]} "
                                 f"golden {machine.acc[tuple(bad)]}")
        if result is not None:
            peak_abs, peak_pos = acc_peaks(machine.acc)
            assert (result["peak_abs"], result["peak_pos"]) == (peak_abs, peak_pos), \
                f"{what} peaks DUT {result['peak_abs']}, {result['peak_pos']} golden {peak_abs}, {peak_pos}"
