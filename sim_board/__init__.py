"""The simulated board: eoq_system.v under Verilator behind a byte pipe (README.md)."""
