"""The ECP5 cells the board build instantiates (MULT18X18D with registers, kept TRELLIS_FF copies, the
accumulators' CCU2C chains, proven equal to their plain form) and that
synthesis keeps them: the simulated RTL has plain registers in their place, sim-netlist checks the cells."""

import shutil
import subprocess

import pytest
from amaranth import Const
from amaranth.back import rtlil

import hw.accumulate_adder

from fpga.blocks import stat_script, synthesize_block
from fpga.build import find_tools, get_platform
from golden_model.config import get_config
from sim_netlist.build import LATTICE_SHARE
from hw.accumulate_adder import AccumulateAdder
from hw.mac_array import MacArray
from hw.multiplier import RegisteredMultiplier
from hw.register_copies import RegisterCopies


@pytest.fixture(scope="module")
def ecp5():
    return get_platform("ulx3s", "85F")()


def test_the_multiplier_is_a_registered_dsp_on_ecp5_and_logic_elsewhere(ecp5):
    board = rtlil.convert(RegisteredMultiplier(a_bits=8, b_bits=8), platform=ecp5)
    for register in ("INPUTA", "INPUTB", "OUTPUT"):
        assert f'parameter \\REG_{register}_CLK "CLK0"' in board
    assert 'parameter \\REG_PIPELINE_CLK "NONE"' in board
    plain = rtlil.convert(RegisteredMultiplier(a_bits=8, b_bits=8))
    assert "MULT18X18D" not in plain and "$mul" in plain


def test_operands_wider_than_a_dsp_are_refused():
    with pytest.raises(ValueError, match="at most 18"):
        RegisteredMultiplier(a_bits=19, b_bits=8)


def test_register_copies_are_kept_cells_on_ecp5(ecp5):
    board = rtlil.convert(RegisterCopies(3, copies=4), platform=ecp5)
    assert board.count("cell \\TRELLIS_FF") == 12 and board.count("attribute \\keep 1") >= 12
    assert "TRELLIS_FF" not in rtlil.convert(RegisterCopies(3, copies=4))


def test_synthesis_keeps_the_array_s_control_copies_and_dsps(tmp_path, ecp5):
    """yosys would merge identical flip-flops into one that drives every accumulator (a 14 ns route), and
    each operand's copies (one per multiplier) into the one register that drives a row or column."""
    cfg = get_config("small4x4")
    result = synthesize_block("mac_array", cfg, stat_script("ulx3s", "85F"), tmp_path, find_tools()["YOSYS"], ecp5)
    pes = cfg.array_rows * cfg.array_cols
    assert result["cells"]["MULT18X18D"] == pes
    accumulators = pes * cfg.acc_bits
    # the accumulators and their held copies (overlap), the controls' copies, the operands' copies
    assert result["cells"]["TRELLIS_FF"] >= 2 * accumulators + 3 * pes + 2 * pes * cfg.data_bits


def _adder_miter(tmp_path, ecp5, acc_bits, p_bits) -> subprocess.CompletedProcess:
    """yosys' SAT proof that the ECP5 AccumulateAdder (CCU2C cells, yosys' own models) equals the plain one."""
    for name, platform in (("gold", None), ("gate", ecp5)):
        adder = AccumulateAdder(acc_bits=acc_bits, p_bits=p_bits)
        (tmp_path / f"{name}.il").write_text(rtlil.convert(adder, name=name, platform=platform))
    for model in LATTICE_SHARE.glob("*.vh"):     # beside the script (with their includes): YoWASP's yosys
        shutil.copy(model, tmp_path / model.name)   # sees only some directories
    models = "common_sim.vh ccu2c_sim.vh"
    script = (f"read_verilog {models}\nread_rtlil gold.il\nread_rtlil gate.il\n"
              "setattr -mod -unset top gold gate\nhierarchy\nproc\nflatten -wb gate\n"   # CCU2C with its INITs
              "miter -equiv -flatten -make_assert gold gate miter\nhierarchy -top miter\n"
              "sat -verify -prove-asserts -show-inputs miter\n")
    (tmp_path / "miter.ys").write_text(script)
    return subprocess.run([find_tools()["YOSYS"], "-q", "-l", "miter.log", "miter.ys"], cwd=tmp_path,
                          capture_output=True, text=True)


@pytest.mark.parametrize("acc_bits, p_bits", [(32, 16), (7, 3)])
def test_the_accumulate_adder_s_carry_chain_equals_the_plain_sum(tmp_path, ecp5, acc_bits, p_bits):
    board = rtlil.convert(AccumulateAdder(acc_bits=acc_bits, p_bits=p_bits), platform=ecp5)
    assert board.count("cell \\CCU2C") == (acc_bits + 1) // 2 and "$add" not in board
    proof = _adder_miter(tmp_path, ecp5, acc_bits, p_bits)
    log = (tmp_path / "miter.log").read_text()
    assert proof.returncode == 0 and "no model found: SUCCESS" in log, log[-3000:]


def test_the_accumulate_adder_proof_fails_with_a_wrong_lut(tmp_path, ecp5, monkeypatch):
    """The plain adder's INIT (A + B, the gates ignored) must not pass for the gated sum."""
    monkeypatch.setattr(hw.accumulate_adder, "GATED_SUM_INIT", Const(0x96AA, 16))
    proof = _adder_miter(tmp_path, ecp5, 8, 4)
    assert proof.returncode != 0 and "proof did fail" in (tmp_path / "miter.log").read_text()
