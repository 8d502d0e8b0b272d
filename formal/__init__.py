"""Formal and exhaustive checks of the gateware (``make formal``, docs/formal.md).

The per-element units (the rounding lane, the ShiftQuantizer and the
UpdateUnit) are proven equal to the golden model's arithmetic for every
input, and the HostLink is shown, to a stated depth, never to commit a frame
whose CRC is wrong.  Each check is a small Amaranth wrapper with Assert
statements, proven by SymbiYosys (yowasp-sby) with the Yices SMT solver.
"""
