"""bench.batch_size and bench.ablation with tiny settings: they run, write their JSON (and PNG), and
their tables and rules hold together."""

from __future__ import annotations

import json

import pytest

from bench import ablation, batch_size
from golden_model.config import get_config


def test_batch_size_tiny(tmp_path, capsys):
    out = tmp_path / "bs.json"
    assert batch_size.main(["--arch", "mlp", "--data", "noisy-digits", "--batches", "2", "32", "--seeds", "1",
                            "--epochs", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["method"], r["batch"]) for r in rows} == {(m, b) for m in batch_size.METHODS for b in (2, 32)}
    assert all(r["seeds"] == [1] and r["epochs"] == 1 and len(r["accuracy"]) == 1 for r in rows)
    assert all(0.0 <= r["mean"] <= 1.0 for r in rows)
    assert (tmp_path / "bs.png").stat().st_size > 1000
    assert "| noisy-digits | mlp | 32 |" in capsys.readouterr().out


def test_batch_size_quick_defaults():
    args = batch_size.parse(["--quick"])
    assert args.seeds == [0] and args.epochs == batch_size.QUICK_EPOCHS
    args = batch_size.parse(["--quick", "--seeds", "3", "4", "--epochs", "5"])
    assert args.seeds == [3, 4] and args.epochs == 5
    full = batch_size.parse([])
    assert full.seeds == list(batch_size.SEEDS) and full.epochs == batch_size.EPOCHS


@pytest.mark.parametrize("arch, fits", [("mlp", True), ("cnn", False)])
def test_batch_32_configuration(arch, fits):
    """The MLP at batch 32 runs on a copy of the core with max_batch 32; the CNN's 32 images exceed
    what a convolution geometry holds (31), so its int8 row says why instead."""
    cfg, why = batch_size.config_for_batch(get_config("default"), 32, arch)
    assert (cfg is not None) == fits
    if fits:
        assert cfg.max_batch == 32 and why == ""
    else:
        assert "batch" in why
    assert batch_size.config_for_batch(get_config("default"), 16, arch) == (get_config("default"), "")


def test_ablation_tiny(tmp_path, capsys):
    out = tmp_path / "ab.json"
    assert ablation.main(["--arch", "mlp", "--data", "digits", "--batches", "16", "--variants", "core", "flag",
                          "normalized", "--seeds", "0", "--epochs", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fp32", "core", "flag", "normalized"]
    fp32 = rows[0]["mean"]
    for row in rows[1:]:
        assert row["gap_points"] == round(100 * (fp32 - row["mean"]), 2)
        assert row["hardware_cost"] == ablation.HARDWARE_COST[row["variant"]]
    assert rows[3]["lr_shift"] == ablation.normalized_lr_shift(16) and rows[1]["lr_shift"] == 4
    assert all(len(r["multiplier"]) == 1 and 0 < r["multiplier"][0] <= 4 for r in rows)
    assert max(r["multiplier"][0] for r in rows[1:]) <= 127 / 64
    assert "| digits | mlp | 16 | 1 | flag |" in capsys.readouterr().out


def test_ablation_variants_are_distinct_and_costed():
    labels = [v.label for v in ablation.VARIANTS.values()]
    assert len(set(labels)) == len(labels) and labels[0] == "core"
    assert set(ablation.HARDWARE_COST) == set(ablation.VARIANTS)
    assert ablation.normalized_lr_shift(1) == 6 and ablation.normalized_lr_shift(32) == 4


def test_ablation_quick_defaults():
    args = ablation.parse(["--quick"])
    assert args.seeds == [0] and args.epochs is None
    assert ablation.parse(["--seeds", "5", "--epochs", "2"]).seeds == [5]


def test_merge_without_training(tmp_path):
    first, second, merged = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    assert batch_size.main(["--arch", "mlp", "--data", "digits", "--batches", "4", "--seeds", "0", "--epochs", "1",
                            "--out", str(first)]) == 0
    assert batch_size.main(["--arch", "mlp", "--data", "noisy-digits", "--batches", "4", "--seeds", "0",
                            "--epochs", "1", "--out", str(second)]) == 0
    assert batch_size.main(["--merge", str(first), str(second), "--out", str(merged)]) == 0
    rows = json.loads(merged.read_text())["rows"]
    assert rows == json.loads(first.read_text())["rows"] + json.loads(second.read_text())["rows"]
    assert merged.with_suffix(".png").exists()
    small = tmp_path / "ab.json"
    assert ablation.main(["--arch", "mlp", "--data", "digits", "--batches", "4", "--variants", "mult4", "--seeds", "0",
                          "--epochs", "1", "--out", str(small)]) == 0
    assert ablation.main(["--merge", str(small), str(small), "--out", str(tmp_path / "abm.json")]) == 0
    assert json.loads((tmp_path / "abm.json").read_text())["rows"] == 2 * json.loads(small.read_text())["rows"]


def test_batch_size_reports_what_cannot_run(tmp_path):
    """The CNN at batch 32: no method can run it (31 images per geometry); every row says why."""
    out = tmp_path / "cnn.json"
    assert batch_size.main(["--arch", "cnn", "--data", "digits", "--batches", "32", "--seeds", "0", "--epochs", "1",
                            "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == list(batch_size.METHODS)
    assert all(r["mean"] is None and "31" in r["note"] for r in rows)
