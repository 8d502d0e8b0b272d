"""The regression matrix: which unit runs in which configurations and rounding modes.

Read by the pytest entry (sim_tests/test_sim.py) and by the pass/fail table
of ``make sim`` (sim_tests/regress.py).  The quick subset (``make test``) is
the default configuration in one mode per unit.
"""

from __future__ import annotations

CONFIG_NAMES = ("small4x4", "default", "wide8x16")
MODES = ("nearest", "stochastic")

#: unit -> (modes exercised, mode of the quick test); None: the unit has no rounding mode
BENCHES = {
    "random_lanes": ((None,), None),
    "mac_array": ((None,), None),
    "shift_quantizer": (MODES, "nearest"),
    "update_unit": (MODES, "stochastic"),
    "vector_engine": ((None,), None),
    "quant_engine": (MODES, "nearest"),
    "update_engine": (MODES, "stochastic"),
    "matmul_engine": ((None,), None),
    "host_link": ((None,), None),
    "eoq_core": (("quick", "full"), "quick"),  # full adds the 50-step training run
}
