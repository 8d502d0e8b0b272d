"""Gate-level simulation of the board netlist: the script is make bitstream's, bad input says so, the
cell check refuses what the models do not cover, and (slow) five training steps are bit-exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fpga.build import CLASSIC_LUT_MAPPING, BuildError
from fpga.netlist import NetlistOptions, synthesis_script
from sim_netlist.__main__ import RunOptions, run
from sim_netlist.cells import MULT_REGISTERS, UnsupportedCell, check_netlist

ROOT = Path(__file__).resolve().parents[1]

GOOD = """module top(clk);
  input clk;
  LUT4 #(
    .INIT(16'h8000)
  ) \\a.b  (
    .A(clk),
    .Z(x)
  );
  DP16KD #(
    .DATA_WIDTH_A(32'd9),
    .DATA_WIDTH_B(32'd9),
    .INITVAL_00(320'h00000000000000000000000000000000000000000000000000000000000000000000000000000000),
    .REGMODE_A("NOREG"),
    .REGMODE_B("NOREG")
  ) \\mem.0  (
    .CLKA(clk),
    .CLKB(clk),
    .WEB(1'h0)
  );
  MULT18X18D \\mul  (
    .A0(x)
  );
endmodule
"""


def test_netlist_script_is_the_bitstream_script():
    script = synthesis_script("ulx3s", "85F", "abc")
    assert "read_rtlil top.il" in script and "synth_ecp5 -run begin:map_luts -top top" in script
    assert CLASSIC_LUT_MAPPING in script
    assert script.rstrip().endswith("write_verilog -noattr netlist.v") and "write_json" not in script


@pytest.mark.parametrize("args, message", [
    (["--board", "nope"], "unknown board 'nope'"),
    (["--config", "tiny"], "unknown configuration 'tiny'"),
    (["--device", "99F"], "unknown device '99F'"),
    (["--steps", "0"], "steps must be at least 1"),
])
def test_bad_input_is_one_clear_line(args, message):
    proc = subprocess.run([sys.executable, "-m", "sim_netlist", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_loss_is_refused_by_name():
    proc = subprocess.run([sys.executable, "-m", "sim_netlist", "--loss", "soft"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'soft'" in proc.stderr and "Traceback" not in proc.stderr


def test_make_sim_netlist_defaults_to_the_small_core():
    def dry(*args):
        return subprocess.run(["make", "-n", "sim-netlist", *args], cwd=ROOT, capture_output=True, text=True).stdout
    assert "--board ulx3s --device 85F --config small4x4 --steps 5 --loss float" in dry("BOARD=ulx3s")
    assert "--config default --steps 2 --loss int" in dry("CONFIG=default", "STEPS=2", "LOSS=int")


def test_cell_check_counts_the_cells():
    assert check_netlist(GOOD) == {"LUT4": 1, "DP16KD": 1, "MULT18X18D": 1}


@pytest.mark.parametrize("edit, message", [
    (('.REGMODE_A("NOREG")', '.REGMODE_A("OUTREG")'), "REGMODE_A"),
    (("320'h000", "320'h0x0"), "INITVAL_00 = 320'h0x0"),
    ((".CLKB(clk),", ".CLKB(clk2),"), "different clocks"),
    ((".WEB(1'h0)", ".WEB(we)"), "WEB is not tied 0"),
    (("DATA_WIDTH_B(32'd9)", "DATA_WIDTH_B(32'd18)"), "port widths 9/18"),
    (("LUT4 #(", "EHXPLLL #("), "cell EHXPLLL"),
    (("MULT18X18D \\mul  (", "MULT18X18D #(\n    .REG_PIPELINE_CLK(\"CLK0\")\n  ) \\mul  ("), "registered"),
    (("MULT18X18D \\mul  (", "MULT18X18D #(\n    .REG_OUTPUT_CLK(\"CLK1\")\n  ) \\mul  ("), "REG_OUTPUT_CLK"),
    (("MULT18X18D \\mul  (", "MULT18X18D #(\n    .REG_INPUTA_CLK(\"CLK0\"),\n    .REG_INPUTA_CE(\"CE1\")\n"
                               "  ) \\mul  ("), "REG_INPUTA_CE"),
])
def test_cell_check_refuses_what_no_model_covers(edit, message):
    with pytest.raises(UnsupportedCell, match=message):
        check_netlist(GOOD.replace(*edit))


def test_cell_check_accepts_the_registered_multiplier():
    registered = "".join(f'    .REG_{r}_CLK("CLK0"),\n    .REG_{r}_CE("CE0"),\n    .REG_{r}_RST("RST0"),\n'
                         for r in MULT_REGISTERS)
    cell = GOOD.replace("MULT18X18D \\mul  (", f"MULT18X18D #(\n{registered}    .RESETMODE(\"SYNC\")\n  ) \\mul  (")
    assert check_netlist(cell)["MULT18X18D"] == 1


def test_cell_check_accepts_an_initialized_rom_on_its_read_clock():
    rom = (GOOD.replace("32'd9", "32'd36").replace("320'h000", "320'h123")
           .replace(".CLKA(clk),", ".CLKA(1'h0),\n    .CEA(1'h0),"))
    assert check_netlist(rom)["DP16KD"] == 1
    with pytest.raises(UnsupportedCell, match="different clocks"):
        check_netlist(rom.replace(".CEA(1'h0)", ".CEA(en)"))


def test_unknown_board_is_a_build_error():
    with pytest.raises(BuildError, match="unknown board"):
        synthesis_script("icebreaker", "85F", "abc")


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["float", "int"])
def test_netlist_training_bit_exact(loss):
    """Five training steps of the small core on its synthesized netlist, weights compared bit for bit, with
    the host's loss and with the core's LOSS (the first run synthesizes and compiles the netlist: 10-40 min
    on 2 cores)."""
    result = run(RunOptions(netlist=NetlistOptions(config="small4x4"), steps=5, loss=loss))
    assert result["bit_exact"], result["difference"] or f"diverged at step {result['first_divergence']}"
    assert result["steps"] == 5 and result["core_cycles"] > 0 and result["cycles_per_second"] > 0
