"""The host driver of the host link (docs/protocol.md): :class:`LinkClient`.

A request/response driver over any ``transport`` with ``write(bytes)`` and
``read(n, timeout) -> bytes`` (``b""`` means nothing arrived within
``timeout`` seconds): resends, sequence numbers, safe RUN retries and
statistics.  The wire format itself is the contract module protocol.wire,
shared with the gateware.  LinkClient also offers the device API
golden_model.program.ProgramTrainer uses (set_tensor, write_tensor,
read_tensor, load_program, run), so the training flow runs unchanged over a
serial line.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import numpy as np
import serial

from golden_model.config import CONFIGS, CoreConfig
from golden_model.isa import STATUS_HELP, Status
from golden_model.machine import LossCounters, TensorEntry, check_cursor, check_passes, words_per_row
from golden_model.prng import check_word
from golden_model.quant import QTensor
from protocol.wire import (ADDRESS_BYTES, ADDRESS_FORMAT, INSTRUCTION_BYTES, LINK_STATUS_HELP, PING_FIELDS,
                           PING_PAYLOAD_BYTES, READ_TMEM_FORMAT, REQUEST_OVERHEAD, RESPONSE_OVERHEAD, RESPONSE_SYNC,
                           WRITE_KEYS_FORMAT, WRITE_TENSOR_FORMAT,
                           Cmd, DeviceStatus, FrameError, LinkStatus, Progress, Response, check_protocol_fit,
                           command_name, cursor_payload, decode_response, encode_request, loop_payload, parse_counters,
                           parse_entry, parse_ping, parse_progress, parse_run, parse_status, ping_payload)

# ---- errors -------------------------------------------------------------------------------------

class LinkError(Exception):
    """The link failed: the device refused a request (``status``) or no valid answer came (``status`` None)."""

    def __init__(self, message: str, cmd: int | None = None, status: LinkStatus | None = None):
        super().__init__(message)
        self.cmd, self.status = cmd, status


class DeviceError(Exception):
    """A run ended with a non-OK golden_model.isa.Status."""

    def __init__(self, status, pc: int, cycles: int):
        help_text = STATUS_HELP.get(status, "unknown status code") if isinstance(status, Status) else \
            "unknown status code"
        name = status.name if isinstance(status, Status) else f"code {status}"
        super().__init__(f"run stopped with {name} at pc {pc} after {cycles} cycles: {help_text}")
        self.status, self.pc, self.cycles = status, pc, cycles


class ConfigMismatch(LinkError):
    """PING answered a configuration other than the host's."""


class DeviceReset(LinkError):
    """The device's run state is not the one the host left: it was reset (or another host ran a program)."""


class _NoResponse(Exception):
    pass


class _Corrupt(Exception):
    pass


# ---- transports ---------------------------------------------------------------------------------

