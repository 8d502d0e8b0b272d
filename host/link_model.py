"""Python reference of the device side of the host protocol (docs/protocol.md).

:class:`LinkDevice` parses request bytes exactly as hw/host_link.py does
(sync hunt, header, payload into a frame buffer, CRC, then commit) over a
golden_model.machine.Machine and produces the device's answer bytes.  It is
the expected-value model of the cocotb bench sim_tests/tb_host_link.py, the
peer of LinkClient in tests/test_protocol.py, and can serve a pseudo-terminal
(:func:`serve_fd`) to stand in for the FPGA.

Time: the device sees only bytes; :meth:`LinkDevice.stall` says "the line has
been quiet for frame_timeout_cycles" (a frame in progress is then discarded
with a TIMEOUT answer).  Runs: the Machine runs a program at once; with
``auto_complete=False`` the run stays active (status busy) until
:meth:`complete_run`, to exercise BUSY.  The reference has no timing: the
cycles it reports are ``cycle_model(start_pc, end_pc, code)``, by default the
instructions executed (end_pc - start_pc; the ISA has no branches).
"""

from __future__ import annotations

import struct

import numpy as np

from golden_model.config import CoreConfig
from golden_model.isa import Status
from golden_model.machine import Machine, MachineError, TensorEntry

from .protocol import (REQUEST_SYNC, Cmd, LinkStatus, check_protocol_fit, crc16_update, encode_response,
                       pc_mask, ping_payload, run_payload, status_payload, tensor_entry_payload)


def default_cycle_model(start_pc: int, end_pc: int, code: int) -> int:
    return end_pc - start_pc


def run_machine(machine: Machine, pc: int) -> tuple[int, int]:
    """Run the golden machine from pc: (isa status code, end pc)."""
    try:
        machine.run(pc)
    except MachineError as error:
        return int(error.status), error.pc
    return int(Status.OK), machine.pc


