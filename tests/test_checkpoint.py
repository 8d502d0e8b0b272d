"""Checkpoint and resume (host/checkpoint.py, host/session.py): a trainer killed with SIGKILL in the
middle of an epoch, or stopped by Ctrl-C, resumes to final weights bit-identical to an uninterrupted
run, on the golden and the simulated board targets; bad checkpoint files are refused and left alone.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from golden_model.config import get_config
from host import train
from host.checkpoint import FORMAT, STATE_FILE, load
from host.session import Session
from protocol.link_model import LinkDevice, PtyPeer

ROOT = Path(__file__).resolve().parents[1]
#: golden: full epochs (90 steps, a few tenths of a second each); sim: 6 steps an epoch (about a second);
#: the trainer is killed in the last epoch
RUNS = {"golden": ["--epochs", "2"], "sim": ["--epochs", "2", "--steps", "6"], "short": ["--epochs", "2", "--steps", "5"]}


def trainer(*args) -> list[str]:
    return [sys.executable, "-m", "host.train", "--no-progress", "--seed", "2", *args]


def run_cli(*args, timeout=600):
    return subprocess.run(trainer(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def refusal(*args) -> str:
    """eoq-train's one-line refusal of a command line (in process: it stops before any work)."""
    with pytest.raises(SystemExit) as stop:
        train.main(["--no-progress", *args])
    message = str(stop.value)
    assert message.startswith("eoq-train: ") and "\n" not in message, message
    return message


def final_state(directory: Path) -> dict[str, np.ndarray]:
    with np.load(directory / STATE_FILE) as archive:
        return {name: archive[name] for name in archive.files if name != "meta"}


def assert_same_final_state(a: Path, b: Path) -> None:
    """Same weights (golden model and device), exponents, step counter and history."""
    left, right = final_state(a), final_state(b)
    assert sorted(left) == sorted(right) and any(name.startswith("model/") for name in left)
    for name in left:
        assert np.array_equal(left[name], right[name]), name
    first, second = load(a), load(b)
    assert replace(first.position, seconds=0) == replace(second.position, seconds=0)     # wall time differs
    assert first.position.epoch == first.run["epochs"] + 1
    assert first.model_step == second.model_step
    assert {k: getattr(v, "exp", None) for k, v in first.model.items()} == \
        {k: getattr(v, "exp", None) for k, v in second.model.items()}


def kill_mid_epoch(args: list[str], directory: Path, epoch: int = 2) -> str:
    """Start the trainer, wait for the checkpoint that starts ``epoch``, SIGKILL it inside that epoch."""
    proc = subprocess.Popen(trainer(*args, "--checkpoint", str(directory)), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if f"checkpoint at epoch {epoch}, step 0" in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen) + proc.stderr.read()
    return "".join(seen)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, request):
    """One uninterrupted run per target (checkpoint directory, metrics), shared by the tests below."""
    runs = {}

    def get(target: str, length: str | None = None) -> tuple[Path, dict]:
        key = (target, length or target)
        if key not in runs:
            if target == "sim":
                request.getfixturevalue("sim_exe")
            directory = tmp_path_factory.mktemp(f"whole-{target}")
            proc = run_cli("--target", target, *RUNS[key[1]], "--checkpoint", str(directory / "ck"),
                           "--metrics", str(directory / "m.json"))
            assert proc.returncode == 0, proc.stderr
            runs[key] = directory / "ck", json.loads((directory / "m.json").read_text())
        return runs[key]
    return get


