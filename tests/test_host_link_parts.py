"""Unit tests of the host link's stages (hw/link_parser.py, hw/link_executor.py, hw/link_responder.py)
in Amaranth's simulator, against the wire contract (protocol/wire.py).  The whole link is checked byte
for byte against protocol/link_model.py by the cocotb bench sim_tests/tb_host_link.py."""

from __future__ import annotations

import random
import struct

import pytest
from amaranth.sim import Simulator

from golden_model.config import get_config
from hw.link_executor import LinkExecutor
from hw.link_parser import FrameParser
from hw.link_responder import Responder
from protocol.wire import (CRC, PING_PAYLOAD_BYTES, SMALL_ANSWER_BYTES, Cmd, LinkStatus, crc16, encode_request,
                           encode_response, ping_payload)
from sim_tests.amaranth_sim import simulate

CFG = get_config("small4x4")


def test_crc_is_the_catalog_algorithm_and_the_host_twin_agrees():
    """The gateware's CRC (amaranth.lib.crc catalog) and the host's table-driven crc16 are one CRC."""
    assert (CRC.crc_width, CRC.polynomial, CRC.initial_crc, CRC.reflect_input, CRC.reflect_output,
            CRC.xor_output) == (16, 0x1021, 0xFFFF, False, False, 0)
    assert crc16(b"123456789") == 0x29B1 == CRC(data_width=8).compute(b"123456789")
    rng = random.Random(4)
    for length in (0, 1, 7, 300):
        data = bytes(rng.randrange(256) for _ in range(length))
        assert crc16(data) == CRC(data_width=8).compute(data)


async def feed(ctx, parser, data, rng, gap=0.3):
    """Drive bytes on parser.rx with random idle cycles; wait for each to be taken."""
    for byte in data:
        while rng.random() < gap:
            ctx.set(parser.rx.valid, 0)
            await ctx.tick()
        ctx.set(parser.rx.valid, 1)
        ctx.set(parser.rx.payload, byte)
        await ctx.tick().until(parser.rx.ready)
    ctx.set(parser.rx.valid, 0)


@pytest.mark.parametrize("cmd, payload", [(Cmd.PING, b""), (Cmd.WRITE_TENSOR, bytes(range(9))),
                                          (Cmd.WRITE_TMEM, b"\x05\x00" + bytes(range(2 * CFG.lanes + 1))),
                                          (Cmd.WRITE_PROGRAM, b"\x00\x00" + bytes(16))])
@pytest.mark.parametrize("corrupt", [False, True])
def test_parser_frames_fields_buffer_and_crc(cmd, payload, corrupt):
    parser = FrameParser(CFG, timeout_cycles=50)
    frame_bytes = bytearray(encode_request(cmd, 0x42, payload))
    if corrupt:
        frame_bytes[-1] ^= 0x01
    seen = {}

    async def bench(ctx):
        rng = random.Random(7)
        await feed(ctx, parser, b"\x00\x13" + bytes(frame_bytes), rng)
        await ctx.tick().until(parser.frame.valid)
        seen["frame"] = ctx.get(parser.frame.payload)
        assert ctx.get(parser.rx.ready) == 0           # no byte while the frame waits
        ctx.set(parser.frame.ready, 1)
        await ctx.tick()
        ctx.set(parser.frame.ready, 0)

    async def buffer_monitor(ctx):
        seen["buffer"] = {}
        async for clk_edge, rst, en, addr, data in ctx.tick().sample(parser.buffer.en, parser.buffer.addr,
                                                                     parser.buffer.data):
            if en:
                seen["buffer"][addr] = data

    sim = Simulator(parser)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(buffer_monitor)
    sim.run_until(2000e-6)
    frame = seen["frame"]
    assert (frame.cmd, frame.seq, frame.length) == (cmd, 0x42, len(payload))
    assert frame.crc_ok == (not corrupt) and frame.timeout == 0
    assert bytes(seen["buffer"].get(i) for i in range(len(payload))) == payload
    args = int(frame.args).to_bytes(9, "little")
    assert args[:min(9, len(payload))] == payload[:9]
    if cmd in (Cmd.WRITE_TMEM, Cmd.WRITE_PROGRAM):
        unit = CFG.lanes if cmd == Cmd.WRITE_TMEM else 8
        assert frame.units == (len(payload) - 2) // unit
        assert frame.whole == ((len(payload) - 2) % unit == 0)


