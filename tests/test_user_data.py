"""A user's own data (golden_model/data.py load_npz): the format, the quantization rule, every refusal,
and training on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden_model.config import get_config
from golden_model.data import DIGITS_FORMAT, DataError, load_npz
from golden_model.train import FloatTarget, GoldenTarget, check_fits, run_training
from host.train import choose_mode, parse_args

CFG = get_config("default")


def arrays(rng, n_train=40, n_test=12, shape=(8, 8), dtype=np.uint8, classes=3):
    """Class k: a bright k-th horizontal band, plus noise."""
    def make(n):
        y = rng.integers(0, classes, size=n)
        x = rng.integers(0, 60, size=(n,) + shape).astype(np.float64)
        band = shape[-2] // classes
        for i, label in enumerate(y):
            x[i, ..., label * band:(label + 1) * band, :] += 180
        return x.astype(dtype), y
    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    y_train[:classes] = np.arange(classes)           # every class present in training
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def save(tmp_path, data, name="d.npz"):
    path = tmp_path / name
    np.savez(path, **data)
    return path


def test_uint8_images_take_the_stated_rule(tmp_path):
    data = arrays(np.random.default_rng(0))
    ds = load_npz(save(tmp_path, data))
    fmt = ds.format
    assert (fmt.channels, fmt.height, fmt.width, fmt.classes, fmt.exp) == (1, 8, 8, 3, -7)
    assert ds.train_x.shape == (40, 64) and ds.test_y.shape == (12,)
    target = GoldenTarget(CFG, 0, 4, "mlp", fmt)
    x = target.inputs(ds.train_x[:4])
    v = data["x_train"][:4].reshape(4, -1).astype(np.int64)
    np.testing.assert_array_equal(x.q, np.minimum((v + 1) // 2, 127))   # round(v / 2), half away from zero
    assert x.exp == -7


def test_float_channels_first_images_take_the_training_sets_grid(tmp_path):
    rng = np.random.default_rng(1)
    data = arrays(rng, shape=(2, 4, 6), dtype=np.float32)
    data["x_train"] = data["x_train"] / 100.0                  # max |x| in [2, 4): grid 2**(1 - 6)
    data["x_test"] = data["x_test"] / 100.0
    ds = load_npz(save(tmp_path, data))
    fmt = ds.format
    assert (fmt.channels, fmt.height, fmt.width) == (2, 4, 6)
    peak = float(np.abs(data["x_train"]).max())
    assert fmt.exp == int(np.floor(np.log2(peak))) - 6
    x = GoldenTarget(CFG, 0, 4, "mlp", fmt).inputs(ds.train_x)
    assert 64 <= np.abs(x.q).max() <= 127
    # the CNN takes the channels-first samples as pixel rows (B*H*W, C)
    rows = GoldenTarget(CFG, 0, 2, "cnn", fmt).inputs(ds.train_x[:2])
    assert rows.q.shape == (2 * 4 * 6, 2)
    np.testing.assert_array_equal(rows.q[:, 1].reshape(2, 4, 6),
                                  x.q[:2].reshape(2, 2, 4, 6)[:, 1])


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("y_test"), "lacks y_test"),
    (lambda d: d.update(x_train=d["x_train"].astype(np.int16)), "x_train has dtype int16; images must be uint8 or float"),
    (lambda d: d.update(x_test=d["x_test"][:, 0]), "x_test has shape .* must be \\(N, H, W\\) or \\(N, C, H, W\\)"),
    (lambda d: d.update(x_test=d["x_test"][:, :, :4]), "one sample shape"),
    (lambda d: d.update(x_test=d["x_test"].astype(np.float32)), "x_train is uint8 but x_test is float32"),
    (lambda d: d.update(y_train=d["y_train"].astype(np.float32)), "y_train has dtype float32; labels must be integers"),
    (lambda d: d.update(y_train=d["y_train"][:-1]), "y_train has shape \\(39,\\); expected \\(40,\\)"),
    (lambda d: d.update(y_test=d["y_test"] - 5), "negative label"),
    (lambda d: d.update(y_train=np.zeros(40, dtype=np.int64)), "fewer than two classes"),
    (lambda d: d.update(y_test=np.full(12, 7)), "y_test holds label 7 but y_train's labels are 0..2"),
    (lambda d: d.update(x_train=d["x_train"][:0], y_train=d["y_train"][:0]), "x_train holds no samples"),
])
def test_malformed_files_are_refused_with_what_to_do(tmp_path, change, message):
    data = arrays(np.random.default_rng(2))
    change(data)
    with pytest.raises(DataError, match=message):
        load_npz(save(tmp_path, data))


def test_unreadable_and_non_finite_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="cannot read data file .*missing.npz"):
        load_npz(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read data file"):
        load_npz(bad)
    data = arrays(np.random.default_rng(3), dtype=np.float32)
    data["x_train"][0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        load_npz(save(tmp_path, data))
    data = arrays(np.random.default_rng(3), dtype=np.float32)
    data["x_train"][:] = 0
    with pytest.raises(DataError, match="all zeros"):
        load_npz(save(tmp_path, data))


def test_a_shape_the_configuration_cannot_hold_names_the_limit_and_a_configuration(tmp_path):
    data = arrays(np.random.default_rng(4), shape=(16, 16))
    fmt = load_npz(save(tmp_path, data)).format
    with pytest.raises(DataError, match=r"1x16x16 .*mlp at batch 16: layer fc1 is 64x256; configuration default "
                                        r"holds at most 64 features; no configuration holds it"):
        check_fits("mlp", fmt, CFG, 16)
    with pytest.raises(DataError, match=r"cnn at batch 16: layer stem needs 4096 pixel rows.*max_dim.*"
                                        r"configuration default holds batch 4 \(--batch 4\)"):
        check_fits("cnn", fmt, CFG, 16)
    check_fits("cnn", fmt, CFG, 4)                       # 4 images of 16x16 fit
    with pytest.raises(DataError, match=r"TMEM words of configuration ulx3s.*holds batch 7 \(--batch 7\); "
                                        r"configuration default, default_nearest holds it"):
        check_fits("cnn", DIGITS_FORMAT, get_config("ulx3s"), 16)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_training_on_a_users_data_learns(tmp_path, arch):
    ds = load_npz(save(tmp_path, arrays(np.random.default_rng(5), n_train=96, n_test=48)))
    for target in (GoldenTarget(CFG, 0, 3 if arch == "cnn" else 4, arch, ds.format),
                   FloatTarget(0, 3 if arch == "cnn" else 4, arch, ds.format)):
        history, _ = run_training(target, 3, 8, 0, ds, progress=False, log=None)
        assert history[-1].test_accuracy >= 0.8, (arch, type(target).__name__, history)


@pytest.mark.parametrize("target, arch, shape", [("golden", "mlp", (6, 10)), ("golden", "cnn", (2, 6, 10)),
                                                  ("sim", "cnn", (2, 6, 10))])
def test_eoq_train_data_runs_on_every_target_bit_exact(tmp_path, target, arch, shape, request):
    """eoq-train --data: a rectangular two-channel set in 3 classes, on the core and the golden Machine."""
    if target == "sim":
        request.getfixturevalue("sim_exe")
    path = save(tmp_path, arrays(np.random.default_rng(6), n_train=48, n_test=12, shape=shape))
    proc = subprocess.run([sys.executable, "-m", "host.train", "--target", target, "--arch", arch, "--data", str(path),
                           "--epochs", "1", "--steps", "3", "--batch", "8", "--no-progress",
                           "--metrics", str(tmp_path / "m.json")],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["bit_exact"] is True and metrics["steps"] == 3 and metrics["data"] == str(path)


def test_autonomous_training_on_a_small_set_and_a_set_too_large(tmp_path):
    """The user's set trains autonomously (data resident, bit-exact on the golden device); one beyond
    the data memory is refused naming the limit and the host loop."""
    rng = np.random.default_rng(5)
    small = save(tmp_path, arrays(rng), "small.npz")
    metrics = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "host.train", "--autonomous", "--target", "golden", "--data",
                           str(small), "--epochs", "2", "--metrics", str(metrics), "--no-progress"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(metrics.read_text())
    # 40 samples at batch 16: 3 steps (8 samples into the next epoch), then the 32 left: 2 steps
    assert data["mode"] == "autonomous" and data["bit_exact"] is True and data["steps"] == 3 + 2
    big = save(tmp_path, arrays(rng, n_train=CFG.data_samples, n_test=20), "big.npz")
    proc = subprocess.run([sys.executable, "-m", "host.train", "--autonomous", "--target", "golden", "--data",
                           str(big), "--epochs", "1", "--metrics", str(metrics), "--no-progress"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"exceed the label memory of configuration default (data_samples {CFG.data_samples})" in proc.stderr
    assert "--host-loop" in proc.stderr
    args = parse_args(["--target", "serial:/dev/null", "--data", str(big)])
    run = {"arch": "mlp", "target": "serial:/dev/null", "dataset": load_npz(big)}
    assert choose_mode(args, run, CFG) == "host-loop"          # the default mode says so and streams per step
    assert choose_mode(args, {**run, "dataset": load_npz(small)}, CFG) == "autonomous"