@pytest.mark.parametrize("target", ["golden", "sim"])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, target, uninterrupted):
    whole, whole_metrics = uninterrupted(target)
    kill_mid_epoch(["--target", target, *RUNS[target]], tmp_path / "killed")
    position = load(tmp_path / "killed").position
    assert (position.epoch, position.step) == (2, 0), "killed after epoch 2 ended: not mid-epoch"
    resumed = run_cli("--resume", str(tmp_path / "killed"), "--metrics", str(tmp_path / "resumed.json"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming epoch 2, step 0" in resumed.stdout

    assert_same_final_state(whole, tmp_path / "killed")
    metrics = json.loads((tmp_path / "resumed.json").read_text())
    assert metrics["history"] == whole_metrics["history"] and metrics["bit_exact"] is True
    assert metrics["resumed_from"] == {"epoch": 2, "step": 0}


def test_ctrl_c_checkpoints_mid_epoch_and_resumes_bit_identical(tmp_path):
    args = ["--target", "golden", "--epochs", "1"]
    whole = run_cli(*args, "--checkpoint", str(tmp_path / "whole"), "--metrics", str(tmp_path / "w.json"))
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen(trainer(*args, "--checkpoint", str(tmp_path / "stopped"), "--metrics",
                                    str(tmp_path / "s.json")), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "checkpoint at epoch 1, step 0" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at epoch 1, step" in err and "--resume" in err and "Traceback" not in err
    position = load(tmp_path / "stopped").position
    assert position.epoch == 1 and 0 < position.step < 90, position
    assert not (tmp_path / "s.json").exists()
    resumed = run_cli("--resume", str(tmp_path / "stopped"), "--metrics", str(tmp_path / "s.json"))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_final_state(tmp_path / "whole", tmp_path / "stopped")
    assert json.loads((tmp_path / "s.json").read_text())["history"] == json.loads((tmp_path / "w.json").read_text())["history"]


# ------------------------------------------------------------------------- bad checkpoint files

@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("good")
    proc = run_cli("--target", "golden", "--epochs", "2", "--steps", "3", "--checkpoint", str(directory),
                   "--metrics", str(directory / "m.json"))
    assert proc.returncode == 0, proc.stderr
    return directory / STATE_FILE


def _flip_a_byte(data: bytes) -> bytes:
    data = bytearray(data)
    data[len(data) // 2] ^= 0x40
    return bytes(data)


def _npz(**arrays) -> bytes:
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def _with_meta(data: bytes, change) -> bytes:
    with np.load(io.BytesIO(data)) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays["meta"].tobytes())
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    return _npz(**arrays)


BAD_FILES = {
    "corrupted": (_flip_a_byte, "is corrupted or truncated"),
    "truncated": (lambda data: data[:len(data) * 2 // 3], "is corrupted or truncated"),
    "empty": (lambda data: b"", "is corrupted or truncated"),
    "text": (lambda data: b"epoch=3\n", "is corrupted or truncated"),
    "foreign npz": (lambda data: _npz(weights=np.zeros(3)), "is not an eoq-train checkpoint"),
    "other format": (lambda data: _with_meta(data, lambda m: m.update(format="something else")),
                     "is not an eoq-train checkpoint (its format is 'something else')"),
    "newer version": (lambda data: _with_meta(data, lambda m: m.update(version=99)),
                      "is a version 99 checkpoint; this eoq-train reads version 1"),
    "missing array": (lambda data: _with_meta(data, lambda m: m["model"]["exps"].update(fc9=-7)),
                      "lacks the array model/fc9"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_checkpoint_is_refused_and_left_alone(tmp_path, good_checkpoint, kind):
    spoil, message = BAD_FILES[kind]
    directory = tmp_path / "ck"
    directory.mkdir()
    state = directory / STATE_FILE
    state.write_bytes(spoil(good_checkpoint.read_bytes()))
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    refused = refusal("--resume", str(directory), "--metrics", str(tmp_path / "m.json"))
    assert str(state) in refused and message in refused, refused
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in directory.iterdir()) == [STATE_FILE] and not (tmp_path / "m.json").exists()


def test_bad_checkpoint_on_the_command_line_is_one_line(tmp_path, good_checkpoint):
    (tmp_path / STATE_FILE).write_bytes(good_checkpoint.read_bytes()[:1000])
    proc = run_cli("--resume", str(tmp_path), "--metrics", str(tmp_path / "m.json"), timeout=120)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"eoq-train: {tmp_path / STATE_FILE} is corrupted or truncated" in proc.stderr, proc.stderr


def test_missing_checkpoint_is_named(tmp_path):
    assert f"no checkpoint at {tmp_path / 'nothing' / STATE_FILE}" in refusal(
        "--resume", str(tmp_path / "nothing"), "--metrics", str(tmp_path / "m.json"))


@pytest.mark.parametrize("args, message", [
    (["--batch", "8"], "batch 16 (this command line: 8)"),
    (["--seed", "3"], "seed 2 (this command line: 3)"),
    (["--epochs", "5"], "epochs 2 (this command line: 5)"),
    (["--arch", "cnn"], "arch 'mlp' (this command line: 'cnn')"),
])
def test_checkpoint_of_another_run_is_refused(tmp_path, good_checkpoint, args, message):
    before = good_checkpoint.read_bytes()
    refused = refusal("--resume", str(good_checkpoint.parent), *args, "--metrics", str(tmp_path / "m.json"))
    assert "belongs to another run" in refused and message in refused, refused
    assert good_checkpoint.read_bytes() == before


def test_a_fresh_run_does_not_overwrite_a_checkpoint(tmp_path, good_checkpoint):
    before = good_checkpoint.read_bytes()
    refused = refusal("--target", "golden", "--epochs", "1", "--checkpoint", str(good_checkpoint.parent),
                      "--metrics", str(tmp_path / "m.json"))
    assert "already holds a checkpoint; continue it with --resume" in refused
    assert good_checkpoint.read_bytes() == before


def test_resuming_a_finished_run_reports_it(tmp_path, good_checkpoint, capsys):
    directory = tmp_path / "done"
    directory.mkdir()
    (directory / STATE_FILE).write_bytes(good_checkpoint.read_bytes())
    assert train.main(["--no-progress", "--resume", str(directory), "--metrics", str(tmp_path / "m.json")]) == 0
    assert "resuming the end of the run" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["steps"] == 6


def test_checkpoint_file_is_a_checkpoint(good_checkpoint):
    with zipfile.ZipFile(good_checkpoint) as archive:
        assert archive.testzip() is None
    checkpoint = load(good_checkpoint.parent)
    assert checkpoint.run["target"] == "golden" and checkpoint.device is not None
    assert json.loads(np.load(good_checkpoint)["meta"].tobytes())["format"] == FORMAT
    assert os.stat(good_checkpoint).st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------- a device reset under the trainer

class ResettingDevice(LinkDevice):
    """The reference device, whose reset button is pressed as its ``at``-th RUN arrives (no answer comes)."""

    def __init__(self, cfg, at: int):
        super().__init__(cfg)
        self.at, self.runs, self.resets = at, 0, 0

    def _run(self, payload):
        self.runs += 1
        if self.runs == self.at:
            self.reset()
            self.resets += 1
            return None
        return super()._run(payload)


def pty_board(at: int) -> PtyPeer:
    """A ResettingDevice served on a pseudo-terminal, as a board on a serial port."""
    return PtyPeer(ResettingDevice(get_config("default"), at))


def test_device_reset_on_a_serial_line_is_reloaded_from_the_checkpoint(tmp_path, uninterrupted, capsys):
    """The board behind a pty resets during a run of epoch 2: the trainer notices (run_seq 0), reloads
    the epoch-2 checkpoint into the device and the golden model, and ends where the golden run ends."""
    whole, whole_metrics = uninterrupted("golden", "short")
    board = pty_board(at=37)               # epoch 1: 5 steps x 2 runs + 23 for the test set; 37: in epoch 2
    try:
        code = train.main(["--no-progress", "--seed", "2", "--target", f"serial:{board.path}", *RUNS["short"],
                           "--checkpoint", str(tmp_path / "ck"), "--metrics", str(tmp_path / "m.json")])
    finally:
        board.close()
    out = capsys.readouterr().out
    assert code == 0 and board.device.resets == 1
    assert "went unanswered and the device now reports run_seq 0" in out
    assert "reloading the device and the golden model from" in out and "(epoch 2, step 0)" in out
    assert_same_final_state(whole, tmp_path / "ck")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["bit_exact"] is True and metrics["history"] == whole_metrics["history"]


def test_reset_without_a_checkpoint_stops_with_a_clear_message(tmp_path):
    board = pty_board(at=3)
    try:
        with pytest.raises(SystemExit) as stop:
            train.main(["--no-progress", "--host-loop", "--target", f"serial:{board.path}", "--epochs", "1",
                        "--metrics", str(tmp_path / "m.json")])
    finally:
        board.close()
    assert "it was reset during the run" in str(stop.value)
    assert "there is no checkpoint to reload it from (run with --checkpoint DIR)" in str(stop.value)


def children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def test_sim_board_reset_is_reloaded_from_the_checkpoint(tmp_path, uninterrupted):
    """SIGUSR1 presses the simulated board's reset (sim_board/harness.cpp) in epoch 2."""
    whole, whole_metrics = uninterrupted("sim")
    proc = subprocess.Popen(trainer("--target", "sim", *RUNS["sim"], "--checkpoint", str(tmp_path / "ck"),
                                    "--metrics", str(tmp_path / "m.json")),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "checkpoint at epoch 2, step 0" in line:
            for child in children(proc.pid):
                os.kill(child, signal.SIGUSR1)
            break
    out, err = proc.communicate(timeout=600)
    out = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "the device was reset" in out.replace("it was reset", "the device was reset") and "reloading" in out, out
    assert_same_final_state(whole, tmp_path / "ck")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["bit_exact"] is True and metrics["history"] == whole_metrics["history"]
    assert metrics["sim_board"]["resets"] == 1


# ------------------------------------------------------------------------- every kind of target, in process

def stop_after(monkeypatch, steps: int) -> None:
    """Make the run behave as if Ctrl-C came during its ``steps``-th step."""
    seen = {"steps": 0}
    original = Session._on_step

    def on_step(self, position):
        seen["steps"] += 1
        if seen["steps"] == steps:
            self.stop.requested = True
        original(self, position)
    monkeypatch.setattr(Session, "_on_step", on_step)


@pytest.mark.parametrize("args", [["--target", "fp32"], ["--target", "golden", "--arch", "cnn"],
                                  ["--target", "golden"]], ids=["fp32", "golden-cnn", "golden-mlp"])
def test_every_target_resumes_bit_identical(tmp_path, monkeypatch, capsys, args):
    run = [*args, "--epochs", "2", "--steps", "3", "--seed", "4", "--no-progress"]
    assert train.main([*run, "--checkpoint", str(tmp_path / "whole"), "--metrics", str(tmp_path / "w.json")]) == 0
    with monkeypatch.context() as patch:
        stop_after(patch, 4)                                     # epoch 2, step 1
        assert train.main([*run, "--checkpoint", str(tmp_path / "cut"), "--metrics", str(tmp_path / "c.json")]) \
            == train.EXIT_INTERRUPTED
    assert (load(tmp_path / "cut").position.epoch, load(tmp_path / "cut").position.step) == (2, 1)
    assert train.main(["--no-progress", "--resume", str(tmp_path / "cut"), "--metrics", str(tmp_path / "c.json")]) == 0
    assert_same_final_state(tmp_path / "whole", tmp_path / "cut")
    histories = [json.loads((tmp_path / name).read_text())["history"] for name in ("w.json", "c.json")]
    assert histories[0] == histories[1]


def test_an_fp32_checkpoint_does_not_resume_an_int8_run(tmp_path):
    assert train.main(["--no-progress", "--target", "fp32", "--epochs", "1", "--steps", "2", "--checkpoint",
                       str(tmp_path / "ck"), "--metrics", str(tmp_path / "m.json")]) == 0
    refused = refusal("--resume", str(tmp_path / "ck"), "--target", "golden", "--metrics", str(tmp_path / "n.json"))
    assert "belongs to another run: model 'fp32' (this command line: 'int8')" in refused
