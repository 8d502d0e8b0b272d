"""Python reference of the device side of the host link (docs/protocol.md).

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
:meth:`LinkDevice.reset` models the device's reset input.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import tty

import numpy as np

from golden_model.config import CoreConfig
from golden_model.isa import Status
from golden_model.machine import Machine, MachineError, TensorEntry

from .wire import (ADDRESS_BYTES, ADDRESS_FORMAT, CRC, COMMANDS, CURSOR_FORMAT, LOOP_FORMAT, READ_TMEM_FORMAT,
                   REQUEST_SYNC, RUN_COMMANDS, WRITE_KEYS_FORMAT, WRITE_TENSOR_FORMAT, Cmd, LinkStatus, Progress, Unit,
                   check_protocol_fit, counters_payload, crc16_update, encode_response, entry_payload, pc_mask,
                   ping_payload, progress_payload, run_payload, status_payload, unit_bytes, unit_depth)


def default_cycle_model(start_pc: int, end_pc: int, code: int) -> int:
    return end_pc - start_pc


def machine_progress(machine: Machine) -> Progress:
    """What PROGRESS reports of a golden machine: its step, data cursor and passes left."""
    cursor = machine.cursor
    return Progress(machine.step, cursor.epoch, cursor.train, cursor.eval, machine.passes)


def run_machine(machine: Machine, pc: int, passes: int = 1, advance: bool = False) -> tuple[int, int]:
    """Run the golden machine from pc, ``passes`` times (Machine.loop): (isa status code, end pc)."""
    try:
        machine.loop(pc, passes, advance)
    except MachineError as error:
        return int(error.status), error.pc
    return int(Status.OK), machine.pc


class LinkDevice:
    HUNT, HEADER, PAYLOAD, TRAILER = range(4)

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
        self.crc = CRC.initial_crc
        self.rx_crc = 0
        self.buffer = bytearray()
        # core status as the link sees it
        self.running = False
        self.run_seq = 0
        self.run_pc, self.run_cmd, self.run_passes, self.run_advance = 0, Cmd.RUN, 1, False
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

    def reset(self) -> None:
        """A reset of the device (its rst input): the parser hunts again, a run in progress is abandoned
        and the run state is cleared (run_seq 0: "no run yet"); TMEM, the tensor table and the program
        are block RAM and keep their contents, and whatever was being answered is lost."""
        self.state = self.HUNT
        self.out = bytearray()
        self.running = False
        self.run_seq = 0
        self.code, self.pc, self.cycles = int(Status.OK), 0, 0

    def complete_run(self) -> bytes:
        """End an active run (auto_complete=False): execute it and emit the RUN answer."""
        if not self.running:
            raise RuntimeError("no run is active")
        self._finish_run()
        return self.take()

    def _finish_run(self) -> None:
        self.code, end_pc = run_machine(self.machine, self.run_pc, self.run_passes, self.run_advance)
        self.cycles = self.cycle_model(self.run_pc, end_pc, self.code) & 0xFFFFFFFF
        self.pc = end_pc & pc_mask(self.cfg)
        self.running = False
        self.out += encode_response(self.run_cmd, self.run_seq, LinkStatus.OK,
                                    run_payload(self.code, self.pc, self.cycles))

    def _byte(self, byte: int) -> None:
        if self.state == self.HUNT:
            if byte == REQUEST_SYNC:
                self.state, self.index, self.crc = self.HEADER, 0, CRC.initial_crc
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
                self.state = self.PAYLOAD if self.length else self.TRAILER
            return
        if self.state == self.PAYLOAD:
            self.crc = crc16_update(self.crc, byte)
            if self.index < self.cfg.max_payload:
                self.buffer.append(byte)
            self.index += 1
            if self.index == self.length:
                self.index, self.state = 0, self.TRAILER
            return
        # TRAILER: the CRC
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
        cmd = Cmd(cmd)
        spec = COMMANDS[cmd]
        if self.running and not spec.while_running:
            if cmd in RUN_COMMANDS and self.seq == self.run_seq and self.seq != 0:
                return None      # a repeated RUN of the active run: its answer comes when it ends
            return self._answer(LinkStatus.BUSY)
        if spec.length is not None and n != spec.length:
            return self._answer(LinkStatus.BAD_LENGTH)
        if spec.unit is not None:
            size = unit_bytes(spec.unit, cfg)
            if n < ADDRESS_BYTES or (n - ADDRESS_BYTES) % size:
                return self._answer(LinkStatus.BAD_LENGTH)
            addr, count = struct.unpack_from(ADDRESS_FORMAT, p)[0], (n - ADDRESS_BYTES) // size
            if addr + count > unit_depth(spec.unit, cfg):
                return self._answer(LinkStatus.ADDR_RANGE)
            self._bulk_write(spec.unit, addr, count, p[ADDRESS_BYTES:])
            return self._answer(LinkStatus.OK)
        return getattr(self, f"_{cmd.name.lower()}")(p)

    def _bulk_write(self, unit: Unit, addr: int, count: int, data: bytes) -> None:
        if unit is Unit.WORD:
            self.machine.tmem[addr:addr + count] = np.frombuffer(data, dtype=np.int8).reshape(count, self.cfg.lanes)
        elif unit is Unit.DATA:
            self.machine.write_data(addr, np.frombuffer(data, dtype=np.int8))
        elif unit is Unit.LABEL:
            self.machine.write_labels(addr, np.frombuffer(data, dtype=np.int8))
        else:
            self.machine.program[addr:addr + count] = list(struct.unpack(f"<{count}Q", data))

    def _ping(self, p: bytes) -> None:
        self._answer(LinkStatus.OK, ping_payload(self.cfg))

    def _status(self, p: bytes) -> None:
        self._answer(LinkStatus.OK, status_payload(self.running, self.code, self.pc, self.cycles, self.run_seq))

    def _read_tmem(self, p: bytes) -> None:
        addr, count = struct.unpack(READ_TMEM_FORMAT, p)
        if count * self.cfg.lanes > self.cfg.max_payload:
            return self._answer(LinkStatus.BAD_LENGTH)
        if addr + count > self.cfg.tmem_words:
            return self._answer(LinkStatus.ADDR_RANGE)
        return self._answer(LinkStatus.OK, self.machine.tmem[addr:addr + count].tobytes())

    def _write_tensor(self, p: bytes) -> None:
        slot, base, rows, cols, exp = struct.unpack(WRITE_TENSOR_FORMAT, p)
        limit = 1 << (self.cfg.exp_bits - 1)
        if slot >= self.cfg.tensor_slots or not -limit <= exp < limit:
            return self._answer(LinkStatus.ADDR_RANGE)
        self.machine.table[slot] = TensorEntry(base, rows, cols, exp)
        return self._answer(LinkStatus.OK)

    def _write_keys(self, p: bytes) -> None:
        self.machine.set_keys(*struct.unpack(WRITE_KEYS_FORMAT, p))
        return self._answer(LinkStatus.OK)

    def _read_counters(self, p: bytes) -> None:
        return self._answer(LinkStatus.OK, counters_payload(self.machine.counters))

    def _clear_counters(self, p: bytes) -> None:
        self.machine.clear_counters()
        return self._answer(LinkStatus.OK)

    def _read_tensor(self, p: bytes) -> None:
        if p[0] >= self.cfg.tensor_slots:
            return self._answer(LinkStatus.ADDR_RANGE)
        entry = self.machine.table[p[0]]
        return self._answer(LinkStatus.OK, entry_payload(entry.base, entry.rows, entry.cols, entry.exp))

    def _write_cursor(self, p: bytes) -> None:
        self.machine.set_cursor(*struct.unpack(CURSOR_FORMAT, p))
        return self._answer(LinkStatus.OK)

    def _progress(self, p: bytes) -> None:
        return self._answer(LinkStatus.OK, progress_payload(machine_progress(self.machine)))

    def _run(self, p: bytes) -> None:
        return self._start(struct.unpack(ADDRESS_FORMAT, p)[0], 1, 0)

    def _loop(self, p: bytes) -> None:
        return self._start(*struct.unpack(LOOP_FORMAT, p))

    def _start(self, pc: int, passes: int, advance: int) -> None:
        if pc >= self.cfg.program_depth or passes == 0 or advance > 1:
            return self._answer(LinkStatus.ADDR_RANGE)
        if self.seq == self.run_seq and self.seq != 0:     # repeated RUN: repeat the result
            return self._answer(LinkStatus.OK, run_payload(self.code, self.pc, self.cycles))
        self.running, self.run_seq, self.run_pc = True, self.seq, pc
        self.run_cmd, self.run_passes, self.run_advance = Cmd(self.cmd), passes, bool(advance)
        self.machine.passes = passes          # PROGRESS while the run is active
        self.code, self.pc, self.cycles = int(Status.OK), pc & pc_mask(self.cfg), 0
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


class PtyPeer:
    """``device`` served on the master side of a pseudo-terminal, as a board on a serial port at ``path``
    (the serial transport's tests; its frame timeout: 50 ms of quiet)."""

    def __init__(self, device: LinkDevice):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.device = device
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            serve_fd(self.device, self.master)
        except OSError:
            pass                          # the slave side closed

    def close(self) -> None:
        """Slave first: the server sees EIO and ends before its descriptor number can be reused."""
        os.close(self.slave)
        self.thread.join(timeout=5)
        os.close(self.master)
