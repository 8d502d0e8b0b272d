"""Check that a netlist uses only cells, and cell configurations, that the simulation models cover.

yosys' models cover the logic cells; ours (dp16kd.v, mult18x18d.v) cover the
configurations yosys' ECP5 mapping emits.  A netlist outside them would
simulate wrongly without a word, so the build refuses it, naming the cell.
"""

from __future__ import annotations

import re

#: Cell types the models define (yosys' common_sim.vh / ccu2c_sim.vh, and ours).
MODELLED = {"LUT4", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_FF", "TRELLIS_DPR16X4", "TRELLIS_RAM16X2", "DP16KD",
            "MULT18X18D", "VHI", "VLO", "INV"}
_START_RE = re.compile(r"^  ([A-Z]\w*) (?:#\(|(\S+)\s+\()$")
_NAME_RE = re.compile(r"^  \) (\S+)\s+\($")
_ITEM_RE = re.compile(r"^    \.(\w+)\((.*)\),?$")


class UnsupportedCell(ValueError):
    """A cell, or a cell configuration, that no simulation model covers."""


def instances(netlist: str):
    """(cell type, name, parameters, connections) of every cell instance in a write_verilog netlist."""
    cell = None
    for line in netlist.splitlines():
        if cell is None:
            start = _START_RE.match(line)
            if start:
                cell, name, params, pins = start.group(1), start.group(2), {}, {}
                target = pins if name else params
            continue
        item = _ITEM_RE.match(line)
        if item:
            target[item.group(1)] = item.group(2)
        elif _NAME_RE.match(line):
            name, target = _NAME_RE.match(line).group(1), pins
        elif line == "  );":
            yield cell, name, params, pins
            cell = None


def check_dp16kd(name: str, params: dict, pins: dict) -> None:
    def fail(why):
        raise UnsupportedCell(f"DP16KD {name}: {why}; sim_netlist/dp16kd.v does not model it")

    width_a, width_b = (int(params.get(p, "32'd18").split("d")[-1]) for p in ("DATA_WIDTH_A", "DATA_WIDTH_B"))
    if width_a != width_b or width_a not in (1, 2, 4, 9, 18, 36):
        fail(f"port widths {width_a}/{width_b}")
    for param, value in (("REGMODE_A", '"NOREG"'), ("REGMODE_B", '"NOREG"'), ("CSDECODE_A", '"0b000"'),
                         ("CSDECODE_B", '"0b000"'), ("CLKAMUX", '"CLKA"'), ("CLKBMUX", '"CLKB"')):
        if params.get(param, value) != value:
            fail(f"{param} = {params[param]}")
    for pin in ("CSA0", "CSA1", "CSA2", "CSB0", "CSB1", "CSB2", "RSTA", "RSTB", "WEB"):
        if pins.get(pin, "1'h0") != "1'h0":
            fail(f"{pin} is not tied 0")
    if pins.get("CLKA") != pins.get("CLKB") and not (width_a == 36 and pins.get("CEA") == "1'h0"):
        fail("the ports have different clocks (modelled only for a pseudo dual port ROM: CEA tied 0)")
    for key, value in params.items():
        if key.startswith("INITVAL") and not re.fullmatch(r"320'h[0-9a-f]{80}", value):
            fail(f"{key} = {value} is not 320 hex bits")


#: MULT18X18D registers the model covers, each on CLK0 with enable CE0 and reset RST0 (RegisteredMultiplier's)
MULT_REGISTERS = ("INPUTA", "INPUTB", "OUTPUT")


def check_mult(name: str, params: dict, pins: dict) -> None:
    def fail(why):
        raise UnsupportedCell(f"MULT18X18D {name}: {why}; sim_netlist/mult18x18d.v models the combinational "
                              f"multiplier and the {', '.join(MULT_REGISTERS)} registers on CLK0/CE0/RST0 only")
    registered = [p for p, value in params.items() if p.endswith("_CLK") and value != '"NONE"']
    for param in registered:
        register = param.removeprefix("REG_").removesuffix("_CLK")
        if register not in MULT_REGISTERS:
            fail(f"registered ({param})")
        for suffix, value in (("CLK", '"CLK0"'), ("CE", '"CE0"'), ("RST", '"RST0"')):
            if params.get(f"REG_{register}_{suffix}", value) != value:
                fail(f"REG_{register}_{suffix} = {params[f'REG_{register}_{suffix}']}")
    if registered and params.get("RESETMODE", '"SYNC"') != '"SYNC"':
        fail(f"RESETMODE = {params['RESETMODE']}")


def check_netlist(netlist: str) -> dict[str, int]:
    """Cell counts of ``netlist``; UnsupportedCell for anything the models do not cover."""
    counts: dict[str, int] = {}
    for cell, name, params, pins in instances(netlist):
        counts[cell] = counts.get(cell, 0) + 1
        if cell not in MODELLED:
            raise UnsupportedCell(f"cell {cell} ({name}) has no simulation model")
        if cell == "DP16KD":
            check_dp16kd(name, params, pins)
        elif cell == "MULT18X18D":
            check_mult(name, params, pins)
    return counts


__all__ = ["MODELLED", "MULT_REGISTERS", "UnsupportedCell", "instances", "check_dp16kd", "check_mult", "check_netlist"]
