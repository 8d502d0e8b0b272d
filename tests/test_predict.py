"""eoq-train --save / --load and eoq-predict: saved weights continue bit for bit and predict as trained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.train import GoldenTarget, Position, default_lr_shift, run_training
from host.checkpoint import load_file

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config("default")
STEPS = 5


def run(module, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def train(tmp_path, name, *args):
    proc = run("host.train", "--epochs", "1", "--steps", str(STEPS), "--no-progress",
               "--metrics", str(tmp_path / f"{name}.json"), "--save", str(tmp_path / f"{name}.npz"), *args)
    assert proc.returncode == 0, proc.stderr
    return load_file(tmp_path / f"{name}.npz")


def in_process(arch: str, seed: int, sessions: int) -> GoldenTarget:
    """The golden target after ``sessions`` one-epoch runs, each continuing the last one's data order."""
    lr = default_lr_shift(16, arch)
    target = GoldenTarget(CFG, seed, lr, arch)
    start, ends = None, []
    for _ in range(sessions):
        target.lr_shift = lr
        run_training(target, 1, 16, seed, progress=False, train_accuracy="running", max_steps=STEPS,
                     start=start, on_epoch=ends.append)
        start = Position(rng_state=ends[-1].rng_state)
    return target


@pytest.mark.parametrize("arch, seed", [("mlp", 3), ("cnn", 1)])
def test_save_then_load_continues_bit_for_bit(tmp_path, arch, seed):
    print(f"arch={arch} seed={seed}")
    train(tmp_path, "a", "--target", "golden", "--arch", arch, "--seed", str(seed))
    b = train(tmp_path, "b", "--target", "golden", "--load", str(tmp_path / "a.npz"))
    assert b.run["arch"] == arch and b.run["seed"] == seed
    want = in_process(arch, seed, 2)
    assert b.model_step == want.model.step
    for name, param in want.model.params.items():
        assert b.model[name].exp == param.exp, name
        np.testing.assert_array_equal(b.model[name].q, param.q, err_msg=name)
    assert b.inference == want.calibrated and b.inference is not None


def test_predict_matches_the_golden_model_and_writes_csv(tmp_path):
    saved = train(tmp_path, "a", "--target", "golden", "--arch", "cnn", "--seed", "2")
    out = tmp_path / "p.csv"
    proc = run("host.predict", "--weights", str(tmp_path / "a.npz"), "--target", "golden", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    data = load_digits_split()
    target = GoldenTarget(CFG, 2, 0, "cnn")
    target.model.params, target.calibrated = saved.model, saved.inference
    want = target.predict(data.test_x)
    rows = np.loadtxt(out, delimiter=",", skiprows=1, dtype=np.int64)
    np.testing.assert_array_equal(rows[:, 1], data.test_y)
    np.testing.assert_array_equal(rows[:, 2], want)
    assert summary["accuracy"] == float(np.mean(want == data.test_y))
    assert summary["frozen_exponents"] is True and summary["samples"] == len(data.test_y)


def test_predict_on_the_simulated_core_is_bit_exact(tmp_path, sim_exe):
    train(tmp_path, "a", "--target", "golden", "--arch", "cnn")
    out = tmp_path / "p.npy"
    proc = run("host.predict", "--weights", str(tmp_path / "a.npz"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["target"] == "sim" and summary["bit_exact"] is True
    assert np.load(out).shape == (360,)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    where = tmp_path_factory.mktemp("saved")
    train(where, "int8", "--target", "golden")
    train(where, "fp32", "--target", "fp32")
    return where


def predict_refusal(capsys, *args) -> str:
    from host import predict
    with pytest.raises(SystemExit) as stop:
        predict.main(list(args))
    message = str(stop.value)
    assert message.startswith("eoq-predict: ") and "\n" not in message, message
    assert capsys.readouterr().out == ""
    return message


@pytest.mark.parametrize("args, message", [
    (["--weights", "{dir}/none.npz"], "no saved weights at {dir}/none.npz (write them with eoq-train --save)"),
    (["--weights", "{dir}/fp32.npz", "--target", "sim"], "holds fp32 weights; target sim runs int8 ones"),
    (["--weights", "{dir}/int8.npz", "--target", "fp32"], "holds int8 weights; target fp32 runs float32 ones"),
    (["--weights", "{dir}/int8.npz", "--out", "{dir}/p.txt"], "write .npy or .csv (got '.txt')"),
    (["--weights", "{dir}/int8.npz", "--data", "{dir}/small.npz"],
     "the data are 1x4x4 samples in 10 classes; {dir}/int8.npz was trained on 1x8x8 in 10"),
])
def test_predict_refuses_bad_input(saved, capsys, args, message):
    rng = np.random.default_rng(0)
    np.savez(saved / "small.npz", x_train=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8),
             y_train=np.arange(20) % 10, x_test=rng.integers(0, 256, (10, 4, 4), dtype=np.uint8),
             y_test=np.arange(10))
    args = [a.format(dir=saved) for a in args]
    assert message.format(dir=saved) in predict_refusal(capsys, *args)


def test_load_refuses_conflicts(saved, capsys):
    from host import train as cli
    with pytest.raises(SystemExit) as stop:
        cli.main(["--no-progress", "--target", "golden", "--load", str(saved / "int8.npz"), "--arch", "cnn"])
    assert "--arch cnn conflicts with" in str(stop.value) and "trained with arch 'mlp'" in str(stop.value)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--no-progress", "--target", "fp32", "--load", str(saved / "int8.npz")])
    assert "holds int8 weights; target fp32 trains fp32" in str(stop.value)
    with pytest.raises(SystemExit):
        cli.main(["--no-progress", "--load", str(saved / "int8.npz"), "--resume", str(saved)])
    assert "give one of them" in capsys.readouterr().err


def test_unwritable_save_path_is_refused_before_training(tmp_path, capsys):
    from host import train as cli
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as stop:
        cli.main(["--no-progress", "--target", "golden", "--metrics", str(tmp_path / "m.json"),
                  "--save", str(tmp_path / "afile" / "w.npz")])
    assert str(stop.value).startswith("eoq-train: cannot write the saved weights in ")
    assert capsys.readouterr().out == "" and not (tmp_path / "m.json").exists()
