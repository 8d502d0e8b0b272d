"""host/device.py: the Device API over golden, serial (a pseudo-terminal pair with the reference
device host/link_model.py on the master side, faults injected by that peer) and the simulated
board (sim_board/), plus eoq-train on device targets.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import tty
from pathlib import Path

import numpy as np
import pytest

from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.network import ResMLP, quantize_input
from golden_model.program import PARAMS, ProgramTrainer
from host.device import (DeviceNotFound, GoldenDevice, SerialDevice, open_device, parse_harness_stats,
                         parse_serial_target)
from protocol.link_model import LinkDevice
from host.client import ConfigMismatch, LinkError

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config("default")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def batches_of(digits, count, batch=16):
    for i in range(count):
        sl = slice(i * batch, (i + 1) * batch)
        yield quantize_input(digits.train_x[sl], CFG), digits.train_y[sl]


def train_and_compare(device, digits, steps=3, seed=0):
    """A few ProgramTrainer steps on ``device`` and ResMLP alongside: weights must agree."""
    golden = ResMLP(CFG, seed, 4)
    trainer = ProgramTrainer(device, golden, 16)
    for x, labels in batches_of(digits, steps):
        loss = trainer.train_step(x, labels)
        assert loss == golden.train_step(x, labels)
        assert np.array_equal(trainer.last_logits, golden.last_logits)
    params = trainer.params()
    for name in PARAMS:
        assert params[name].exp == golden.params[name].exp, name
        assert np.array_equal(np.reshape(params[name].q, np.shape(golden.params[name].q)), golden.params[name].q), name
    return trainer


# ------------------------------------------------------------------------------------------ golden

def test_golden_device_trains_like_resmlp(digits):
    device = open_device("golden", CFG)
    assert isinstance(device, GoldenDevice)
    train_and_compare(device, digits, steps=4)
    stats = device.stats
    assert stats.runs == 8 and stats.cycles == 0 and stats.bytes_in == stats.bytes_out == 0


def test_open_device_rejects_unknown_target():
    with pytest.raises(ValueError, match="unknown device target 'tpu'"):
        open_device("tpu", CFG)


@pytest.mark.parametrize("target, port, baud", [
    ("serial:/dev/ttyUSB0", "/dev/ttyUSB0", 3_000_000),
    ("serial:/dev/ttyUSB1@115200", "/dev/ttyUSB1", 115200),
])
def test_parse_serial_target(target, port, baud):
    assert parse_serial_target(target) == (port, baud)


@pytest.mark.parametrize("target, message", [("serial:", "needs a port"), ("serial:/dev/x@fast", "bad baud")])
def test_parse_serial_target_errors(target, message):
    with pytest.raises(ValueError, match=message):
        parse_serial_target(target)


def test_missing_serial_port_says_no_board():
    with pytest.raises(DeviceNotFound, match="no board found on /dev/ttyEOQ-missing"):
        open_device("serial:/dev/ttyEOQ-missing", CFG)


def test_parse_harness_stats():
    text = "noise\nsim_board: cycles 100 wall_seconds 0.500 cycles_per_second 200 bytes_in 3\n"
    assert parse_harness_stats(text) == {"cycles": 100, "wall_seconds": 0.5, "cycles_per_second": 200,
                                         "bytes_in": 3}


# ------------------------------------------------------------------------------ serial over a pty

class FaultyPeer:
    """The reference device on the master side of a pty, injecting faults.

    ``faults`` maps a chunk index (counting the chunks read from the host) to one of
    corrupt_request, truncate_request, duplicate_request, corrupt_answer, truncate_answer,
    duplicate_answer, drop_answer; ``every`` > 0 repeats ``cycle`` of faults on every
    ``every``-th chunk instead.  A line quiet for ``idle`` seconds mid-frame is the
    device's frame timeout (TIMEOUT answer).
    """

    KINDS = ("corrupt_request", "truncate_request", "duplicate_request", "corrupt_answer", "truncate_answer",
             "duplicate_answer", "drop_answer")

    def __init__(self, cfg=CFG, faults=None, every=0, cycle=KINDS, idle=0.05, always=None):
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave                     # kept open so the master never sees EOF/EIO early
        self.device = LinkDevice(cfg)
        self.faults, self.every, self.cycle, self.idle, self.always = dict(faults or {}), every, cycle, idle, always
        self.injected = {kind: 0 for kind in self.KINDS}
        self.chunks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _fault(self) -> str | None:
        index = self.chunks
        self.chunks += 1
        if self.always:
            return self.always
        if self.every:
            return self.cycle[(index // self.every) % len(self.cycle)] if index % self.every == self.every - 1 \
                else None
        return self.faults.get(index)

    def _write(self, data: bytes) -> None:
        if data:
            os.write(self.master, data)

    def _serve(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], self.idle)
            if not ready:
                self._write(self.device.stall())
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            fault = self._fault()
            if fault:
                self.injected[fault] += 1
            if fault == "corrupt_request":
                data = bytearray(data)
                data[len(data) // 2] ^= 0x10
                data = bytes(data)
            elif fault == "truncate_request":
                data = data[:max(1, len(data) // 2)]
            elif fault == "duplicate_request":
                data = data + data
            out = self.device.feed(data)
            if fault == "corrupt_answer" and out:
                out = bytearray(out)
                out[len(out) - 3] ^= 0x01
                out = bytes(out)
            elif fault == "truncate_answer":
                out = out[:len(out) // 2]
            elif fault == "duplicate_answer":
                out = out + out
            elif fault == "drop_answer":
                out = b""
            self._write(out)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        os.close(self._slave)
        os.close(self.master)


@pytest.fixture
def peer_factory():
    peers = []

    def make(**kwargs):
        peer = FaultyPeer(**kwargs)
        peers.append(peer)
        return peer
    yield make
    for peer in peers:
        peer.close()


def test_serial_pty_clean_training(peer_factory, digits):
    peer = peer_factory()
    device = open_device(f"serial:{peer.path}@115200", CFG, timeout=0.5)
    try:
        assert isinstance(device, SerialDevice)
        assert device.info["lanes"] == CFG.lanes
        train_and_compare(device, digits, steps=2)
        stats = device.stats
        assert stats.retries == 0 and stats.runs == 4
        assert stats.bytes_out > 16 * 64 * 2 and stats.bytes_in > 0
    finally:
        device.close()


def test_serial_pty_faults_are_retried(peer_factory, digits):
    """Every kind of fault, injected on every 5th chunk: training stays bit-exact, retries counted."""
    peer = peer_factory(every=5)
    device = open_device(f"serial:{peer.path}", CFG, timeout=0.25)
    try:
        train_and_compare(device, digits, steps=3)
        client = device.client.stats
        assert all(count > 0 for count in peer.injected.values()), peer.injected
        assert device.stats.retries > 0
        assert client.corrupt > 0 and client.stale > 0, client
    finally:
        device.close()


@pytest.mark.parametrize("kind", ["corrupt_answer", "corrupt_request", "drop_answer", "truncate_answer"])
def test_serial_pty_persistent_fault_raises(peer_factory, kind):
    """A line that always fails raises LinkError; nothing is silently accepted."""
    peer = peer_factory()
    device = open_device(f"serial:{peer.path}", CFG, timeout=0.2)
    try:
        peer.always = kind
        words = np.arange(2 * CFG.lanes, dtype=np.int8).reshape(2, CFG.lanes)
        with pytest.raises(LinkError, match="failed after 5 attempts"):
            device.client.write_tmem(0, words)
        peer.always = None
        device.client.drain_timeout = 0.3
        device.client._drain()
        # with a clean line again the data is what was written (retries do not half-write)
        device.client.write_tmem(0, words)
        assert np.array_equal(device.client.read_tmem(0, 2), words)
    finally:
        device.close()


def test_serial_pty_config_mismatch(peer_factory):
    peer = peer_factory(cfg=get_config("small4x4"))
    with pytest.raises(ConfigMismatch, match="bitstream built for lanes=4"):
        SerialDevice(CFG, peer.path, timeout=0.5)


def test_serial_silent_port_says_no_board(peer_factory):
    """A port where nothing answers PING: no board found."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(DeviceNotFound, match="no board found on"):
            SerialDevice(CFG, os.ttyname(slave), timeout=0.05, retries=1)
    finally:
        os.close(slave)
        os.close(master)


