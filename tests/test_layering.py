"""The import graph shows the layering, and product code stays plain.

    golden_model  <-  protocol  <-  hw  <-  rtl_gen  <-  sim_board, fpga
                              ^---  host (driver)  <-  bench

The gateware never imports the host driver or test code, the contracts
(golden_model, protocol) import neither, and product modules import at the
top (no lazy or string imports) and keep every function under 120 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("golden_model", "protocol", "hw", "rtl_gen", "host", "fpga", "sim_board", "bench")
#: package -> top-level packages of this project it must not import
FORBIDDEN = {
    "golden_model": {"protocol", "hw", "rtl_gen", "host", "fpga", "sim_board", "sim_tests", "bench"},
    "protocol": {"hw", "rtl_gen", "host", "fpga", "sim_board", "sim_tests", "bench"},
    "hw": {"host", "rtl_gen", "fpga", "sim_board", "sim_tests", "bench"},
    "rtl_gen": {"host", "fpga", "sim_board", "sim_tests", "bench"},
    "host": {"sim_tests", "bench", "fpga"},
}
MAX_FUNCTION_LINES = 120


def modules(package: str):
    return sorted((ROOT / package).glob("*.py"))


def imported_packages(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package):
    for path in modules(package):
        bad = imported_packages(ast.parse(path.read_text())) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", PRODUCT)
def test_imports_are_at_the_top_and_plain(package):
    for path in modules(package):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    assert not isinstance(inner, (ast.Import, ast.ImportFrom)), \
                        f"{path.relative_to(ROOT)}:{inner.lineno}: import inside {node.name}()"
            if isinstance(node, ast.Name) and node.id == "__import__":
                pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno}: __import__")
        assert "importlib" not in imported_packages(tree), f"{path.relative_to(ROOT)} imports importlib"


@pytest.mark.parametrize("package", PRODUCT + ("sim_tests",))
def test_functions_stay_short(package):
    for path in modules(package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= MAX_FUNCTION_LINES, \
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}() has {lines} lines"
