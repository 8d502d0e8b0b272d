"""Tests of the benchmark driver (bench/__main__.py) and, slow, of the golden section."""

from __future__ import annotations

import json
import types

import pytest

import bench.__main__ as bench_main


@pytest.fixture
def fake_sections(monkeypatch):
    sections = []
    for name, value in (("one", {"a": 1, "sub": {"t_seconds": 0.5}}), ("two", {"b": 2.0})):
        module = types.ModuleType(f"bench_fake_{name}")
        module.run = (lambda v: lambda quick=False: dict(v))(value)
        sections.append((name, module))
    monkeypatch.setattr(bench_main, "SECTIONS", sections)


def test_sections_merge_into_json(fake_sections, tmp_path, capsys):
    out = tmp_path / "b" / "bench.json"
    assert bench_main.main(["--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["one"]["a"] == 1 and data["one"]["sub"]["t_seconds"] == 0.5 and data["two"]["b"] == 2.0
    assert data["meta"]["sections"] == ["one", "two"]
    text = capsys.readouterr().out
    assert "one.sub.t_seconds" in text and "two.b" in text


def test_only_selects_a_section(fake_sections, tmp_path):
    out = tmp_path / "bench.json"
    bench_main.main(["--out", str(out), "--only", "two"])
    data = json.loads(out.read_text())
    assert "two" in data and "one" not in data


def test_only_unknown_section_is_an_error(fake_sections, capsys):
    with pytest.raises(SystemExit) as info:
        bench_main.main(["--only", "nope"])
    assert info.value.code != 0
    assert "unknown section(s) nope" in capsys.readouterr().err


def test_golden_is_registered():
    assert "golden" in bench_main.section_names()


@pytest.mark.slow
def test_golden_section_quick(tmp_path):
    out = tmp_path / "bench.json"
    bench_main.main(["--out", str(out), "--only", "golden", "--quick"])
    golden = json.loads(out.read_text())["golden"]
    for batch, macs in (("batch16", 558080), ("batch1", 34880)):
        section = golden[batch]
        assert section["int_macs_per_step"] == macs
        assert section["step_seconds"] > 0 and section["epoch_seconds"] > section["step_seconds"]
        assert section["fp32_epoch_seconds"] > 0 and section["int8_over_fp32_time_ratio"] > 0
    assert golden["int8_over_fp32_time_ratio"] == golden["batch16"]["int8_over_fp32_time_ratio"]


def test_accuracy_table_in_parallel_equals_serial():
    """bench.accuracy: each run is a pure function of its settings, so processes change nothing."""
    from bench import accuracy
    serial = accuracy.measure([0, 1], settings=((16, 1),), arch="mlp", jobs=1)
    parallel = accuracy.measure([0, 1], settings=((16, 1),), arch="mlp", jobs=2)
    for row in (serial["rows"][0], parallel["rows"][0]):
        row.pop("seconds")
    assert serial == parallel
    row = serial["rows"][0]
    assert len(row["int8_accuracy"]) == 2 and 0.1 < row["int8_mean"] <= 1
    assert row["meets_target"] == (row["int8_mean"] >= 0.95 and row["fp32_mean"] - row["int8_mean"] <= 0.015)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_accuracy_targets_hold(arch, tmp_path):
    """The README's accuracy table: int8 within its target of FP32 at batch 16 and 1, seeds 0-2."""
    from bench import accuracy
    result = accuracy.measure([0, 1, 2], arch=arch, jobs=2)
    assert all(row["meets_target"] for row in result["rows"]), accuracy.table([result])


def test_int_loss_section_quick(tmp_path):
    """The integer loss section compares against the float error and reports shares in [0, 1]."""
    out = tmp_path / "b.json"
    bench_main.main(["--out", str(out), "--only", "int_loss", "--quick"])
    section = json.loads(out.read_text())["int_loss"]
    for batch in ("batch16", "batch1"):
        row = section[batch]
        assert row["elements"] == row["vectors"] * 10 > 0
        assert 0 <= row["share_off_by_more_than_one_step"] < 1e-3
        assert row["worst_difference_steps"] <= 1


@pytest.mark.parametrize("batch", [1, 16])
def test_core_summary_counts_the_batch(batch):
    """bench.core's figures: utilization = useful MACs / (PEs x cycles); the vector engine's element-wise MACs
    (three passes over fc2's output per sample) leave the products' utilization."""
    from bench.core import summarize
    ops = {name: 0 for name in ("MATMUL", "QUANT", "HALT")}
    raw = {"config": "default", "batch": batch, "pes": 64, "forward_cycles": 300, "backward_cycles": 700,
           "forward_ops": {**ops, "MATMUL": 200, "HALT": 10}, "backward_ops": {**ops, "MATMUL": 500, "HALT": 20},
           "macs": {"forward": 4000 * batch, "backward": 3000 * batch, "gradient": 3000 * batch},
           "wall_seconds": 2.0, "total_cycles": 5000}
    result = summarize(raw, link_bytes_per_step=340)
    assert result["batch"] == batch and result["cycles_per_step"] == 1000
    assert result["mac_utilization"] == round(10000 * batch / 64000, 4)
    assert result["phases"]["forward"]["mac_utilization"] == round(4000 * batch / (64 * 300), 4)
    assert result["product_utilization"] == round((10000 - 3 * 64) * batch / (64 * 700), 4)
    assert result["transfers"]["mac_utilization_with_transfers"] == round(10000 * batch / (64 * 1340), 4)
