"""The DP16KD model (sim_netlist/dp16kd.v) against the memories it stands for: the LossUnit's two
initialized tables and a written 512 x 36 RAM go through make bitstream's yosys script, and the
netlist, simulated under Verilator with the model, must read what the Amaranth memories hold."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.back import rtlil
from amaranth.lib.memory import Memory

from fpga.build import find_tools
from fpga.netlist import TOP, synthesis_script
from golden_model.int_loss import EXP2_TABLE, LOG2_TABLE
from hw.log_domain import table_rom
from sim_netlist.build import LATTICE_SHARE, cell_models
from sim_netlist.cells import check_netlist

ROOT = Path(__file__).resolve().parents[1]
RAM_DEPTH, RAM_WIDTH, CYCLES = 512, 36, 1200

TESTBENCH = f"""module tb;
  reg clk = 0;
  reg [8:0] addr, waddr;
  reg [{RAM_WIDTH - 1}:0] wdata;
  reg wen;
  reg [{RAM_WIDTH + 18}:0] stimulus [0:{CYCLES - 1}];
  wire [63:0] exp2, log2;
  wire [{RAM_WIDTH - 1}:0] ram;
  integer i;
  {TOP} dut(.clk(clk), .rst(1'b0), .addr(addr), .waddr(waddr), .wdata(wdata), .wen(wen),
            .exp2(exp2), .log2(log2), .ram(ram));
  initial begin
    $readmemh("stimulus.hex", stimulus);
    for (i = 0; i < {CYCLES}; i = i + 1) begin
      {{wen, waddr, addr, wdata}} = stimulus[i];
      #1 clk = 1;
      #1 clk = 0;
      $display("%h %h %h", exp2, log2, ram);
    end
    $finish;
  end
endmodule
"""


class Memories(Elaboratable):
    """The two LossUnit tables on one read address, and a RAM with a non-transparent read port."""

    def __init__(self, ram_init):
        self.addr = Signal(9, name="addr")
        self.waddr = Signal(9, name="waddr")
        self.wdata = Signal(RAM_WIDTH, name="wdata")
        self.wen = Signal(name="wen")
        self.exp2 = Signal(64, name="exp2")
        self.log2 = Signal(64, name="log2")
        self.ram = Signal(RAM_WIDTH, name="ram")
        self.ram_init = ram_init

    def elaborate(self, platform):
        m = Module()
        exp2, _, _ = table_rom(m, "exp2", EXP2_TABLE)
        log2, _, _ = table_rom(m, "log2", LOG2_TABLE)
        m.submodules.ram = ram = Memory(shape=RAM_WIDTH, depth=RAM_DEPTH, init=self.ram_init)
        read, write = ram.read_port(), ram.write_port()
        m.d.comb += [exp2.addr.eq(self.addr), log2.addr.eq(self.addr), read.addr.eq(self.addr),
                     write.addr.eq(self.waddr), write.data.eq(self.wdata), write.en.eq(self.wen),
                     self.exp2.eq(exp2.data), self.log2.eq(log2.data), self.ram.eq(read.data)]
        return m

    def ports(self):
        return [self.addr, self.waddr, self.wdata, self.wen, self.exp2, self.log2, self.ram]


def packed(table) -> list[int]:
    """A table's ROM words: value in the low bits, then diff in two's complement (table_rom's layout)."""
    value_bits = int(table[:, 0].max()).bit_length()
    diff_bits = int(abs(table[:, 1]).max()).bit_length() + 1
    return [int(v) | (int(d) & ((1 << diff_bits) - 1)) << value_bits for v, d in table]


def run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def tools():
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found (apt install verilator)")
    return find_tools()["YOSYS"]


def test_dp16kd_model_reads_initialized_and_written_words(tools, rng):
    out = ROOT / "build" / "test-netlist-bram"          # YoWASP yosys reads only inside the project tree
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ram_init = [int(x) for x in rng.integers(0, 1 << RAM_WIDTH, RAM_DEPTH, dtype=np.uint64)]
    design = Memories(ram_init)
    (out / f"{TOP}.il").write_text(rtlil.convert(design, name=TOP, ports=design.ports()))
    (out / f"{TOP}.ys").write_text(synthesis_script("ulx3s", "85F", "abc"))
    run([tools, "-q", "-l", f"{TOP}.rpt", f"{TOP}.ys"], out)
    netlist = (out / "netlist.v").read_text()
    assert check_netlist(netlist).get("DP16KD", 0) >= 3, "the memories were not mapped to block RAM"

    addr = rng.integers(0, RAM_DEPTH, CYCLES)
    waddr = np.where(rng.random(CYCLES) < 0.3, addr, rng.integers(0, RAM_DEPTH, CYCLES))   # collisions
    wdata = rng.integers(0, 1 << RAM_WIDTH, CYCLES, dtype=np.uint64)
    wen = rng.random(CYCLES) < 0.5
    (out / "stimulus.hex").write_text("".join(
        f"{(int(e) << 54 | int(w) << 45 | int(a) << 36 | int(d)):014x}\n"
        for e, w, a, d in zip(wen, waddr, addr, wdata)))
    (out / "tb.v").write_text(TESTBENCH)
    run(["verilator", "--binary", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-MODDUP", "--top-module", "tb",
         f"-I{LATTICE_SHARE}", "-Mdir", "obj", "tb.v", "netlist.v", *map(str, cell_models())], out)
    lines = run([str(out / "obj" / "Vtb")], out).split()

    exp2, log2, ram = packed(EXP2_TABLE), packed(LOG2_TABLE), list(ram_init)
    got = [int(word, 16) for word in lines[:3 * CYCLES]]
    for cycle in range(CYCLES):
        rom_addr = addr[cycle] % len(EXP2_TABLE)
        expected = (exp2[rom_addr], log2[rom_addr], ram[addr[cycle]])
        assert tuple(got[3 * cycle:3 * cycle + 3]) == expected, f"cycle {cycle}: addr {addr[cycle]}"
        if wen[cycle]:
            ram[waddr[cycle]] = int(wdata[cycle])
