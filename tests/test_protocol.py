"""Host link: CRC, frames, the reference device (protocol/link_model.py) and LinkClient over faulty links."""

import struct
import time

import numpy as np
import pytest

from golden_model import isa
from golden_model.config import get_config
from golden_model.machine import LossCounters, Machine
from golden_model.network import ResMLP, quantize_input
from golden_model.program import ProgramTrainer
from golden_model.quant import QTensor
from protocol.link_model import LinkDevice, LoopbackTransport
from host.client import ConfigMismatch, DeviceError, DeviceReset, LinkClient, LinkError
from protocol.wire import (REQUEST_OVERHEAD, RESPONSE_OVERHEAD, STATUS_PAYLOAD_BYTES, Cmd, FrameError, LinkStatus,
                           Progress, crc16, decode_request, decode_response, encode_request, encode_response,
                           parse_status)

CFG = get_config("default")


class ScriptedLoopback(LoopbackTransport):
    """Loopback with scripted faults: tx_faults[i] rewrites the i-th host write before the device sees it,
    rx_faults[i] rewrites the device's answer bytes produced by that write."""

    def __init__(self, device, tx_faults=None, rx_faults=None):
        super().__init__(device)
        self.tx_faults, self.rx_faults = dict(tx_faults or {}), dict(rx_faults or {})
        self.writes = 0

    def write(self, data: bytes) -> None:
        index, self.writes = self.writes, self.writes + 1
        data = self.tx_faults.get(index, lambda d: d)(bytes(data))
        out = self.device.feed(data)
        self.pending += self.rx_faults.get(index, lambda d: d)(out)


def flip(position, mask=0x10):
    def fault(data):
        data = bytearray(data)
        data[position % len(data)] ^= mask
        return bytes(data)
    return fault


def client_for(cfg=CFG, device=None, **kwargs):
    device = device or LinkDevice(cfg)
    transport = kwargs.pop("transport", None) or ScriptedLoopback(device, kwargs.pop("tx", None), kwargs.pop("rx", None))
    return LinkClient(transport, cfg, timeout=0.05, **kwargs), device, transport


def random_words(rng, n, lanes=CFG.lanes):
    return rng.integers(-128, 128, size=(n, lanes)).astype(np.int8)


# ---- CRC and frames ---------------------------------------------------------------------------

def test_crc_known_vector():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_frame_round_trips():
    rng = np.random.default_rng(1)
    for length in (0, 1, 17, 1024):
        payload = rng.integers(0, 256, length).astype(np.uint8).tobytes()
        frame = encode_request(Cmd.WRITE_TMEM, 77, payload)
        assert len(frame) == REQUEST_OVERHEAD + length and frame[0] == 0xA5
        assert decode_request(frame).payload == payload
        answer = encode_response(Cmd.READ_TMEM, 9, LinkStatus.OK, payload)
        assert len(answer) == RESPONSE_OVERHEAD + length and answer[0] == 0x5A
        r = decode_response(answer)
        assert (r.cmd, r.seq, r.status, r.payload) == (Cmd.READ_TMEM, 9, 0, payload)
    # byte-level layout of one request
    assert encode_request(Cmd.RUN, 5, b"\x03\x00")[:5] == bytes([0xA5, 0x07, 0x05, 0x02, 0x00])
    with pytest.raises(FrameError, match="CRC"):
        decode_request(flip(2)(encode_request(Cmd.PING, 1)))
    with pytest.raises(FrameError, match="header says"):
        decode_response(encode_response(Cmd.PING, 1, 0, b"abc")[:-1])


# ---- the reference device alone -------------------------------------------------------------

def test_device_skips_garbage_and_answers_each_frame():
    device = LinkDevice(CFG)
    ping = encode_request(Cmd.PING, 3)
    out = device.feed(b"\x00\x5a\xff" + ping + b"junk" + encode_request(Cmd.STATUS, 4))
    first = decode_response(out[:RESPONSE_OVERHEAD + 17])
    assert first.payload[:4] == b"EOQ1" and first.seq == 3
    st = decode_response(out[RESPONSE_OVERHEAD + 17:])
    assert parse_status(st.payload).busy is False and st.seq == 4


