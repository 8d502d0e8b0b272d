"""cocotb bench of hw.host_link.HostLink: request bytes in on rx, answers on tx byte-exact against
host/link_model.LinkDevice; cocotb plays the core (a golden Machine behind the core control ports).

Every exchange feeds the same bytes to the DUT and to the reference device and compares the
answer bytes; afterwards the core model's TMEM, tensor table and program equal the reference's.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import cocotb
import numpy as np
from cocotb.triggers import Event, FallingEdge, ReadOnly, Timer
from cocotb.utils import get_sim_time
from amaranth import signed

from golden_model import isa
from golden_model.isa import Status
from golden_model.machine import LossCounters, Machine, TensorEntry
from protocol.link_model import LinkDevice, run_machine
from protocol.wire import Cmd, LinkStatus, decode_response, encode_request, pc_mask
from hw.interfaces import (counters_layout, cursor_layout, progress_layout, status_layout, table_entry_layout,
                           tmem_word_layout)
from sim_tests.units import bench_timeout_cycles
from sim_tests.common import CLOCK_NS, StreamSink, StreamSource, decode, encode, read_unsigned, settings, start


def cycle_model(start_pc: int, end_pc: int, code: int) -> int:
    """Cycle count both the core model and the reference report (any deterministic function will do)."""
    return 1000 * (end_pc - start_pc) + 17 + code


class CoreModel:
    """The core as the link sees it: reacts to the control ports once per cycle.

    Outputs of the DUT are sampled in the settled phase before each rising edge; effects
    (writes, read data, run start -> busy) are applied at the next falling edge, which gives
    the synchronous TMEM read and the registered busy of the real core."""

    def __init__(self, dut, cfg, busy_cycles: int = 400):
        self.dut, self.cfg = dut, cfg
        self.machine = Machine(cfg)
        self.tword = tmem_word_layout(cfg)
        self.entry = table_entry_layout(cfg)
        self.status_layout = status_layout(cfg)
        self.busy_cycles = busy_cycles
        self.busy_left = 0
        self.status = {"busy": 0, "code": 0, "pc": 0, "cycles": 0}
        self.result = None
        self.runs = 0
        self.paused = False
        self.resume = Event()
        self.drive_status()
        dut.core__tmem_r__data.value = 0
        dut.core__table_r.value = 0
        self.counters_layout = counters_layout()
        self.drive_counters()
        self.drive_progress()

    def drive_counters(self):
        self.dut.core__counters.value = encode(self.counters_layout, vars(self.machine.counters))

    def drive_progress(self, passes: int | None = None, step: int | None = None, cursor=None):
        """The progress port: the machine's, or while a run is busy the state it started from."""
        m = self.machine
        cursor = cursor or m.cursor
        self.dut.core__progress.value = encode(progress_layout(), {
            "step": m.step if step is None else step, "passes": m.passes if passes is None else passes,
            "cursor": {"epoch": cursor.epoch, "train": cursor.train, "eval": cursor.eval}})

    def drive_status(self):
        self.dut.core__status.value = encode(self.status_layout, self.status)

    def pause(self):
        self.paused = True
        self.resume.clear()

    def unpause(self):
        self.paused = False
        self.resume.set()

    async def run(self):
        dut, cfg = self.dut, self.cfg
        events = {}
        await FallingEdge(dut.clk)
        while True:
            self.apply(events)
            slot = read_unsigned(dut.core__table_r_slot)
            e = self.machine.table[slot] if slot < cfg.tensor_slots else TensorEntry()
            dut.core__table_r.value = encode(self.entry, {"base": e.base, "rows": e.rows, "cols": e.cols,
                                                          "exp": e.exp})
            if self.busy_left:
                self.busy_left -= 1
                if not self.busy_left:
                    code, pc, cycles = self.result
                    self.status = {"busy": 0, "code": code, "pc": pc, "cycles": cycles}
                    self.drive_progress()
                self.drive_status()
            await ReadOnly()
            events = self.sample()
            await FallingEdge(dut.clk)
            if self.paused:
                await self.resume.wait()
                await FallingEdge(dut.clk)

    def sample(self):
        dut = self.dut
        ev = {}
        if read_unsigned(dut.core__tmem_r__en):
            ev["read"] = read_unsigned(dut.core__tmem_r__addr)
        if read_unsigned(dut.core__tmem_w__en):
            ev["write"] = (read_unsigned(dut.core__tmem_w__addr), decode(self.tword, read_unsigned(dut.core__tmem_w__data)))
        if read_unsigned(dut.core__table_w__en):
            ev["table"] = (read_unsigned(dut.core__table_w__slot), decode(self.entry, read_unsigned(dut.core__table_w__entry)))
        if read_unsigned(dut.core__prog_w__en):
            ev["prog"] = (read_unsigned(dut.core__prog_w__addr), read_unsigned(dut.core__prog_w__data))
        if read_unsigned(dut.core__keys_w__en):
            ev["keys"] = (read_unsigned(dut.core__keys_w__seed), read_unsigned(dut.core__keys_w__step))
        if read_unsigned(dut.core__counters_clear):
            ev["clear"] = True
        if read_unsigned(dut.core__data_w__en):
            ev["data"] = (read_unsigned(dut.core__data_w__addr),
                          decode(self.tword, read_unsigned(dut.core__data_w__data)))
        if read_unsigned(dut.core__labels_w__en):
            ev["label"] = (read_unsigned(dut.core__labels_w__addr),
                           decode(signed(8), read_unsigned(dut.core__labels_w__data)))
        if read_unsigned(dut.core__cursor_w__en):
            ev["cursor"] = decode(cursor_layout(), read_unsigned(dut.core__cursor_w__value))
        if read_unsigned(dut.core__run__start):
            ev["run"] = (read_unsigned(dut.core__run__pc), read_unsigned(dut.core__run__passes),
                         read_unsigned(dut.core__run__advance))
        return ev

    def apply(self, ev):
        m, cfg = self.machine, self.cfg
        assert not (self.status["busy"] and set(ev) & {"write", "table", "prog", "keys", "clear", "run", "read",
                                                       "data", "label", "cursor"}), f"core port used during a run: {ev}"
        if "read" in ev:
            self.dut.core__tmem_r__data.value = encode(self.tword, [int(v) for v in m.tmem[ev["read"]]])
        if "write" in ev:
            addr, lanes = ev["write"]
            m.tmem[addr] = np.array(lanes, dtype=np.int8)
        if "table" in ev:
            slot, f = ev["table"]
            m.table[slot] = TensorEntry(f["base"], f["rows"], f["cols"], f["exp"])
        if "prog" in ev:
            addr, word = ev["prog"]
            m.program[addr] = word
        if "keys" in ev:
            m.set_keys(*ev["keys"])
        if "clear" in ev:
            m.clear_counters()
            self.drive_counters()
        if "data" in ev:
            m.write_data(ev["data"][0], [ev["data"][1]])
        if "label" in ev:
            m.write_labels(ev["label"][0], [ev["label"][1]])
        if "cursor" in ev:
            m.set_cursor(**ev["cursor"])
        if {"keys", "cursor"} & set(ev):
            self.drive_progress()
        if "run" in ev:
            pc, passes, advance = ev["run"]
            self.drive_progress(passes, m.step, replace(m.cursor))
            code, end_pc = run_machine(m, pc, passes, bool(advance))
            self.result = (code, end_pc & pc_mask(cfg), cycle_model(pc, end_pc, code) & 0xFFFFFFFF)
            self.status = {"busy": 1, "code": 0, "pc": pc, "cycles": 0}
            self.busy_left = self.busy_cycles
            self.runs += 1
            # the first busy cycle is the one after the start edge: drive right now (this falling edge)
            self.drive_status()


