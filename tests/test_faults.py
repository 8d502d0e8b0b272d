"""host/faults.py: the per-frame fault injector, and training over faulty links (loopback, pty peer,
simulated board): retries make a run slower, never different."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.network import ResMLP, quantize_input
from golden_model.program import PARAMS, ProgramTrainer
from host.client import LinkClient
from host.device import open_device
from host.faults import DIRECTIONS, FAULT_KINDS, FaultyTransport
from protocol.link_model import LinkDevice, LoopbackTransport, PtyPeer
from protocol.wire import Cmd, encode_request, encode_response

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config("default")


class Recorder:
    """A transport that records writes and plays back scripted answer bytes."""

    def __init__(self, answers=b""):
        self.written, self.answers = [], bytearray(answers)

    def write(self, data):
        self.written.append(bytes(data))

    def read(self, n, timeout):
        out = bytes(self.answers[:n])
        del self.answers[:n]
        return out


def read_all(transport, timeout=0.05) -> bytes:
    out = b""
    while True:
        data = transport.read(4096, timeout)
        if not data:
            return out
        out += data


FRAME = encode_request(Cmd.WRITE_TMEM, 9, bytes(range(2 + 16)))
ANSWER = encode_response(Cmd.READ_TMEM, 9, 0, bytes(range(40)))


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_kind_on_a_request(kind):
    inner = Recorder()
    faulty = FaultyTransport(inner, rate=1.0, kinds=(kind,), seed=3, stall=0.01)
    start = time.monotonic()
    faulty.write(FRAME)
    sent = b"".join(inner.written)
    if kind == "flip":
        assert len(sent) == len(FRAME) and bin(int.from_bytes(bytes(a ^ b for a, b in zip(sent, FRAME)), "big")).count("1") == 1
    elif kind == "drop":
        assert sent == b""
    elif kind == "duplicate":
        assert sent == FRAME + FRAME
    elif kind == "truncate":
        assert len(sent) < len(FRAME) and FRAME.startswith(sent)
    else:
        assert sent == FRAME and len(inner.written) == 2 and time.monotonic() - start >= 0.01
    assert faulty.counts.injected["tx"][kind] == 1 and faulty.counts.total == 1


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_kind_on_an_answer(kind):
    """Answers are cut out of the stream by their header: a fault hits one whole answer."""
    faulty = FaultyTransport(Recorder(b"\x00\x01" + ANSWER + ANSWER), rate=1.0, kinds=(kind,), seed=4, stall=0.01)
    got = read_all(faulty)
    assert got.startswith(b"\x00\x01")              # bytes before a sync byte pass as they are
    body = got[2:]
    if kind == "flip":
        assert len(body) == 2 * len(ANSWER) and body != ANSWER + ANSWER
    elif kind == "drop":
        assert body == b""
    elif kind == "duplicate":
        assert body == ANSWER * 4
    elif kind == "truncate":
        assert len(body) < 2 * len(ANSWER)
    else:
        assert body == ANSWER + ANSWER
    assert faulty.counts.frames["rx"] == 2 and faulty.counts.injected["rx"][kind] == 2


def test_no_faults_at_rate_zero_and_seeded_draws():
    clean = FaultyTransport(Recorder(ANSWER * 3), rate=0.0)
    clean.write(FRAME)
    assert read_all(clean) == ANSWER * 3 and clean.counts.total == 0 and clean.counts.frames == {"tx": 1, "rx": 3}
    draws = []
    for _ in range(2):
        inner = Recorder()
        faulty = FaultyTransport(inner, rate=0.3, seed=11)
        for i in range(200):
            faulty.write(encode_request(Cmd.PING, i % 255 + 1))
        draws.append((inner.written, faulty.counts.to_dict()))
    assert draws[0] == draws[1] and 30 < draws[0][1]["total"] < 90      # 200 frames at 0.3


def test_directions_and_bad_rates():
    faulty = FaultyTransport(Recorder(ANSWER), rate=1.0, directions=("tx",))
    assert read_all(faulty) == ANSWER
    for rate in (-0.1, 1.5):
        with pytest.raises(ValueError, match="probability per frame"):
            FaultyTransport(Recorder(), rate=rate)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultyTransport(Recorder(), rate=0.1, kinds=("melt",))
    assert DIRECTIONS == ("tx", "rx")


def train_over(device, steps: int, seed: int = 0):
    """ProgramTrainer on ``device`` and ResMLP alongside: every loss equal, weights bit-identical."""
    digits = load_digits_split()
    golden = ResMLP(CFG, seed, 4)
    trainer = ProgramTrainer(device, golden, 16)
    for i in range(steps):
        rows = slice(16 * i, 16 * i + 16)
        x = quantize_input(digits.train_x[rows], CFG)
        assert trainer.train_step(x, digits.train_y[rows]) == golden.train_step(x, digits.train_y[rows])
    params = trainer.params()
    for name in PARAMS:
        assert params[name].exp == golden.params[name].exp
        assert np.array_equal(np.reshape(params[name].q, np.shape(golden.params[name].q)), golden.params[name].q)


def test_training_over_a_faulty_loopback_stays_bit_exact():
    faulty = FaultyTransport(LoopbackTransport(LinkDevice(CFG)), rate=0.1, seed=5, stall=0.005)
    client = LinkClient(faulty, CFG, timeout=0.02, retries=8)
    client.ping()
    train_over(client, steps=6)
    injected = faulty.counts.injected
    assert all(sum(injected[d][k] for d in DIRECTIONS) > 0 for k in FAULT_KINDS), injected
    assert client.stats.retries > 0 and client.stats.resent_bytes > 0


def test_training_over_a_faulty_serial_line_stays_bit_exact():
    peer = PtyPeer(LinkDevice(CFG))
    try:
        device = open_device(f"serial:{peer.path}", CFG, link_faults=0.1, fault_seed=2, timeout=0.2, retries=8)
        try:
            train_over(device, steps=4)
            assert device.faults.counts.total > 0 and device.stats.retries > 0
        finally:
            device.close()
    finally:
        peer.close()


def test_make_train_with_link_faults_on_the_simulated_board(tmp_path, sim_exe):
    """eoq-train --link-faults on sim: bit-exact, and the metrics count faults, retries and resent bytes."""
    metrics = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "host.train", "--target", "sim", "--epochs", "1", "--steps", "6",
                           "--link-faults", "0.05", "--no-progress", "--metrics", str(metrics)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(metrics.read_text())
    assert data["bit_exact"] is True and data["link_faults"]["per"] == "frame"
    assert data["link_faults"]["total"] > 0 and data["host_link_bytes"]["retries"] > 0
    assert data["host_link_bytes"]["resent_bytes"] > 0