def test_device_bad_crc_commits_nothing_and_echoes_seq():
    device = LinkDevice(CFG)
    frame = encode_request(Cmd.WRITE_TMEM, 42, struct.pack("<H", 5) + bytes(range(1, 9)))
    out = device.feed(flip(9)(frame))                      # a payload byte corrupted
    r = decode_response(out)
    assert (r.status, r.seq, r.cmd) == (LinkStatus.BAD_CRC, 42, Cmd.WRITE_TMEM)
    assert not device.machine.tmem.any()
    assert decode_response(device.feed(frame)).status == LinkStatus.OK
    assert list(device.machine.tmem[5]) == list(range(1, 9))


def test_device_timeout_discards_frame():
    device = LinkDevice(CFG)
    frame = encode_request(Cmd.WRITE_TMEM, 8, struct.pack("<H", 0) + bytes([7] * 8))
    assert device.feed(frame[:-3]) == b""
    r = decode_response(device.stall())
    assert (r.status, r.seq, r.cmd) == (LinkStatus.TIMEOUT, 8, Cmd.WRITE_TMEM)
    assert not device.machine.tmem.any()
    assert device.stall() == b""                           # idle line: nothing to say


def test_device_oversize_length_is_drained():
    device = LinkDevice(CFG)
    big = encode_request(Cmd.WRITE_TMEM, 1, bytes(2 + CFG.max_payload + 8))
    r = decode_response(device.feed(big))
    assert r.status == LinkStatus.BAD_LENGTH
    assert decode_response(device.feed(encode_request(Cmd.PING, 2))).status == LinkStatus.OK


