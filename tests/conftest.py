"""Shared by the test modules: a seeded generator (``rng``), the simulated board (``sim_exe``), and a guard for
the Amaranth simulator.

``sim_exe`` builds (or reuses) the simulated board of the default configuration
once per module and skips the test when Verilator is missing.

The guard, for tests that run the Amaranth simulator:

A testbench still waiting in ``ctx.tick().until(...)`` or ``.repeat(...)`` when
its test ends (a failed test: the awaited byte never came) is an Amaranth
async generator that cannot be closed cleanly: when the garbage collector
finalizes it, ``aclose()`` raises "asynchronous generator is already running"
and pytest's unraisable-exception hook formats that traceback in Python.  On
Python 3.11 the traceback module parses source lines with ``ast.parse`` to
place its ``^^^`` markers, and ``ast.parse`` keeps its recursion counter in
per-interpreter state: a parse nested in a garbage collection that struck
during another parse (pytest rewriting a module's asserts, or locating the
statement of a failure's traceback) overwrites the outer parse's counter, and
the outer parse fails with "SystemError: AST constructor recursion depth
mismatch": an INTERNALERROR that hides the test failures.

So before pytest builds a report for a test that uses the simulator, the
garbage is collected here, where no parse is running.  The testbenches of
tests/test_uart.py also never wait unboundedly (tests/test_uart.py, wait_for).
"""

from __future__ import annotations

import gc
import os
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden_model.config import get_config
from sim_board.build import BuildError, build, check_tools


@pytest.fixture
def rng(request):
    """numpy Generator with a printed seed (TEST_SEED=<n> replays a failure)."""
    seed = int(os.environ.get("TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\n[{request.node.nodeid}] numpy seed = {seed}  (replay: TEST_SEED={seed})")
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def sim_exe():
    try:
        check_tools()
    except BuildError as error:
        pytest.skip(str(error))
    return build(get_config("default"))


def uses_simulator(item) -> bool:
    module = getattr(item, "module", None)
    return module is not None and any(value is Simulator for value in vars(module).values())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    if uses_simulator(item):
        gc.collect()
    return (yield)