class Bench:
    def __init__(self, dut, s, gap=0.0, stall=0.0, busy_cycles=400, auto_complete=True):
        self.dut, self.s, self.cfg = dut, s, s.cfg
        self.core = CoreModel(dut, s.cfg, busy_cycles)
        self.ref = LinkDevice(s.cfg, cycle_model=cycle_model, auto_complete=auto_complete)
        self.src = StreamSource(dut, "rx", 8, s.rng, gap=gap)
        self.sink = StreamSink(dut, "tx", 8, s.rng, stall=stall)
        self.seq = 0
        self.bytes_in = self.bytes_out = 0

    async def start(self):
        await start(self.dut)
        cocotb.start_soon(self.core.run())

    def next_seq(self):
        self.seq = self.seq % 255 + 1
        return self.seq

    async def receive(self, n: int) -> bytes:
        return bytes(await self.sink.receive(count=n)) if n else b""

    async def quiet(self, cycles: int = 30):
        """No answer byte appears for ``cycles`` cycles (tx.ready held high)."""
        self.sink.ready.value = 1
        for _ in range(cycles):
            await ReadOnly()
            assert not read_unsigned(self.dut.tx__valid), "unexpected answer byte"
            await FallingEdge(self.dut.clk)
        self.sink.ready.value = 0

    async def exchange(self, data: bytes, what: str = "") -> bytes:
        """Send ``data``; the DUT's answer bytes must equal the reference device's."""
        expected = self.ref.feed(data)
        receiver = cocotb.start_soon(self.receive(len(expected)))
        await self.src.send(list(data))
        got = await receiver
        self.bytes_out += len(data)
        self.bytes_in += len(got)
        assert got == expected, f"{what}: DUT answered {got.hex()} expected {expected.hex()}"
        await self.quiet(8)
        return got

    async def request(self, cmd, payload=b"", status=LinkStatus.OK, what=""):
        got = await self.exchange(encode_request(cmd, self.next_seq(), payload), what or Cmd(cmd).name)
        if status is not None:
            r = decode_response(got)
            assert r.status == status, f"{what or Cmd(cmd).name}: link status {LinkStatus(r.status).name}"
            return r.payload
        return got

    def check_state(self):
        a, b = self.core.machine, self.ref.machine
        assert np.array_equal(a.tmem, b.tmem), "TMEM differs from the reference"
        assert a.program == b.program, "program memory differs from the reference"
        assert [vars(e) for e in a.table] == [vars(e) for e in b.table], "tensor table differs"
        assert (a.seed, a.step) == (b.seed, b.step), "step keys' seed and step differ"
        assert a.counters == b.counters, "loss counters differ"
        assert np.array_equal(a.data, b.data) and np.array_equal(a.labels, b.labels), "data set differs"
        assert a.cursor == b.cursor, "data cursor differs"