class SerialTransport:
    """pyserial port as a transport (``port`` e.g. /dev/ttyUSB0)."""

    def __init__(self, port: str, baud: int = 115200):
        self.serial = serial.Serial(port, baud, timeout=0)

    def write(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def read(self, n: int, timeout: float) -> bytes:
        self.serial.timeout = max(timeout, 0)
        first = self.serial.read(1)
        if not first:
            return b""
        self.serial.timeout = 0
        return first + self.serial.read(max(n - 1, 0))

    def close(self) -> None:
        self.serial.close()


# ---- client -------------------------------------------------------------------------------------

#: Largest frame length field: a flush of this many zeros (plus the overhead) completes any frame.
MAX_FRAME_LENGTH = 0xFFFF
#: Each silence doubles the wait for the next answer, up to timeout * 2**MAX_BACKOFF.
MAX_BACKOFF = 4


@dataclass
class LinkStats:
    frames: int = 0          # request frames sent (retries included)
    retries: int = 0
    bytes_out: int = 0       # everything written to the line, flushes included
    bytes_in: int = 0
    resent_bytes: int = 0    # bytes of request frames sent more than once
    resyncs: int = 0         # flushes after an unanswered request
    flush_bytes: int = 0     # zeros those flushes wrote
    stale: int = 0           # well-formed responses dropped (other seq: duplicates, late answers)
    corrupt: int = 0         # responses with a bad CRC or malformed header
    poll_bytes: int = 0      # both ways, STATUS exchanges that found the awaited run still busy: a run that
                             # outlasts the answer timeout (a long LOOP on a slow simulated core) costs these


class LinkClient:
    """Request/response driver of the host protocol over ``transport``.

    timeout      seconds to wait for an answer before resending
    retries      resends after BAD_CRC / TIMEOUT answers, corrupted answers or silence
    run_timeout  seconds a run (a LOOP: each pass) may take before run() gives up
    Sequence numbers run 1..255 (0 is the device's "no run yet"); answers with
    another seq are stale (duplicates, late answers) and dropped.

    A request that goes unanswered may have left the device inside a partial
    frame (a truncated request, or one a corrupted byte started), which would
    swallow the resend: before resending, the client flushes zeros, which
    complete any such frame and never start one (:meth:`_resync`).  A device
    needs time to consume a flush (and may just be slow), so each silence
    doubles the wait for the next answer (up to 2**MAX_BACKOFF x timeout).

    Before every RUN the client asks STATUS: the device's run_seq must be the
    seq of the client's last RUN.  A device that was reset reports 0 (the
    client never sends seq 0), so a mismatch raises :class:`DeviceReset`
    instead of running a program on memory that may be lost.
    """

    def __init__(self, transport, cfg: CoreConfig, timeout: float = 1.0, retries: int = 4,
                 run_timeout: float = 60.0, drain_timeout: float = 0.02):
        check_protocol_fit(cfg)
        self.transport, self.cfg = transport, cfg
        self.timeout, self.retries, self.run_timeout, self.drain_timeout = timeout, retries, run_timeout, drain_timeout
        self.stats = LinkStats()
        self._seq = 0
        self._rx = bytearray()
        self._table: dict[int, TensorEntry] = {}
        self._run_seq: int | None = None       # seq of this client's last RUN (None: none yet)

    # -- framing --
    def _next_seq(self, avoid: int | None = None) -> int:
        while True:
            self._seq = self._seq % 255 + 1
            if self._seq != avoid:
                return self._seq

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._rx) < n:
            data = self.transport.read(n - len(self._rx), max(deadline - time.monotonic(), 0.0))
            if not data:
                raise _NoResponse()
            self.stats.bytes_in += len(data)
            self._rx += data

    def _drain(self) -> None:
        """Drop what is buffered and whatever arrives until the line is quiet."""
        self._rx.clear()
        while True:
            data = self.transport.read(4096, self.drain_timeout)
            if not data:
                return
            self.stats.bytes_in += len(data)

    def _await(self, cmd: int, seq: int, timeout: float) -> Response:
        """The next well-formed answer to (cmd, seq); raises _NoResponse or _Corrupt."""
        try:
            return self._await_frame(cmd, seq, timeout)
        except _NoResponse:
            # A partial frame still buffered (a corrupted length field, a truncated answer) would
            # swallow every later answer while waiting for bytes that never come: drop its sync
            # byte so the next attempt rescans what followed it.
            if self._rx:
                del self._rx[:1]
            raise

    def _await_frame(self, cmd: int, seq: int, timeout: float) -> Response:
        deadline = time.monotonic() + timeout
        limit = max(self.cfg.max_payload, PING_PAYLOAD_BYTES)
        while True:
            start = self._rx.find(RESPONSE_SYNC)
            if start < 0:
                self._rx.clear()
                self._fill(1, deadline)
                continue
            del self._rx[:start]
            self._fill(6, deadline)
            r_cmd, r_seq, r_status, length = struct.unpack_from("<BBBH", self._rx, 1)
            if length > limit or r_status not in LinkStatus._value2member_map_:
                del self._rx[:1]       # not a response header: resynchronize on the next 0x5A
                continue
            self._fill(RESPONSE_OVERHEAD + length, deadline)
            frame = bytes(self._rx[:RESPONSE_OVERHEAD + length])
            try:
                response = decode_response(frame)
            except FrameError as error:
                self.stats.corrupt += 1
                raise _Corrupt(str(error)) from None
            del self._rx[:len(frame)]
            if r_seq == seq and (r_cmd == cmd or r_status in (LinkStatus.BAD_CRC, LinkStatus.TIMEOUT)):
                return response
            self.stats.stale += 1

    def _send(self, frame: bytes, resend: bool = False) -> None:
        self.stats.frames += 1
        self.stats.bytes_out += len(frame)
        if resend:
            self.stats.retries += 1
            self.stats.resent_bytes += len(frame)
        self.transport.write(frame)

    def _resync(self, silences: int) -> None:
        """Bring the device's parser back to hunting for a frame after ``silences`` unanswered attempts.

        Zeros complete a partial frame the device holds and are skipped otherwise.  The first time,
        max_payload + overhead of them complete any frame whose length field is genuine (a truncated
        request); after that, 65535 + overhead complete any frame at all (one a corrupted byte
        started).  The answers this produces are drained."""
        count = (self.cfg.max_payload if silences <= 1 else MAX_FRAME_LENGTH) + REQUEST_OVERHEAD
        self.stats.resyncs += 1
        self.stats.flush_bytes += count
        self.stats.bytes_out += count
        self.transport.write(bytes(count))
        self._drain()

    def request(self, cmd: int, payload: bytes = b"", seq: int | None = None) -> bytes:
        """One transaction with resends; returns the OK answer's payload or raises LinkError."""
        seq = self._next_seq() if seq is None else seq
        frame = encode_request(cmd, seq, payload)
        problem = ""
        silences = 0
        for attempt in range(self.retries + 1):
            self._send(frame, resend=attempt > 0)
            wait = self.timeout * 2 ** min(silences, MAX_BACKOFF)
            try:
                response = self._await(cmd, seq, wait)
            except _NoResponse:
                problem = f"no answer within {wait:g} s"
                silences += 1
                if attempt < self.retries:
                    self._resync(silences)
                continue
            except _Corrupt as error:
                problem = f"corrupted answer ({error})"
                self._drain()
                continue
            status = LinkStatus(response.status)
            if status in (LinkStatus.BAD_CRC, LinkStatus.TIMEOUT):
                problem = f"device answered {status.name}: {LINK_STATUS_HELP[status]}"
                continue
            if status != LinkStatus.OK:
                raise LinkError(f"{command_name(cmd)} refused with {status.name}: {LINK_STATUS_HELP[status]}",
                                cmd, status)
            return response.payload
        raise LinkError(f"{command_name(cmd)} failed after {self.retries + 1} attempts: {problem}", cmd)

    # -- commands --
    def ping(self) -> dict:
        """Read the bitstream's configuration and raise ConfigMismatch when it differs from the host's."""
        info = parse_ping(self.request(Cmd.PING))
        want = parse_ping(ping_payload(self.cfg))
        diff = {k: (info[k], want[k]) for k in PING_FIELDS if info[k] != want[k]}
        if diff:
            built = ", ".join(f"{k}={v[0]}" for k, v in diff.items())
            host = ", ".join(f"{k}={v[1]}" for k, v in diff.items())
            named = [c.name for c in CONFIGS.values() if parse_ping(ping_payload(c)) == info]
            hint = f"--config {named[0]}" if named else "the matching --config"
            raise ConfigMismatch(f"bitstream built for {built}; host configured for {host} "
                                 f"(configuration {self.cfg.name!r}): rebuild the bitstream or use {hint}",
                                 Cmd.PING)
        return info

    def status(self) -> DeviceStatus:
        return parse_status(self.request(Cmd.STATUS))

    def forget_runs(self) -> None:
        """Expect no particular run_seq any more (the device was reset and its memory reloaded)."""
        self._run_seq = None

    def check_run_state(self) -> DeviceStatus:
        """STATUS, checked against this client's runs: raise DeviceReset if the device is busy or its
        run_seq is not the seq of the client's last RUN (0 after a reset)."""
        st = self.status()
        if self._run_seq is not None and (st.busy or st.run_seq != self._run_seq):
            state = "busy with a run" if st.busy else f"run_seq {st.run_seq}"
            raise DeviceReset(f"the device reports {state} where the host's last RUN had seq {self._run_seq}: "
                              f"it was reset (or another host ran a program) since, so its memory cannot be "
                              f"trusted", Cmd.STATUS)
        return st

    def write_tmem(self, addr: int, words) -> None:
        """Write int8 words (array-like of shape (n, lanes)) from word ``addr`` on."""
        words = np.asarray(words).astype(np.int8).reshape(-1, self.cfg.lanes)
        per_frame = (self.cfg.max_payload - ADDRESS_BYTES) // self.cfg.lanes
        for i in range(0, len(words), per_frame):
            self.request(Cmd.WRITE_TMEM, struct.pack(ADDRESS_FORMAT, addr + i) + words[i:i + per_frame].tobytes())

    def read_tmem(self, addr: int, count: int) -> np.ndarray:
        """``count`` words from ``addr`` as an int8 array (count, lanes)."""
        lanes = self.cfg.lanes
        per_frame = self.cfg.max_payload // lanes
        chunks = []
        for i in range(0, count, per_frame):
            n = min(per_frame, count - i)
            data = self.request(Cmd.READ_TMEM, struct.pack(READ_TMEM_FORMAT, addr + i, n))
            if len(data) != n * lanes:
                raise LinkError(f"READ_TMEM answered {len(data)} bytes for {n} words", Cmd.READ_TMEM)
            chunks.append(np.frombuffer(data, dtype=np.int8).reshape(n, lanes))
        return np.concatenate(chunks) if chunks else np.zeros((0, lanes), dtype=np.int8)

    def write_entry(self, slot: int, entry: TensorEntry) -> None:
        self.request(Cmd.WRITE_TENSOR, struct.pack(WRITE_TENSOR_FORMAT, slot, entry.base, entry.rows, entry.cols, entry.exp))
        self._table[slot] = TensorEntry(entry.base, entry.rows, entry.cols, entry.exp)

    def read_entry(self, slot: int) -> TensorEntry:
        data = self.request(Cmd.READ_TENSOR, bytes([slot & 0xFF]))
        entry = TensorEntry(*parse_entry(data))
        self._table[slot] = entry
        return entry

    def write_program(self, addr: int, words) -> None:
        per_frame = (self.cfg.max_payload - ADDRESS_BYTES) // INSTRUCTION_BYTES
        words = [int(w) for w in words]
        for i in range(0, len(words), per_frame):
            chunk = words[i:i + per_frame]
            self.request(Cmd.WRITE_PROGRAM, struct.pack(ADDRESS_FORMAT, addr + i) + struct.pack(f"<{len(chunk)}Q", *chunk))

    def run(self, pc: int = 0) -> int:
        """Run from ``pc`` until HALT; return the cycle count or raise DeviceError.

        Checks the device's run state first (check_run_state).  Resending RUN
        with the same seq is safe: the device answers a repeated RUN with the
        result of the run it already made (docs/protocol.md)."""
        return self._run(Cmd.RUN, struct.pack(ADDRESS_FORMAT, pc), pc, 1)

    def loop(self, pc: int, passes: int, advance: bool) -> int:
        """Run the program at ``pc`` ``passes`` times, with ``advance`` counting the step register on after
        each pass (a training epoch on the resident data set); the cycle count, or DeviceError.  Resent
        like RUN."""
        check_passes(passes)
        return self._run(Cmd.LOOP, loop_payload(pc, passes, advance), pc, passes)

    def _run(self, cmd: Cmd, payload: bytes, pc: int, passes: int) -> int:
        """Start a run (RUN or LOOP) and await its answer, ``run_timeout`` seconds per pass at most."""
        before = self.check_run_state().run_seq
        seq = self._next_seq(avoid=before)
        frame = encode_request(cmd, seq, payload)
        deadline = time.monotonic() + self.run_timeout * passes
        attempts, problem = 0, ""
        send = True
        while True:
            if send:
                attempts += 1
                if attempts > self.retries + 1:
                    raise LinkError(f"{cmd.name} failed after {self.retries + 1} attempts: {problem}", cmd)
                self._send(frame, resend=attempts > 1)
            send = True
            try:
                response = self._await(cmd, seq, self.timeout)
            except _NoResponse:
                problem = f"no answer within {self.timeout} s"     # STATUS (below) resyncs if need be
            except _Corrupt as error:
                problem = f"corrupted answer ({error})"
                self._drain()
            else:
                status = LinkStatus(response.status)
                if status == LinkStatus.OK:
                    self._run_seq = seq
                    code, end_pc, cycles = parse_run(response.payload)
                    if code != Status.OK:
                        raise DeviceError(code, end_pc, cycles)
                    return cycles
                if status not in (LinkStatus.BAD_CRC, LinkStatus.TIMEOUT):
                    raise LinkError(f"{cmd.name} refused with {status.name}: {LINK_STATUS_HELP[status]}", cmd, status)
                problem = f"device answered {status.name}"
                continue
            send = self._run_lost(cmd, seq, before, pc, deadline)

    def _run_lost(self, cmd: Cmd, seq: int, before: int, pc: int, deadline: float) -> bool:
        """No usable RUN answer: did the device start this run?  True: resend the RUN."""
        before_bytes = self.stats.bytes_in + self.stats.bytes_out
        st = self.status()
        if st.run_seq == seq:                # the run started: its answer was lost or is still to come
            if not st.busy:
                return True                  # a resend with this seq only repeats the result
            self.stats.poll_bytes += self.stats.bytes_in + self.stats.bytes_out - before_bytes
            if time.monotonic() > deadline:
                raise LinkError(f"run from pc {pc} still busy after its deadline ({self.run_timeout} s per pass) "
                                f"(pc {st.pc}, {st.cycles} cycles)", cmd)
            return False                     # the answer comes when the run ends
        if st.run_seq != before:             # neither this run nor the one before: the device was reset
            raise DeviceReset(f"{cmd.name} (seq {seq}) went unanswered and the device now reports run_seq {st.run_seq} "
                              f"(it was {before}): it was reset during the run, so its memory cannot be trusted",
                              cmd)
        return True                          # the RUN frame was lost: send it again

    # -- the Machine-like device API (golden_model.program.ProgramTrainer) --
    def set_tensor(self, slot: int, base: int, rows: int, cols: int, exp: int) -> None:
        self.write_entry(slot, TensorEntry(base, rows, cols, exp))

    def _entry(self, slot: int) -> TensorEntry:
        return self._table[slot] if slot in self._table else self.read_entry(slot)

    def write_tensor(self, slot: int, t: QTensor) -> None:
        entry = self._entry(slot)
        if t.q.shape != (entry.rows, entry.cols):
            raise ValueError(f"tensor slot {slot} holds {entry.rows}x{entry.cols}, got shape {t.q.shape}")
        stride = words_per_row(entry.cols, self.cfg.lanes)
        padded = np.zeros((entry.rows, stride * self.cfg.lanes), dtype=np.int8)
        padded[:, :entry.cols] = t.q
        self.write_tmem(entry.base, padded.reshape(-1, self.cfg.lanes))
        self.write_entry(slot, TensorEntry(entry.base, entry.rows, entry.cols, int(t.exp)))

    def read_tensor(self, slot: int) -> QTensor:
        entry = self.read_entry(slot)       # the exponent changes on the device: always read it
        stride = words_per_row(entry.cols, self.cfg.lanes)
        words = self.read_tmem(entry.base, entry.rows * stride)
        q = words.reshape(entry.rows, stride * self.cfg.lanes)[:, :entry.cols].copy()
        return QTensor(q, entry.exp)

    def load_program(self, words, start: int = 0) -> None:
        self.write_program(start, words)

    def read_counters(self) -> LossCounters:
        """The device's loss counters (LOSS adds to them)."""
        return LossCounters(*parse_counters(self.request(Cmd.READ_COUNTERS)))

    def clear_counters(self) -> None:
        """The device's loss counters start again from 0."""
        self.request(Cmd.CLEAR_COUNTERS)

    def write_data(self, addr: int, words) -> None:
        """Write data-memory words (array-like (n, lanes) int8) from word ``addr`` on: the resident set."""
        self._bulk(Cmd.WRITE_DATA, addr, np.asarray(words).astype(np.int8).reshape(-1, self.cfg.lanes), self.cfg.lanes)

    def write_labels(self, addr: int, labels) -> None:
        """Write label-memory entries (int8 classes) from sample ``addr`` on."""
        self._bulk(Cmd.WRITE_LABELS, addr, np.asarray(labels).astype(np.int8).reshape(-1, 1), 1)

    def _bulk(self, cmd: Cmd, addr: int, units: np.ndarray, size: int) -> None:
        per_frame = (self.cfg.max_payload - ADDRESS_BYTES) // size
        for i in range(0, len(units), per_frame):
            self.request(cmd, struct.pack(ADDRESS_FORMAT, addr + i) + units[i:i + per_frame].tobytes())

    def set_cursor(self, epoch: int, train: int, eval: int) -> None:
        """Where the LOAD engine's streams continue (golden_model.machine.Cursor)."""
        check_cursor(epoch, train, eval)
        self.request(Cmd.WRITE_CURSOR, cursor_payload(epoch, train, eval))

    def progress(self) -> Progress:
        """Step, data cursor and passes left (served while a run is active: the progress of a LOOP)."""
        return parse_progress(self.request(Cmd.PROGRESS))

    def set_keys(self, seed: int, step: int) -> None:
        """The seed and step the device's step keys derive from (golden_model.prng.step_key)."""
        check_word("seed", seed)
        check_word("step", step)
        self.request(Cmd.WRITE_KEYS, struct.pack(WRITE_KEYS_FORMAT, seed, step))
