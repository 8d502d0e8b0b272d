"""The ECP5 cells the board build instantiates (MULT18X18D with registers, kept TRELLIS_FF copies) and that
synthesis keeps them: the simulated RTL has plain registers in their place, sim-netlist checks the cells."""

import pytest
from amaranth.back import rtlil

from fpga.blocks import stat_script, synthesize_block
from fpga.build import find_tools, get_platform
from golden_model.config import get_config
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
    """yosys would merge identical flip-flops into one that drives every accumulator (a 14 ns route)."""
    cfg = get_config("small4x4")
    result = synthesize_block("mac_array", cfg, stat_script("ulx3s", "85F"), tmp_path, find_tools()["YOSYS"], ecp5)
    pes = cfg.array_rows * cfg.array_cols
    assert result["cells"]["MULT18X18D"] == pes
    accumulators = pes * cfg.acc_bits
    assert result["cells"]["TRELLIS_FF"] >= accumulators + 3 * pes
