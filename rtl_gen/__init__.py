"""Verilog generation of the eoq-core units (see :mod:`rtl_gen.units`)."""

from .units import UNITS, Unit, generate, get_unit, register, to_verilog

__all__ = ["UNITS", "Unit", "generate", "get_unit", "register", "to_verilog"]