# ------------------------------------------------------------------------------ simulated board

def test_sim_board_ping_and_training_bit_exact(sim_exe, digits):
    device = open_device("sim", CFG, exe=sim_exe)
    try:
        assert device.info["array_rows"] == CFG.array_rows
        train_and_compare(device, digits, steps=3)
        stats = device.stats
        assert stats.cycles > 0 and stats.runs == 6 and stats.retries == 0
    finally:
        device.close()
    hs = device.harness_stats
    assert hs["cycles"] > stats.cycles and hs["cycles_per_second"] > 0


def test_sim_board_config_mismatch(sim_exe):
    from host.device import SimDevice
    with pytest.raises(ConfigMismatch, match="rebuild the bitstream"):
        SimDevice(get_config("small4x4"), exe=sim_exe)


def test_sim_board_exits_on_eof(sim_exe):
    proc = subprocess.run([str(sim_exe), "--stats"], input=b"", capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b""
    assert "cycles" in parse_harness_stats(proc.stderr.decode())


# ---------------------------------------------------------------------------------------- CLI

def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "host.train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("target, arch, options", [("golden", "mlp", ()), ("sim", "mlp", ("--host-loop",)),
                                                   ("golden", "cnn", ()), ("sim", "cnn", ())])
def test_cli_device_targets(tmp_path, target, arch, options, request):
    if target == "sim":
        request.getfixturevalue("sim_exe")
    metrics = tmp_path / "m.json"
    proc = run_cli("--target", target, "--arch", arch, "--epochs", "1", "--steps", "4", "--metrics", str(metrics),
                   "--no-progress", *options)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data == {k: v for k, v in json.loads(metrics.read_text()).items() if k != "history"}
    assert data["target"] == target and data["arch"] == arch and data["mode"] == "host-loop"
    assert data["bit_exact"] is True and data["steps"] == 4
    for key in ("device_cycles", "host_link_bytes", "test_accuracy", "train_accuracy", "final_loss"):
        assert key in data, key
    if target == "sim":
        assert data["device_cycles"]["per_step"] > 0 and data["host_link_bytes"]["per_step_out"] > 1024
        assert data["sim_board"]["cycles_per_second"] > 0
    else:
        assert data["device_cycles"]["total"] == 0 and data["host_link_bytes"]["out"] == 0


