"""``python -m sim_board.build --config NAME``: build the simulated board.

Generates eoq_system.v with rtl_gen and compiles it with sim_board/harness.cpp
into ``build/sim_board/<config>/harness`` (``verilator --cc --exe --build -O3``).

Two caches keep repeated calls cheap:
  * Verilog generation (about 2 minutes for the default core) is skipped when
    the hash of its inputs (hw/, rtl_gen/, protocol/ and the golden-model
    contracts the gateware reads: config, isa, prng) matches the last
    generation's stamp;
  * compilation is skipped when the hash of the Verilog, harness.cpp and the
    Verilator version matches the last build's stamp.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import amaranth

from golden_model.config import CoreConfig, get_config
from rtl_gen.units import generate

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).resolve().parent / "harness.cpp"
BUILD_ROOT = ROOT / "build" / "sim_board"
VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                   "--top-module", "eoq_system", "-CFLAGS", "-O2"]


class BuildError(RuntimeError):
    """The simulated board could not be built (missing tools, failed compile)."""


def _hash_files(paths, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def source_hash(cfg: CoreConfig) -> str:
    """Hash of everything the generated Verilog depends on."""
    files = [*(ROOT / "hw").glob("*.py"), *(ROOT / "rtl_gen").glob("*.py"), *(ROOT / "protocol").glob("*.py"),
             *(ROOT / "golden_model" / name for name in ("config.py", "isa.py", "prng.py"))]
    return _hash_files(files, cfg.to_json() + amaranth.__version__)


def check_tools() -> None:
    missing = [tool for tool in ("verilator", "g++", "make") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"sim_board needs {', '.join(missing)} on PATH to build the simulated board: "
                         f"run make setup")


def verilator_version() -> str:
    return subprocess.run(["verilator", "--version"], capture_output=True, text=True).stdout.strip()


def build_dir(cfg: CoreConfig) -> Path:
    return BUILD_ROOT / cfg.name


def generate_verilog(cfg: CoreConfig, out: Path, log=print) -> Path:
    stamp = out / "verilog.stamp"
    path = out / "eoq_system.v"
    key = source_hash(cfg)
    if path.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return path
    log(f"sim_board: generating eoq_system.v for configuration {cfg.name} (takes a few minutes)")
    start = time.perf_counter()
    generate("eoq_system", cfg, out)
    (out / "config.json").write_text(cfg.to_json() + "\n")
    stamp.write_text(key + "\n")
    log(f"sim_board: Verilog generated in {time.perf_counter() - start:.0f} s")
    return path


def build(cfg: CoreConfig | str = "default", log=print, jobs: int | None = None) -> Path:
    """Build (or reuse) the simulated board of ``cfg``; returns the harness executable."""
    if isinstance(cfg, str):
        cfg = get_config(cfg)
    check_tools()
    out = build_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:          # parallel test workers build once, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(cfg, out, log, jobs)


def _build_locked(cfg: CoreConfig, out: Path, log, jobs: int | None) -> Path:
    verilog = generate_verilog(cfg, out, log)
    exe = out / "harness"
    stamp = out / "build.stamp"
    key = hashlib.sha256(verilog.read_bytes() + HARNESS.read_bytes() +
                         (verilator_version() + " ".join(VERILATOR_FLAGS)).encode()).hexdigest()
    if exe.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return exe
    log(f"sim_board: compiling {verilog.relative_to(ROOT)} with Verilator (a few minutes)")
    start = time.perf_counter()
    obj = out / "obj"
    if obj.exists():
        shutil.rmtree(obj)
    cmd = ["verilator", "--cc", "--exe", "--build", *VERILATOR_FLAGS, "-Mdir", str(obj), "-o", str(exe),
           "-j", str(jobs or os.cpu_count() or 1), str(verilog), str(HARNESS)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (out / "build.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not exe.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BuildError(f"sim_board: Verilator build failed (log: {out / 'build.log'}):\n{tail}")
    stamp.write_text(key + "\n")
    log(f"sim_board: built {exe.relative_to(ROOT)} in {time.perf_counter() - start:.0f} s")
    return exe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim_board.build", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="core configuration name")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="parallel compile jobs")
    args = parser.parse_args(argv)
    try:
        cfg = get_config(args.config)
        exe = build(cfg, jobs=args.jobs, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, BuildError) as error:
        print(f"sim_board: {error}" if not str(error).startswith("sim_board") else str(error), file=sys.stderr)
        return 1
    print(exe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
