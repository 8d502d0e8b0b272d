"""The units the cocotb regression simulates: rtl_gen's units, some in a bench wrapper.

Engines run inside :class:`sim_tests.harness.EngineHarness`; the host link
alone gets a short frame timeout (:data:`BENCH_TIMEOUT_CYCLES`) so its
timeout bench stays fast.  Everything else is rtl_gen's unit as is.
"""

from __future__ import annotations

from golden_model.config import CoreConfig
from hw.host_link import HostLink
from hw.matmul_engine import MatmulEngine
from hw.quant_engine import QuantEngine
from hw.update_engine import UpdateEngine
from hw.vector_engine import VectorEngine
from rtl_gen.units import UNITS, Unit

from .harness import EngineHarness

#: Frame timeout of the stand-alone host-link unit in its bench (the core top uses cfg's).
BENCH_TIMEOUT_CYCLES = 2048


def bench_timeout_cycles(cfg: CoreConfig) -> int:
    """Frame timeout of the stand-alone link: the configured one, capped so that the bench stays fast."""
    return min(cfg.frame_timeout_cycles, BENCH_TIMEOUT_CYCLES)


def _in_harness(engine):
    return lambda cfg, lanes: EngineHarness(cfg, engine(cfg))


BENCH_UNITS: dict[str, Unit] = {
    **UNITS,
    "matmul_engine": Unit("matmul_engine", _in_harness(MatmulEngine)),
    "quant_engine": Unit("quant_engine", _in_harness(QuantEngine)),
    "vector_engine": Unit("vector_engine", _in_harness(VectorEngine)),
    "update_engine": Unit("update_engine", _in_harness(UpdateEngine)),
    "host_link": Unit("host_link", lambda cfg, lanes: HostLink(cfg, timeout_cycles=bench_timeout_cycles(cfg))),
}