class LinkDevice:
    HUNT, HEADER, PAYLOAD, CRC = range(4)

    def __init__(self, cfg: CoreConfig, machine: Machine | None = None, cycle_model=default_cycle_model,
                 auto_complete: bool = True):
        check_protocol_fit(cfg)
        self.cfg = cfg
        self.machine = machine if machine is not None else Machine(cfg)
        self.cycle_model = cycle_model
        self.auto_complete = auto_complete
        self.out = bytearray()
        self.state = self.HUNT
        self.cmd = self.seq = self.length = 0
        self.index = 0
        self.crc = 0xFFFF
        self.rx_crc = 0
        self.buffer = bytearray()
        # core status as the link sees it
        self.running = False
        self.run_seq = 0
        self.run_pc = 0
        self.code, self.pc, self.cycles = int(Status.OK), 0, 0

    # ---- byte interface ----------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        """Consume request bytes; return the answer bytes produced meanwhile."""
        for byte in bytes(data):
            self._byte(byte)
        return self.take()

    def take(self) -> bytes:
        out, self.out = bytes(self.out), bytearray()
        return out

    def stall(self) -> bytes:
        """The line was quiet for frame_timeout_cycles: discard a frame in progress (TIMEOUT)."""
        if self.state != self.HUNT:
            self._answer(LinkStatus.TIMEOUT)
            self.state = self.HUNT
        return self.take()

    @property
    def mid_frame(self) -> bool:
        return self.state != self.HUNT

    def complete_run(self) -> bytes:
        """End an active run (auto_complete=False): execute it and emit the RUN answer."""
        if not self.running:
            raise RuntimeError("no run is active")
        self._finish_run()
        return self.take()

    def _finish_run(self) -> None:
        self.code, end_pc = run_machine(self.machine, self.run_pc)
        self.cycles = self.cycle_model(self.run_pc, end_pc, self.code) & 0xFFFFFFFF
        self.pc = end_pc & pc_mask(self.cfg)
        self.running = False
        self.out += encode_response(Cmd.RUN, self.run_seq, LinkStatus.OK, run_payload(self.code, self.pc, self.cycles))

    def _byte(self, byte: int) -> None:
        if self.state == self.HUNT:
            if byte == REQUEST_SYNC:
                self.state, self.index, self.crc = self.HEADER, 0, 0xFFFF
                self.cmd = self.seq = self.length = 0
                self.buffer = bytearray()
            return
        if self.state == self.HEADER:
            self.crc = crc16_update(self.crc, byte)
            if self.index == 0:
                self.cmd = byte
            elif self.index == 1:
                self.seq = byte
            elif self.index == 2:
                self.length = byte
            else:
                self.length |= byte << 8
            self.index += 1
            if self.index == 4:
                self.index = 0
                self.state = self.PAYLOAD if self.length else self.CRC
            return
        if self.state == self.PAYLOAD:
            self.crc = crc16_update(self.crc, byte)
            if self.index < self.cfg.max_payload:
                self.buffer.append(byte)
            self.index += 1
            if self.index == self.length:
                self.index, self.state = 0, self.CRC
            return
        # CRC
        if self.index == 0:
            self.rx_crc = byte
            self.index = 1
            return
        self.rx_crc |= byte << 8
        self.state = self.HUNT
        self._execute()

    # ---- commands ------------------------------------------------------------------------------
    def _answer(self, status: int, payload: bytes = b"") -> None:
        self.out += encode_response(self.cmd, self.seq, status, payload)

    def _execute(self) -> None:
        cfg, cmd, n, p = self.cfg, self.cmd, self.length, bytes(self.buffer)
        if self.rx_crc != self.crc:
            return self._answer(LinkStatus.BAD_CRC)
        if n > cfg.max_payload:
            return self._answer(LinkStatus.BAD_LENGTH)
        if cmd not in Cmd._value2member_map_:
            return self._answer(LinkStatus.BAD_COMMAND)
        if self.running and cmd not in (Cmd.STATUS, Cmd.PING):
            if cmd == Cmd.RUN and self.seq == self.run_seq and self.seq != 0:
                return None      # a repeated RUN of the active run: its answer comes when it ends
            return self._answer(LinkStatus.BUSY)
        lanes = cfg.lanes
        if cmd == Cmd.PING:
            if n != 0:
                return self._answer(LinkStatus.BAD_LENGTH)
            return self._answer(LinkStatus.OK, ping_payload(cfg))
        if cmd == Cmd.STATUS:
            if n != 0:
                return self._answer(LinkStatus.BAD_LENGTH)
            return self._answer(LinkStatus.OK, status_payload(self.running, self.code, self.pc, self.cycles,
                                                              self.run_seq))
        if cmd == Cmd.WRITE_TMEM:
            if n < 2 or (n - 2) % lanes:
                return self._answer(LinkStatus.BAD_LENGTH)
            addr, count = struct.unpack_from("<H", p)[0], (n - 2) // lanes
            if addr + count > cfg.tmem_words:
                return self._answer(LinkStatus.ADDR_RANGE)
            words = np.frombuffer(p[2:], dtype=np.int8).reshape(count, lanes)
            self.machine.tmem[addr:addr + count] = words
            return self._answer(LinkStatus.OK)
        if cmd == Cmd.READ_TMEM:
            if n != 4:
                return self._answer(LinkStatus.BAD_LENGTH)
            addr, count = struct.unpack("<HH", p)
            if count * lanes > cfg.max_payload:
                return self._answer(LinkStatus.BAD_LENGTH)
            if addr + count > cfg.tmem_words:
                return self._answer(LinkStatus.ADDR_RANGE)
            return self._answer(LinkStatus.OK, self.machine.tmem[addr:addr + count].tobytes())
        if cmd == Cmd.WRITE_TENSOR:
            if n != 9:
                return self._answer(LinkStatus.BAD_LENGTH)
            slot, base, rows, cols, exp = struct.unpack("<BHHHh", p)
            limit = 1 << (cfg.exp_bits - 1)
            if slot >= cfg.tensor_slots or not -limit <= exp < limit:
                return self._answer(LinkStatus.ADDR_RANGE)
            self.machine.table[slot] = TensorEntry(base, rows, cols, exp)
            return self._answer(LinkStatus.OK)
        if cmd == Cmd.READ_TENSOR:
            if n != 1:
                return self._answer(LinkStatus.BAD_LENGTH)
            if p[0] >= cfg.tensor_slots:
                return self._answer(LinkStatus.ADDR_RANGE)
            return self._answer(LinkStatus.OK, tensor_entry_payload(self.machine.table[p[0]]))
        if cmd == Cmd.WRITE_PROGRAM:
            if n < 2 or (n - 2) % 8:
                return self._answer(LinkStatus.BAD_LENGTH)
            addr, count = struct.unpack_from("<H", p)[0], (n - 2) // 8
            if addr + count > cfg.program_depth:
                return self._answer(LinkStatus.ADDR_RANGE)
            self.machine.program[addr:addr + count] = list(struct.unpack_from(f"<{count}Q", p, 2))
            return self._answer(LinkStatus.OK)
        # RUN
        if n != 2:
            return self._answer(LinkStatus.BAD_LENGTH)
        pc = struct.unpack("<H", p)[0]
        if pc >= cfg.program_depth:
            return self._answer(LinkStatus.ADDR_RANGE)
        if self.seq == self.run_seq and self.seq != 0:     # repeated RUN: repeat the result
            return self._answer(LinkStatus.OK, run_payload(self.code, self.pc, self.cycles))
        self.running, self.run_seq, self.run_pc = True, self.seq, pc
        self.code, self.pc, self.cycles = int(Status.OK), pc & pc_mask(cfg), 0
        if self.auto_complete:
            self._finish_run()
        return None


class LoopbackTransport:
    """In-process transport to a LinkDevice, for LinkClient tests and offline use.

    A read that finds nothing to deliver models a quiet line: the device's
    frame timeout fires (stall) and whatever it answers is delivered; if still
    nothing, the read times out at once (b"") instead of sleeping.
    """

    def __init__(self, device: LinkDevice):
        self.device = device
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += self.device.feed(data)

    def read(self, n: int, timeout: float) -> bytes:
        if not self.pending:
            self.pending += self.device.stall()
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out


def serve_fd(device: LinkDevice, fd: int, idle_seconds: float = 0.05) -> None:
    """Serve the device on a file descriptor (e.g. the master side of a pty) until EOF.

    A line quiet for ``idle_seconds`` mid-frame counts as the frame timeout."""
    import os
    import select
    while True:
        ready, _, _ = select.select([fd], [], [], idle_seconds)
        if not ready:
            out = device.stall()
        else:
            data = os.read(fd, 4096)
            if not data:
                return
            out = device.feed(data)
        if out:
            os.write(fd, out)