async def setup(dut, **kwargs) -> Bench:
    s = settings(dut)
    dut.rx__valid.value = 0
    dut.tx__ready.value = 0
    b = Bench(dut, s, **kwargs)
    await b.start()
    return b


def random_words(rng, n, lanes):
    return bytes(rng.randrange(256) for _ in range(n * lanes))


@cocotb.test()
async def ping_status_and_refusals(dut):
    """PING/STATUS answers and every refusal (command, length, range) byte-exact; nothing committed."""
    b = await setup(dut)
    cfg = b.cfg
    await b.request(Cmd.PING)
    await b.request(Cmd.STATUS)
    cases = [
        (0x00, b"", LinkStatus.BAD_COMMAND), (0x42, b"xy", LinkStatus.BAD_COMMAND),
        (Cmd.PING, b"x", LinkStatus.BAD_LENGTH), (Cmd.STATUS, b"\x00\x00", LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_TMEM, b"\x00", LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_TMEM, b"\x00\x00" + bytes(cfg.lanes + 1), LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_TMEM, struct.pack("<H", cfg.tmem_words - 1) + bytes(2 * cfg.lanes), LinkStatus.ADDR_RANGE),
        (Cmd.WRITE_TMEM, struct.pack("<H", 0xFFFF) + bytes(cfg.lanes), LinkStatus.ADDR_RANGE),
        (Cmd.WRITE_TMEM, struct.pack("<H", 3), LinkStatus.OK),
        (Cmd.READ_TMEM, struct.pack("<HH", cfg.tmem_words - 1, 2), LinkStatus.ADDR_RANGE),
        (Cmd.READ_TMEM, struct.pack("<HH", 0, cfg.max_payload // cfg.lanes + 1), LinkStatus.BAD_LENGTH),
        (Cmd.READ_TMEM, struct.pack("<H", 0), LinkStatus.BAD_LENGTH),
        (Cmd.READ_TMEM, struct.pack("<HH", 5, 0), LinkStatus.OK),
        (Cmd.WRITE_TENSOR, struct.pack("<BHHHh", cfg.tensor_slots, 0, 1, 1, 0), LinkStatus.ADDR_RANGE),
        (Cmd.WRITE_TENSOR, struct.pack("<BHHH", 1, 0, 1, 1), LinkStatus.BAD_LENGTH),
        (Cmd.READ_TENSOR, bytes([cfg.tensor_slots]), LinkStatus.ADDR_RANGE),
        (Cmd.READ_TENSOR, b"", LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_PROGRAM, struct.pack("<HQ", cfg.program_depth, 0), LinkStatus.ADDR_RANGE),
        (Cmd.WRITE_PROGRAM, struct.pack("<H", 0) + bytes(12), LinkStatus.BAD_LENGTH),
        (Cmd.RUN, struct.pack("<H", cfg.program_depth), LinkStatus.ADDR_RANGE),
        (Cmd.RUN, b"\x00", LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_KEYS, bytes(7), LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_KEYS, bytes(9), LinkStatus.BAD_LENGTH),
        (Cmd.READ_COUNTERS, b"\x00", LinkStatus.BAD_LENGTH),
        (Cmd.CLEAR_COUNTERS, b"\x01", LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_DATA, b"\x00\x00" + bytes(cfg.lanes + 1), LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_DATA, struct.pack("<H", cfg.data_words - 1) + bytes(2 * cfg.lanes), LinkStatus.ADDR_RANGE),
        (Cmd.WRITE_LABELS, struct.pack("<H", cfg.data_samples - 2) + bytes(3), LinkStatus.ADDR_RANGE),
        (Cmd.WRITE_LABELS, b"\x00", LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_CURSOR, bytes(7), LinkStatus.BAD_LENGTH),
        (Cmd.WRITE_CURSOR, bytes(9), LinkStatus.BAD_LENGTH),
        (Cmd.LOOP, struct.pack("<HIB", cfg.program_depth, 1, 0), LinkStatus.ADDR_RANGE),
        (Cmd.LOOP, struct.pack("<HIB", 0, 0, 1), LinkStatus.ADDR_RANGE),
        (Cmd.LOOP, struct.pack("<HIB", 0, 3, 2), LinkStatus.ADDR_RANGE),
        (Cmd.LOOP, struct.pack("<HI", 0, 3), LinkStatus.BAD_LENGTH),
        (Cmd.PROGRESS, b"\x00", LinkStatus.BAD_LENGTH),
    ]
    for cmd, payload, status in cases:
        await b.request(cmd, payload, status, what=f"cmd {cmd:#x} payload {payload.hex()}")
    b.check_state()
    assert b.core.runs == 0


@cocotb.test()
async def writes_and_reads_with_backpressure(dut):
    """TMEM/table/program/step-key writes and reads up to max_payload, random rx gaps and tx back-pressure."""
    b = await setup(dut, gap=0.3, stall=0.5)
    cfg, rng = b.cfg, b.s.rng
    lanes = cfg.lanes
    full = (cfg.max_payload - 2) // lanes
    for n in (1, 3, full):
        addr = rng.randrange(cfg.tmem_words - n + 1)
        await b.request(Cmd.WRITE_TMEM, struct.pack("<H", addr) + random_words(rng, n, lanes))
        await b.request(Cmd.READ_TMEM, struct.pack("<HH", addr, min(n, cfg.max_payload // lanes)))
    await b.request(Cmd.WRITE_TMEM, struct.pack("<H", cfg.tmem_words - 2) + random_words(rng, 2, lanes))
    await b.request(Cmd.READ_TMEM, struct.pack("<HH", cfg.tmem_words - 4, 4))
    await b.request(Cmd.READ_TMEM, struct.pack("<HH", 0, cfg.max_payload // lanes))
    for slot in (0, cfg.tensor_slots - 1, rng.randrange(cfg.tensor_slots)):
        fields = (slot, rng.randrange(1 << 16), rng.randrange(1 << 16), rng.randrange(1 << 16),
                  rng.randrange(-(1 << (cfg.exp_bits - 1)), 1 << (cfg.exp_bits - 1)))
        await b.request(Cmd.WRITE_TENSOR, struct.pack("<BHHHh", *fields))
        await b.request(Cmd.READ_TENSOR, bytes([slot]))
    for seed, step in ((rng.randrange(1 << 32), rng.randrange(1 << 32)), (0xFFFF_FFFF, 0xFFFF_FFFF)):
        await b.request(Cmd.WRITE_KEYS, struct.pack("<II", seed, step))
        b.check_state()
    counters = LossCounters(rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(1 << 64))
    b.core.machine.counters, b.ref.machine.counters = counters, LossCounters(**vars(counters))
    b.core.drive_counters()
    answer = await b.request(Cmd.READ_COUNTERS)
    assert answer == struct.pack("<IIQ", counters.samples, counters.correct, counters.loss_bits)
    await b.request(Cmd.CLEAR_COUNTERS)
    assert await b.request(Cmd.READ_COUNTERS) == bytes(16)
    b.check_state()
    for n in (1, full):
        addr = rng.randrange(cfg.data_words - n + 1)
        await b.request(Cmd.WRITE_DATA, struct.pack("<H", addr) + random_words(rng, n, lanes))
    await b.request(Cmd.WRITE_LABELS, struct.pack("<H", cfg.data_samples - 3) + random_words(rng, 3, 1))
    await b.request(Cmd.WRITE_LABELS, struct.pack("<H", 0) + random_words(rng, cfg.max_payload - 2, 1))
    for cursor in ((rng.randrange(1 << 32), rng.randrange(1 << 16), rng.randrange(1 << 16)), (2**32 - 1, 65535, 65535)):
        await b.request(Cmd.WRITE_CURSOR, struct.pack("<IHH", *cursor))
        assert await b.request(Cmd.PROGRESS) == struct.pack("<IIHHI", b.ref.machine.step, *cursor, 0)
    b.check_state()
    words = [rng.randrange(1 << 64) for _ in range(5)]
    await b.request(Cmd.WRITE_PROGRAM, struct.pack("<H5Q", cfg.program_depth - 5, *words))
    n = min((cfg.max_payload - 2) // 8, cfg.program_depth)
    await b.request(Cmd.WRITE_PROGRAM, struct.pack(f"<H{n}Q", 0, *(rng.randrange(1 << 64) for _ in range(n))))
    b.check_state()
    dut._log.info(f"bytes to device {b.bytes_out}, from device {b.bytes_in}")


@cocotb.test()
async def corrupted_garbage_duplicated_oversize(dut):
    """Bad CRC commits nothing and echoes seq; garbage is skipped; duplicates answered twice;
    an oversize frame is drained and refused."""
    b = await setup(dut, gap=0.1, stall=0.2)
    cfg, rng = b.cfg, b.s.rng
    frame = encode_request(Cmd.WRITE_TMEM, 77, struct.pack("<H", 9) + random_words(rng, 4, cfg.lanes))
    for position in (1, 2, 8, len(frame) - 2, len(frame) - 1):   # cmd, seq, payload, CRC bytes
        # (a corrupted len makes the device wait for more bytes: truncated_frame_times_out covers it)
        bad = bytearray(frame)
        bad[position] ^= 1 << rng.randrange(8)
        await b.exchange(bytes(bad), f"corrupted byte {position}")
        b.check_state()
        assert not b.core.machine.tmem.any()
    await b.exchange(b"\x00\x5a\xff garbage" + frame + b"\x13\x37" + encode_request(Cmd.PING, 78), "garbage")
    await b.exchange(frame + frame, "duplicate")
    big = encode_request(Cmd.WRITE_TMEM, 79, bytes(cfg.max_payload + 2 + 3))
    got = await b.exchange(big, "oversize")
    assert decode_response(got).status == LinkStatus.BAD_LENGTH
    await b.request(Cmd.READ_TMEM, struct.pack("<HH", 9, 4))
    b.check_state()


@cocotb.test()
async def run_busy_and_repeat(dut):
    """RUN answers when the run ends; STATUS/PING served and other commands BUSY meanwhile;
    a repeated RUN is ignored while active and answered with the same result afterwards."""
    b = await setup(dut, gap=0.1, stall=0.3, busy_cycles=3000, auto_complete=False)
    cfg = b.cfg
    program = [isa.halt().encode()] * 4 + [15]
    await b.request(Cmd.WRITE_PROGRAM, struct.pack(f"<H{len(program)}Q", 0, *program))
    runs = [(Cmd.RUN, struct.pack("<H", pc), code)
            for pc, code in ((2, Status.OK), (4, Status.ILLEGAL_INSTRUCTION), (cfg.program_depth - 1, None))]
    runs += [(Cmd.LOOP, struct.pack("<HIB", 1, 3, 1), Status.OK),
             (Cmd.LOOP, struct.pack("<HIB", 4, 5, 1), Status.ILLEGAL_INSTRUCTION)]
    for cmd, payload, code in runs:
        run = encode_request(cmd, b.next_seq(), payload)
        await b.exchange(run, "RUN start")                  # no answer yet
        assert b.ref.running
        status = await b.request(Cmd.STATUS)
        assert status[0] == 1, "busy"
        await b.request(Cmd.PING)
        await b.request(Cmd.WRITE_TMEM, struct.pack("<H", 0) + bytes(cfg.lanes), LinkStatus.BUSY)
        await b.request(Cmd.WRITE_KEYS, struct.pack("<II", 1, 2), LinkStatus.BUSY)
        await b.request(Cmd.READ_COUNTERS, b"", LinkStatus.BUSY)
        await b.request(Cmd.CLEAR_COUNTERS, b"", LinkStatus.BUSY)
        await b.request(Cmd.WRITE_DATA, struct.pack("<H", 0) + bytes(cfg.lanes), LinkStatus.BUSY)
        await b.request(Cmd.WRITE_LABELS, struct.pack("<H", 0) + bytes(1), LinkStatus.BUSY)
        await b.request(Cmd.WRITE_CURSOR, bytes(8), LinkStatus.BUSY)
        await b.request(Cmd.LOOP, struct.pack("<HIB", 0, 1, 0), LinkStatus.BUSY)
        await b.request(Cmd.PROGRESS)
        await b.exchange(run, "repeated RUN while active")  # ignored
        expected = b.ref.complete_run()
        got = await b.receive(len(expected))
        assert got == expected, f"run answer {got.hex()} expected {expected.hex()}"
        r = decode_response(got)
        if code is not None:
            assert r.payload[0] == code
        await b.exchange(run, "repeated RUN after the end")  # same answer, no new run
        await b.request(Cmd.STATUS)
    assert b.core.runs == 5
    b.check_state()


@cocotb.test()
async def truncated_frame_times_out(dut):
    """A frame stalled mid-way is discarded after frame_timeout_cycles with a TIMEOUT answer."""
    b = await setup(dut, stall=0.2)
    cfg, rng = b.cfg, b.s.rng
    timeout = bench_timeout_cycles(cfg)          # the unit is generated with this (sim_tests/units.py)
    for cut in (1, 3, 9, None):                 # after sync, in the header, in the payload; a longer len field
        frame = encode_request(Cmd.WRITE_TMEM, b.next_seq(), struct.pack("<H", 1) + random_words(rng, 2, cfg.lanes))
        part = frame[:cut] if cut else frame[:3] + bytes([frame[3] + 5]) + frame[4:]
        assert b.ref.feed(part) == b""
        await b.src.send(list(part))
        expected = b.ref.stall()
        b.core.pause()
        margin = 50
        await Timer((timeout - margin) * CLOCK_NS, units="ns")
        await ReadOnly()
        assert not read_unsigned(dut.tx__valid), f"answer before the timeout (cut {cut})"
        await FallingEdge(dut.clk)
        b.core.unpause()
        t0 = get_sim_time("ns")
        got = await b.receive(len(expected))
        waited = (get_sim_time("ns") - t0) // CLOCK_NS
        assert waited < margin + 10 * len(expected), f"TIMEOUT answer {waited} cycles late"
        assert got == expected, f"TIMEOUT answer {got.hex()} expected {expected.hex()}"
        assert decode_response(got).status == LinkStatus.TIMEOUT
        await b.exchange(frame, "the whole frame again")
    b.check_state()
