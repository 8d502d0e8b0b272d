"""The regression matrix: which unit runs in which configurations and rounding modes.

Read by the pytest entry (sim_tests/test_sim.py) and by the pass/fail table
of ``make sim`` (sim_tests/regress.py).  The quick subset (``make test``) is
the default configuration; a unit with two rounding modes runs in both there
(a bug in one mode only must not pass the quick suite), the core in its
quick variant.
"""

from __future__ import annotations

CONFIG_NAMES = ("small4x4", "default", "wide8x16")
MODES = ("nearest", "stochastic")

#: unit -> (modes exercised, modes of the quick subset); None: the unit has no rounding mode
BENCHES = {
    "random_lanes": ((None,), (None,)),
    "mac_array": ((None,), (None,)),
    "mac_array_mux": ((None,), (None,)),
    "shift_quantizer": (MODES, MODES),
    "update_unit": (MODES, MODES),
    "vector_engine": ((None,), (None,)),
    "quant_engine": (MODES, MODES),
    "update_engine": (MODES, MODES),
    "matmul_engine": ((None,), (None,)),
    "host_link": ((None,), (None,)),
    "loss_unit": ((None,), (None,)),
    "shuffler": ((None,), (None,)),
    "eoq_core": (("quick", "full"), ("quick",)),  # full adds the 50-step training run
}