def test_cli_sim_mlp_trains_autonomously_by_default(tmp_path, sim_exe):
    """The MLP on sim: the data resident on the core, a LOOP per epoch; bit-exact with the golden machine."""
    metrics = tmp_path / "a.json"
    proc = run_cli("--target", "sim", "--epochs", "2", "--steps", "5", "--metrics", str(metrics), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["mode"] == "autonomous" and data["loss"] == "int" and data["bit_exact"] is True
    assert data["steps"] == 10 and len(json.loads(metrics.read_text())["history"]) == 2
    # a training epoch's LOOP, its counters and their clearing, whatever the number of steps (5 here)
    assert data["device_cycles"]["per_step"] > 0 and 0 < data["host_link_bytes"]["per_step"] * 5 < 300
    assert data["host_link_bytes"]["upload"] > 1797 * 64


@pytest.mark.parametrize("args, message", [
    (("--autonomous", "--arch", "cnn"), "--autonomous trains the MLP on a device target"),
    (("--autonomous", "--target", "fp32"), "--autonomous trains the MLP on a device target"),
    (("--autonomous", "--checkpoint", "x"), "--autonomous does not take --checkpoint"),
    (("--autonomous", "--loss", "float"), "--autonomous does not take --loss float"),
    (("--autonomous", "--host-loop"), "not allowed with argument"),
])
def test_cli_autonomous_refusals(tmp_path, args, message):
    proc = run_cli(*args, "--epochs", "1", "--metrics", str(tmp_path / "m.json"), "--no-progress", timeout=120)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr


def test_host_loop_options_fall_back_to_the_host_loop(tmp_path):
    """--link-faults on the MLP: the host loop, said on the console."""
    from host.train import choose_mode, parse_args
    args = parse_args(["--link-faults", "0.1", "--target", "serial:/dev/null"])
    assert choose_mode(args, {"arch": "mlp", "target": "serial:/dev/null"}) == "host-loop"
    args = parse_args(["--target", "serial:/dev/null"])
    assert choose_mode(args, {"arch": "mlp", "target": "serial:/dev/null"}) == "autonomous"
    assert choose_mode(args, {"arch": "cnn", "target": "serial:/dev/null"}) == "host-loop"
    assert choose_mode(parse_args(["--autonomous"]), {"arch": "mlp", "target": "golden"}) == "autonomous"


def test_cli_missing_serial_port(tmp_path):
    proc = run_cli("--target", "serial:/dev/ttyEOQ-missing", "--epochs", "1", "--metrics", str(tmp_path / "m.json"),
                   "--no-progress", timeout=120)
    assert proc.returncode != 0 and "no board found on /dev/ttyEOQ-missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bit_exact_failure_is_loud(tmp_path, monkeypatch, capsys):
    """A device whose weights drift from the golden model's: exit code 1 naming the first differing tensor."""
    import host.train as train
    from golden_model.program import MlpLayout

    class DriftingDevice(GoldenDevice):
        def _run(self, pc):
            cycles = super()._run(pc)
            if pc != 0 and self._runs == 5:         # after the third backward run
                base = self.machine.table[MlpLayout(CFG, 16, ResMLP(CFG, 0, 4).sizes).slot("fc3")].base
                self.machine.tmem[base, 3] ^= 1
            return cycles

    monkeypatch.setattr(train, "open_device", lambda target, cfg: DriftingDevice(cfg))
    metrics = tmp_path / "m.json"
    code = train.main(["--target", "golden", "--epochs", "1", "--steps", "5", "--metrics", str(metrics),
                       "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "BIT-EXACT CHECK FAILED" in captured.err and "fc3:" in captured.err
    assert json.loads(metrics.read_text())["bit_exact"] is False