def test_parser_stall_times_out_and_hold_blocks_the_hunt():
    parser = FrameParser(CFG, timeout_cycles=20)

    async def bench(ctx):
        rng = random.Random(1)
        ctx.set(parser.hold, 1)
        ctx.set(parser.rx.valid, 1)
        ctx.set(parser.rx.payload, 0xA5)
        for _ in range(5):
            await ctx.tick()
            assert ctx.get(parser.rx.ready) == 0 and ctx.get(parser.mid_frame) == 0
        ctx.set(parser.hold, 0)
        await feed(ctx, parser, encode_request(Cmd.RUN, 9, b"\x01\x00")[:4], rng, gap=0)
        for cycle in range(40):
            await ctx.tick()
            if ctx.get(parser.frame.valid):
                break
        frame = ctx.get(parser.frame.payload)
        assert frame.timeout == 1 and (frame.cmd, frame.seq) == (Cmd.RUN, 9)
        assert 19 <= cycle <= 21

    simulate(parser, bench)


@pytest.mark.parametrize("length", [0, 5, PING_PAYLOAD_BYTES])
def test_responder_sends_the_contract_frame(length):
    responder = Responder(CFG)
    payload = bytes((7 * i + 3) & 0xFF for i in range(length))
    got = bytearray()

    async def bench(ctx):
        rng = random.Random(length)
        ctx.set(responder.answer.payload, {"cmd": Cmd.READ_TENSOR, "seq": 200, "status": LinkStatus.OK,
                                           "length": length, "from_tmem": 0,
                                           "small": int.from_bytes(payload.ljust(SMALL_ANSWER_BYTES, b"\0"),
                                                                   "little"), "tmem_addr": 0})
        ctx.set(responder.answer.valid, 1)
        await ctx.tick().until(responder.answer.ready)
        ctx.set(responder.answer.valid, 0)
        while len(got) < 8 + length:
            ready = rng.random() < 0.6
            ctx.set(responder.tx.ready, ready)
            valid, byte = ctx.get(responder.tx.valid), ctx.get(responder.tx.payload)
            await ctx.tick()
            if ready and valid:
                got.append(byte)
        assert ctx.get(responder.answer.ready) == 1

    simulate(responder, bench)
    assert bytes(got) == encode_response(Cmd.READ_TENSOR, 200, LinkStatus.OK, payload)


def frame_value(cmd, seq, payload, *, crc_ok=1, timeout=0, units=0, whole=1):
    return {"cmd": cmd, "seq": seq, "length": len(payload), "crc_ok": crc_ok, "timeout": timeout,
            "args": int.from_bytes(payload[:9].ljust(9, b"\0"), "little"), "units": units, "whole": whole}


async def execute(ctx, executor, frame):
    """Offer one frame; return (status, length, small payload int) of the answer, or None if silent."""
    ctx.set(executor.frame.payload, frame)
    ctx.set(executor.frame.valid, 1)
    await ctx.tick().until(executor.frame.ready)
    ctx.set(executor.frame.valid, 0)
    for _ in range(10):
        if ctx.get(executor.answer.valid):
            answer = ctx.get(executor.answer.payload)
            ctx.set(executor.answer.ready, 1)
            await ctx.tick()
            ctx.set(executor.answer.ready, 0)
            return int(answer.status), int(answer.length), int(answer.small)
        await ctx.tick()
    return None


