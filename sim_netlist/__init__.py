"""Gate-level simulation of the board netlist (``make sim-netlist``, docs/fpga.md).

fpga.netlist synthesizes EoqSystem with ``make bitstream``'s yosys script;
:mod:`sim_netlist.build` compiles that netlist with yosys' ECP5 cell models
and the simulated board's harness (sim_board/harness.cpp) under Verilator,
and ``python -m sim_netlist`` trains through the host link on it and compares
the read-back weights with the golden model bit for bit.
"""
