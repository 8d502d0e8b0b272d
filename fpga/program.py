"""Program an attached board: ``python -m fpga.program --board ulx3s [--bit PATH] [--flash]`` (``make program``).

Uses openFPGALoader (Debian package ``openfpgaloader``), installed with
apt-get on first use if it is missing.  Without ``--bit`` the newest
build/fpga/<board>-*/top.bit is loaded.  The board is detected first
(``openFPGALoader --detect``); with none attached this says
"no ULX3S found on USB" and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

BOARD_NAMES = {"ulx3s": ("ulx3s", "ULX3S")}     # --board -> (openFPGALoader -b name, display name)
TOOL = "openFPGALoader"
APT_PACKAGE = "openfpgaloader"


class ProgramError(Exception):
    pass


def find_loader(install: bool = True) -> str:
    """Path of openFPGALoader; install it with apt-get when missing (ProgramError if that fails)."""
    tool = os.environ.get("OPENFPGALOADER") or shutil.which(TOOL)
    if tool:
        return tool
    if not install:
        raise ProgramError(f"{TOOL} not found; install it with: apt-get install {APT_PACKAGE}")
    print(f"fpga.program: {TOOL} not found, installing the Debian package {APT_PACKAGE} with apt-get", flush=True)
    sudo = [] if os.geteuid() == 0 else (["sudo"] if shutil.which("sudo") else None)
    if sudo is None:
        raise ProgramError(f"{TOOL} is missing and we are not root (no sudo): run apt-get install {APT_PACKAGE}")
    try:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", APT_PACKAGE], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ProgramError(f"could not install {APT_PACKAGE} with apt-get ({exc}); install openFPGALoader "
                           f"by hand (https://github.com/trabucayre/openFPGALoader) and re-run make program") from None
    tool = shutil.which(TOOL)
    if not tool:
        raise ProgramError(f"apt-get installed {APT_PACKAGE} but {TOOL} is still not on PATH")
    return tool


def latest_bitstream(board: str, root: str | Path = "build/fpga") -> Path:
    candidates = sorted(Path(root).glob(f"{board}-*/top.bit"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ProgramError(f"no bitstream under {root}/{board}-*/: run make bitstream BOARD={board} first")
    return candidates[-1]


def board_present(tool: str, board: str) -> bool:
    """True when openFPGALoader finds the board's JTAG cable and an FPGA behind it."""
    cable_board, _ = BOARD_NAMES[board]
    try:
        proc = subprocess.run([tool, "-b", cable_board, "--detect"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    text = (proc.stdout + proc.stderr).lower()
    return proc.returncode == 0 and "idcode" in text


def program(board: str, bit: str | Path | None = None, flash: bool = False) -> None:
    if board not in BOARD_NAMES:
        raise ProgramError(f"unknown board {board!r}; known boards: {', '.join(sorted(BOARD_NAMES))}")
    cable_board, display = BOARD_NAMES[board]
    bitstream = Path(bit) if bit else latest_bitstream(board)
    if not bitstream.exists():
        raise ProgramError(f"bitstream {bitstream} does not exist")
    tool = find_loader()
    if not board_present(tool, board):
        raise ProgramError(f"no {display} found on USB (openFPGALoader -b {cable_board} --detect found no FPGA); "
                           f"plug the board in by its US1 (FTDI) port and check the USB permissions")
    command = [tool, "-b", cable_board] + (["-f"] if flash else ["-m"]) + [str(bitstream)]
    print("fpga.program:", " ".join(command), flush=True)
    if subprocess.run(command).returncode != 0:
        raise ProgramError(f"openFPGALoader failed to load {bitstream}")
    print(f"fpga.program: {display} programmed with {bitstream} ({'flash' if flash else 'SRAM, lost at power-off'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.program", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ulx3s")
    parser.add_argument("--bit", default=None, help="bitstream (default: newest build/fpga/<board>-*/top.bit)")
    parser.add_argument("--flash", action="store_true", help="write the SPI flash instead of SRAM")
    args = parser.parse_args(argv)
    try:
        program(args.board, args.bit, args.flash)
    except ProgramError as exc:
        print(f"fpga.program: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