def test_executor_checks_in_the_contract_order_and_writes_the_table():
    executor = LinkExecutor(CFG)
    writes = []

    async def bench(ctx):
        entry = struct.pack("<BHHHh", 3, 100, 4, 5, -7)
        assert (await execute(ctx, executor, frame_value(Cmd.PING, 1, b"")))[:2] == (LinkStatus.OK, 17)
        ping = (await execute(ctx, executor, frame_value(Cmd.PING, 1, b"")))[2]
        assert ping.to_bytes(17, "little") == ping_payload(CFG)
        assert (await execute(ctx, executor, frame_value(Cmd.PING, 2, b"", timeout=1)))[0] == LinkStatus.TIMEOUT
        assert (await execute(ctx, executor, frame_value(Cmd.PING, 2, b"", crc_ok=0)))[0] == LinkStatus.BAD_CRC
        assert (await execute(ctx, executor, frame_value(0x77, 2, b"")))[0] == LinkStatus.BAD_COMMAND
        assert (await execute(ctx, executor, frame_value(Cmd.STATUS, 3, b"x")))[0] == LinkStatus.BAD_LENGTH
        bad_slot = struct.pack("<BHHHh", CFG.tensor_slots, 0, 1, 1, 0)
        assert (await execute(ctx, executor, frame_value(Cmd.WRITE_TENSOR, 4, bad_slot)))[0] == LinkStatus.ADDR_RANGE
        assert (await execute(ctx, executor, frame_value(Cmd.WRITE_TENSOR, 5, entry)))[0] == LinkStatus.OK
        assert (await execute(ctx, executor, frame_value(Cmd.WRITE_TMEM, 6, b"\x00\x00" + bytes(3), units=0,
                                                         whole=0)))[0] == LinkStatus.BAD_LENGTH
        far = struct.pack("<H", CFG.tmem_words)
        assert (await execute(ctx, executor, frame_value(Cmd.WRITE_TMEM, 7, far + bytes(CFG.lanes),
                                                         units=1)))[0] == LinkStatus.ADDR_RANGE

    async def table_monitor(ctx):
        async for _, _, en, slot, entry in ctx.tick().sample(executor.core.table_w.en, executor.core.table_w.slot,
                                                             executor.core.table_w.entry):
            if en:
                writes.append((slot, entry.base, entry.rows, entry.cols, entry.exp))

    sim = Simulator(executor)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(table_monitor)
    sim.run_until(3000e-6)
    assert writes == [(3, 100, 4, 5, -7)]


def test_executor_runs_refuses_while_busy_and_answers_the_run_at_its_end():
    executor = LinkExecutor(CFG)
    starts = []

    async def bench(ctx):
        run = struct.pack("<H", 2)
        ctx.set(executor.core.status, {"busy": 1, "code": 0, "pc": 2, "cycles": 0})   # the core, once started
        assert await execute(ctx, executor, frame_value(Cmd.RUN, 9, run)) is None      # started, no answer yet
        assert (await execute(ctx, executor, frame_value(Cmd.WRITE_TENSOR, 10, bytes(9))))[0] == LinkStatus.BUSY
        assert await execute(ctx, executor, frame_value(Cmd.RUN, 9, run)) is None      # repeated RUN: silent
        status = await execute(ctx, executor, frame_value(Cmd.STATUS, 11, b""))
        assert status[0] == LinkStatus.OK and status[2] & 1 == 1                         # busy
        ctx.set(executor.core.status, {"busy": 0, "code": 7, "pc": 5, "cycles": 1234})
        ctx.set(executor.mid_frame, 1)
        for _ in range(5):
            await ctx.tick()
            assert ctx.get(executor.answer.valid) == 0 and ctx.get(executor.run_ended) == 1
        ctx.set(executor.mid_frame, 0)
        await ctx.tick().until(executor.answer.valid)
        answer = ctx.get(executor.answer.payload)
        assert (answer.cmd, answer.seq, answer.status, answer.length) == (Cmd.RUN, 9, LinkStatus.OK, 7)
        assert int(answer.small).to_bytes(17, "little")[:7] == struct.pack("<BHI", 7, 5, 1234)

    async def run_monitor(ctx):
        async for _, _, start, pc in ctx.tick().sample(executor.core.run.start, executor.core.run.pc):
            if start:
                starts.append(pc)

    sim = Simulator(executor)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(run_monitor)
    sim.run_until(3000e-6)
    assert starts == [2]