@pytest.mark.parametrize("cmd, payload, status", [
    (0x00, b"", LinkStatus.BAD_COMMAND),
    (0x99, b"", LinkStatus.BAD_COMMAND),
    (Cmd.PING, b"x", LinkStatus.BAD_LENGTH),
    (Cmd.WRITE_TMEM, b"\x00\x00" + bytes(7), LinkStatus.BAD_LENGTH),
    (Cmd.WRITE_TMEM, struct.pack("<H", CFG.tmem_words - 1) + bytes(16), LinkStatus.ADDR_RANGE),
    (Cmd.READ_TMEM, struct.pack("<HH", CFG.tmem_words - 2, 3), LinkStatus.ADDR_RANGE),
    (Cmd.READ_TMEM, struct.pack("<HH", 0, CFG.max_payload // CFG.lanes + 1), LinkStatus.BAD_LENGTH),
    (Cmd.WRITE_TENSOR, struct.pack("<BHHHh", CFG.tensor_slots, 0, 1, 1, 0), LinkStatus.ADDR_RANGE),
    (Cmd.READ_TENSOR, bytes([CFG.tensor_slots]), LinkStatus.ADDR_RANGE),
    (Cmd.WRITE_PROGRAM, struct.pack("<HQ", CFG.program_depth, 0), LinkStatus.ADDR_RANGE),
    (Cmd.WRITE_PROGRAM, struct.pack("<H", 0) + bytes(12), LinkStatus.BAD_LENGTH),
    (Cmd.RUN, struct.pack("<H", CFG.program_depth), LinkStatus.ADDR_RANGE),
    (Cmd.RUN, b"\x00", LinkStatus.BAD_LENGTH),
    (Cmd.WRITE_KEYS, bytes(7), LinkStatus.BAD_LENGTH),
    (Cmd.READ_COUNTERS, b"\x01", LinkStatus.BAD_LENGTH),
    (Cmd.CLEAR_COUNTERS, b"\x00", LinkStatus.BAD_LENGTH),
    (Cmd.WRITE_DATA, struct.pack("<H", CFG.data_words - 1) + bytes(16), LinkStatus.ADDR_RANGE),
    (Cmd.WRITE_DATA, b"\x00\x00" + bytes(9), LinkStatus.BAD_LENGTH),
    (Cmd.WRITE_LABELS, struct.pack("<H", CFG.data_samples) + bytes(1), LinkStatus.ADDR_RANGE),
    (Cmd.WRITE_CURSOR, bytes(9), LinkStatus.BAD_LENGTH),
    (Cmd.LOOP, struct.pack("<HIB", CFG.program_depth, 1, 1), LinkStatus.ADDR_RANGE),
    (Cmd.LOOP, struct.pack("<HIB", 0, 0, 1), LinkStatus.ADDR_RANGE),
    (Cmd.LOOP, struct.pack("<HIB", 0, 1, 2), LinkStatus.ADDR_RANGE),
    (Cmd.PROGRESS, b"\x00", LinkStatus.BAD_LENGTH),
])
def test_device_refusals(cmd, payload, status):
    device = LinkDevice(CFG)
    r = decode_response(device.feed(encode_request(cmd, 11, payload)))
    assert (r.cmd, r.seq, r.status, r.payload) == (cmd, 11, status, b"")
    assert not device.machine.tmem.any()


# ---- LinkClient over the reference device ---------------------------------------------------

def test_ping_checks_configuration():
    client, _, _ = client_for()
    assert client.ping()["lanes"] == CFG.lanes
    mismatch = LinkClient(LoopbackTransport(LinkDevice(get_config("small4x4"))), CFG, timeout=0.05)
    with pytest.raises(ConfigMismatch, match=r"bitstream built for lanes=4.*host configured for lanes=8.*"
                                             r"use --config small4x4"):
        mismatch.ping()
    board = LinkClient(LoopbackTransport(LinkDevice(get_config("ulx3s"))), CFG, timeout=0.05)
    with pytest.raises(ConfigMismatch, match=r"built for tmem_words=8192; .* use --config ulx3s"):
        board.ping()


def test_step_keys_are_written_over_the_link():
    client, device, _ = client_for()
    client.set_keys(0xDEADBEEF, 0xFFFF_FFFF)
    assert (device.machine.seed, device.machine.step) == (0xDEADBEEF, 0xFFFF_FFFF)
    with pytest.raises(ValueError, match="seed must be a 32-bit unsigned integer"):
        client.set_keys(1 << 32, 0)
    assert device.machine.seed == 0xDEADBEEF


def test_loss_counters_are_read_and_cleared_over_the_link():
    client, device, _ = client_for()
    device.machine.counters = LossCounters(samples=7, correct=3, loss_bits=2**40 + 5)
    assert client.read_counters() == LossCounters(7, 3, 2**40 + 5)
    assert client.read_counters() == LossCounters(7, 3, 2**40 + 5)      # reading changes nothing
    client.clear_counters()
    assert client.read_counters() == LossCounters() == device.machine.counters


def test_data_set_cursor_loop_and_progress_over_the_link():
    client, device, _ = client_for()
    rng = np.random.default_rng(8)
    words = rng.integers(-128, 128, (300, CFG.lanes))
    client.write_data(5, words)
    client.write_labels(2, np.arange(-3, 1500) % 10)
    assert np.array_equal(device.machine.data[5:305], words)
    assert np.array_equal(device.machine.labels[2:1505], (np.arange(-3, 1500) % 10).astype(np.int8))
    client.set_cursor(2**32 - 1, 7, 65535)
    client.set_keys(1, 2**32 - 2)
    assert client.progress() == Progress(2**32 - 2, 2**32 - 1, 7, 65535, 0)
    client.load_program([isa.load(0, 0, 8, shuffle=True).encode(), isa.halt().encode(), 15], 0)
    client.set_tensor(0, 0, 3, 5, 0)
    assert client.loop(0, 3, True) == 1                # the reference's cycles: the last pass's instructions
    assert client.progress() == Progress(1, 0, 8, 65535, 0)      # 9 rows: position 7, then a whole epoch
    with pytest.raises(DeviceError, match="ILLEGAL_INSTRUCTION at pc 2"):
        client.loop(2, 4, True)
    assert client.progress().passes == 4
    with pytest.raises(ValueError, match="cursor train must fit 16 bits"):
        client.set_cursor(0, 65536, 0)
    with pytest.raises(ValueError, match="passes must be in"):
        client.loop(0, 0, True)


def test_a_host_that_reconnects_mid_loop_reads_progress_then_weights():
    """Host A starts an epoch (LOOP) and goes away; host B connects: PING and STATUS and PROGRESS are
    served during the run, a second LOOP is refused with BUSY, and after the end B reads the weights."""
    device = LinkDevice(CFG, auto_complete=False)
    first, _, _ = client_for(device=device)
    first.load_program([isa.halt().encode()], 0)
    first.set_tensor(1, 0, 2, 3, -4)
    first.write_tmem(0, np.arange(16).reshape(2, 8))
    assert device.feed(encode_request(Cmd.LOOP, 9, struct.pack("<HIB", 0, 90, 1))) == b""
    second = LinkClient(LoopbackTransport(device), CFG, timeout=0.05)
    second.ping()
    assert second.status().busy and second.progress().passes == 90
    with pytest.raises(LinkError, match="LOOP refused with BUSY"):
        second.loop(0, 1, True)
    device.complete_run()
    second.forget_runs()
    assert not second.status().busy and second.progress() == Progress(90, 0, 0, 0, 0)
    assert np.array_equal(second.read_tensor(1).q, np.arange(16).reshape(2, 8)[:, :3])


def test_status_polls_of_a_long_loop_are_counted_apart():
    """A LOOP that outlasts the answer timeout: the client polls STATUS (24 bytes each) until the answer
    comes; those bytes are counted in poll_bytes (a board's epoch ends within the timeout)."""
    device = LinkDevice(CFG, auto_complete=False)

    class SlowCore(LoopbackTransport):
        quiet = 0

        def read(self, n, timeout):
            if device.running and not self.pending:
                self.quiet += 1
                if self.quiet == 3:
                    self.pending += device.complete_run()
            return super().read(n, timeout)

    client = LinkClient(SlowCore(device), CFG, timeout=0.01)
    client.load_program([isa.halt().encode()], 0)
    client.loop(0, 90, True)
    assert device.machine.step == 90
    assert client.stats.poll_bytes == 2 * (REQUEST_OVERHEAD + RESPONSE_OVERHEAD + STATUS_PAYLOAD_BYTES)


def test_lost_loop_answer_does_not_loop_twice():
    device = LinkDevice(CFG)
    client, _, transport = client_for(device=device)
    client.load_program([isa.halt().encode()], 0)
    client.set_keys(0, 10)
    client.status()
    transport.rx_faults[transport.writes] = lambda d: b""        # the LOOP answer is lost
    client.loop(0, 5, True)
    assert device.machine.step == 15


def test_tmem_round_trip_in_frames():
    rng = np.random.default_rng(2)
    client, device, _ = client_for()
    words = random_words(rng, 300)                        # 127 words per frame: three frames
    client.write_tmem(100, words)
    assert np.array_equal(device.machine.tmem[100:400], words)
    assert client.stats.frames == 3
    assert np.array_equal(client.read_tmem(100, 300), words)   # 128 words per frame
    assert client.stats.frames == 6 and client.stats.retries == 0


def test_tensors_in_padded_layout():
    rng = np.random.default_rng(3)
    client, device, _ = client_for()
    golden = Machine(CFG)
    for m in (golden, client):
        m.set_tensor(4, 10, 3, 11, 0)
    t = QTensor(rng.integers(-127, 128, size=(3, 11)).astype(np.int8), -5)
    golden.write_tensor(4, t)
    client.write_tensor(4, t)
    assert np.array_equal(device.machine.tmem, golden.tmem)
    back = client.read_tensor(4)
    assert back.exp == -5 and np.array_equal(back.q, t.q)
    with pytest.raises(ValueError, match="holds 3x11"):
        client.write_tensor(4, QTensor(np.zeros((2, 2), np.int8), 0))


def test_program_trainer_over_link_matches_machine():
    from golden_model.data import load_digits_split
    digits = load_digits_split()
    cfg = CFG
    reference = ProgramTrainer(Machine(cfg), ResMLP(cfg, 3, lr_shift=4), batch=16)
    client, device, _ = client_for(cfg)
    client.ping()
    trainer = ProgramTrainer(client, ResMLP(cfg, 3, lr_shift=4), batch=16)
    rng = np.random.default_rng(3)
    for step in range(3):
        idx = rng.choice(len(digits.train_y), 16 if step else 5, replace=False)
        x = quantize_input(digits.train_x[idx], cfg)
        assert reference.train_step(x, digits.train_y[idx]) == trainer.train_step(x, digits.train_y[idx])
    for name, param in trainer.params().items():
        assert np.array_equal(param.q, reference.params()[name].q) and param.exp == reference.params()[name].exp
    assert np.array_equal(device.machine.tmem, reference.device.tmem)
    print(f"3 training steps over the link: {client.stats}")


def test_corrupted_request_is_retried():
    rng = np.random.default_rng(4)
    client, device, _ = client_for(tx={0: flip(12), 1: flip(-1)})   # payload, then CRC byte corrupted
    words = random_words(rng, 4)
    client.write_tmem(0, words)
    assert np.array_equal(device.machine.tmem[:4], words) and client.stats.retries == 2


def test_corrupted_answer_is_retried():
    rng = np.random.default_rng(5)
    words = random_words(rng, 2)
    client, device, _ = client_for(rx={1: flip(10)})
    client.write_tmem(7, words)
    assert np.array_equal(client.read_tmem(7, 2), words)
    assert client.stats.corrupt == 1 and client.stats.retries == 1


def test_truncated_frame_times_out_and_is_resent():
    client, device, _ = client_for(tx={0: lambda d: d[:-4]})
    client.write_tmem(3, np.ones((1, 8), np.int8))
    assert (device.machine.tmem[3] == 1).all() and client.stats.retries == 1


def test_lost_answer_times_out_and_is_resent():
    client, _, _ = client_for(rx={0: lambda d: b""})
    assert client.ping()["tensor_slots"] == CFG.tensor_slots
    assert client.stats.retries == 1


def test_duplicated_frames_and_garbage():
    rng = np.random.default_rng(6)
    words = random_words(rng, 3)
    client, device, _ = client_for(tx={0: lambda d: d + d, 1: lambda d: b"\xa5\x13garbage\x5a" + d,
                                       2: lambda d: b"\x5a\x01" + d + b"\x00\xa5"})
    client.write_tmem(0, words)            # answered twice: the second answer is stale
    assert np.array_equal(client.read_tmem(0, 3), words)
    client.ping()
    assert client.stats.stale >= 1


def test_retries_are_bounded():
    client, _, _ = client_for(tx={i: flip(7) for i in range(10)})     # the address byte
    with pytest.raises(LinkError, match=r"WRITE_TMEM failed after 5 attempts: device answered BAD_CRC"):
        client.write_tmem(0, np.zeros((1, 8), np.int8))

    class Dead:
        def write(self, data):
            pass

        def read(self, n, timeout):
            return b""
    dead = LinkClient(Dead(), CFG, timeout=0.01, retries=2)
    with pytest.raises(LinkError, match=r"PING failed after 3 attempts: no answer within 0.04 s"):   # 0.01 s, doubled twice
        dead.ping()


def test_device_refusals_raise_link_errors():
    client, device, _ = client_for()
    with pytest.raises(LinkError, match="WRITE_TMEM refused with ADDR_RANGE") as info:
        client.write_tmem(CFG.tmem_words - 1, np.ones((2, 8), np.int8))
    assert info.value.status == LinkStatus.ADDR_RANGE and not device.machine.tmem.any()
    with pytest.raises(LinkError, match="BAD_LENGTH: payload length beyond max_payload"):
        client.request(Cmd.WRITE_TMEM, bytes(CFG.max_payload + 2))
    with pytest.raises(LinkError, match="ADDR_RANGE"):
        client.set_tensor(CFG.tensor_slots, 0, 1, 1, 0)
    with pytest.raises(LinkError, match="RUN refused with ADDR_RANGE"):
        client.run(CFG.program_depth)
    with pytest.raises(LinkError, match="BAD_COMMAND"):
        client.request(0x42)


def test_device_error_names_status_and_pc():
    client, _, _ = client_for()
    client.load_program([isa.halt().encode()] * 3 + [15], 0)
    assert client.run(0) == 0
    with pytest.raises(DeviceError, match=r"ILLEGAL_INSTRUCTION at pc 3 .*re-encode the program") as info:
        client.run(3)
    assert info.value.status == isa.Status.ILLEGAL_INSTRUCTION and info.value.pc == 3


def test_busy_and_repeated_run():
    device = LinkDevice(CFG, auto_complete=False)
    client, _, transport = client_for(device=device)
    client.load_program([isa.halt().encode()], 0)
    run = encode_request(Cmd.RUN, 200, b"\x00\x00")
    assert device.feed(run) == b""                      # the answer comes when the run ends
    assert device.feed(run) == b""                      # a repeated RUN of the active run is ignored
    st = client.status()
    assert st.busy and st.run_seq == 200
    with pytest.raises(LinkError, match="WRITE_TMEM refused with BUSY"):
        client.write_tmem(0, np.zeros((1, 8), np.int8))
    client.ping()                                       # allowed during a run
    answer = decode_response(device.complete_run())
    assert (answer.cmd, answer.seq, answer.status) == (Cmd.RUN, 200, LinkStatus.OK)
    assert decode_response(device.feed(run)) == answer  # repeated after the end: the same result, no new run
    assert not device.running


def test_lost_run_answer_does_not_run_twice():
    runs = []

    def cycles(start, end, code):
        runs.append(start)
        return 10 * (end - start) + 1
    device = LinkDevice(CFG, cycle_model=cycles)
    client, _, transport = client_for(device=device)
    client.load_program([isa.halt().encode()] * 2, 0)
    client.status()
    transport.rx_faults[transport.writes] = lambda d: b""        # the RUN answer is lost
    assert client.run(1) == 1
    assert runs == [1]
    transport.rx_faults[transport.writes] = flip(8)              # the next RUN answer is corrupted
    assert client.run(0) == 1
    assert runs == [1, 0]


def test_protocol_overhead_figures():
    """Measured bytes on the wire for bulk transfers (reported by the agent; asserted loosely)."""
    client, _, _ = client_for()
    words = np.zeros((CFG.tmem_words, CFG.lanes), np.int8)
    client.write_tmem(0, words)
    out, inp, frames = client.stats.bytes_out, client.stats.bytes_in, client.stats.frames
    payload = words.size
    efficiency = payload / (out + inp)
    print(f"write {payload} B TMEM: {frames} frames, {out} B out, {inp} B in, efficiency {efficiency:.4f}")
    assert efficiency > 0.97


# ---- faults that leave the device inside a frame, and resets ----------------------------------

class SlowFrameTimeout(ScriptedLoopback):
    """A device whose frame timeout is longer than the client's waits (the simulated board: 2**20
    cycles take seconds): a quiet read fires nothing, so a partial frame stays open."""

    def read(self, n, timeout):
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out


def test_truncated_request_is_flushed_before_the_resend():
    """Reproduces a failure of the client before _resync: half a WRITE_TMEM of 0xA5 bytes reached a
    device that waits for the rest; the resend completed that frame and its tail (0xA5 bytes) started
    a bogus frame 42405 bytes long that swallowed every later resend ('failed after 5 attempts')."""
    words = np.full((127, CFG.lanes), -91, np.int8)            # every byte 0xA5
    client, device, _ = client_for(transport=SlowFrameTimeout(LinkDevice(CFG), {0: lambda d: d[:len(d) // 2]}))
    device = client.transport.device
    client.write_tmem(0, words)
    assert np.array_equal(device.machine.tmem[:127], words)
    assert client.stats.resyncs == 1 and client.stats.flush_bytes == CFG.max_payload + REQUEST_OVERHEAD
    assert client.stats.retries == 1 and client.stats.resent_bytes == REQUEST_OVERHEAD + 2 + 127 * CFG.lanes


def test_a_corrupted_length_field_needs_the_long_flush():
    """A flipped high bit of the length field: the device waits for 32 KB more, past the first flush."""
    transport = SlowFrameTimeout(LinkDevice(CFG), {0: flip(4, 0x80)})
    client, _, _ = client_for(transport=transport)
    words = np.arange(3 * CFG.lanes, dtype=np.int8).reshape(3, CFG.lanes)
    client.write_tmem(5, words)
    assert np.array_equal(transport.device.machine.tmem[5:8], words)
    assert client.stats.resyncs == 2
    assert client.stats.flush_bytes == CFG.max_payload + 0xFFFF + 2 * REQUEST_OVERHEAD


def test_reset_between_runs_is_detected():
    client, device, _ = client_for()
    client.load_program([isa.halt().encode()], 0)
    client.run(0)
    client.run(0)
    device.reset()                                    # run_seq back to 0; memories kept
    with pytest.raises(DeviceReset, match=r"reports run_seq 0 where the host's last RUN had seq \d+: it was reset"):
        client.run(0)


def test_reset_during_a_run_is_not_mistaken_for_a_lost_run():
    """A RUN whose answer never comes because the device was reset mid-run: STATUS shows run_seq 0,
    neither this run nor the one before, so the client raises instead of running the program again."""
    runs = []
    device = LinkDevice(CFG, cycle_model=lambda start, end, code: runs.append(start) or 1)
    client, _, transport = client_for(device=device)
    client.load_program([isa.halt().encode()] * 2, 0)
    client.run(0)
    device.auto_complete = False
    transport.rx_faults[transport.writes + 1] = lambda d: (device.reset(), d)[1]   # reset as the RUN arrives
    with pytest.raises(DeviceReset, match="went unanswered and the device now reports run_seq 0"):
        client.run(1)
    assert runs == [0]


def test_a_run_state_check_passes_on_an_untouched_device():
    client, device, _ = client_for()
    client.load_program([isa.halt().encode()], 0)
    assert client.check_run_state().run_seq == 0      # no RUN yet: nothing to compare
    client.run(0)
    assert client.check_run_state().run_seq == device.run_seq != 0


class SlowDevice(ScriptedLoopback):
    """A device that takes ``per_byte`` seconds for every byte it receives (the simulated board on a loaded
    machine: some microseconds a byte), so an answer comes only once the bytes before it are consumed."""

    def __init__(self, device, rx_faults, per_byte):
        super().__init__(device, rx_faults=rx_faults)
        self.per_byte, self.busy_until, self.queue = per_byte, 0.0, []

    def write(self, data):
        index, self.writes = self.writes, self.writes + 1
        self.busy_until = max(time.monotonic(), self.busy_until) + len(data) * self.per_byte
        out = self.rx_faults.get(index, lambda d: d)(self.device.feed(bytes(data)))
        if out:
            self.queue.append((self.busy_until, out))

    def read(self, n, timeout):
        deadline = time.monotonic() + timeout
        while not (self.queue and self.queue[0][0] <= time.monotonic()):
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.001)
        return self.queue.pop(0)[1]


def test_waits_grow_after_each_silence():
    """Reproduces a failure of the sim target under load: two lost answers, then the long flush (65 KB)
    takes the device longer to consume than the answer timeout, so every resend's answer came too late
    and every silence sent another long flush ('failed after 5 attempts: no answer')."""
    lost = {0: lambda d: b"", 2: lambda d: b""}               # the answers to the first two attempts
    transport = SlowDevice(LinkDevice(CFG), lost, per_byte=3e-6)   # the long flush takes 0.2 s
    client, _, _ = client_for(transport=transport)             # answer timeout 50 ms
    assert client.ping()["lanes"] == CFG.lanes
    assert client.stats.retries == 2 and client.stats.resyncs == 2
