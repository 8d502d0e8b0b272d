"""Fault injection on the host link: :class:`FaultyTransport` wraps any transport.

The rate is **per frame**: every frame that crosses the link, a request the
host writes or an answer the device sends, is hit by one fault with
probability ``rate``, drawn from a generator seeded with ``seed``.  The kind
is drawn uniformly from ``kinds``:

  flip       one bit of one byte of the frame is inverted
  drop       the frame is lost
  duplicate  the frame arrives twice
  truncate   the frame is cut at a random byte; the rest is lost
  stall      the line pauses for ``stall`` seconds at a random byte of the frame

A request is one ``write`` (host.client.LinkClient writes each frame, and
each resynchronization flush, in one call).  Answers are cut out of the byte
stream the device sends by their header (sync 0x5A, length at offset 4), so a
fault hits a whole answer; bytes before a sync byte pass unchanged.  The same
injector serves the simulated board (eoq-train --link-faults), the pty peer
and the in-process loopback of the tests.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from protocol.wire import RESPONSE_OVERHEAD, RESPONSE_SYNC

FAULT_KINDS = ("flip", "drop", "duplicate", "truncate", "stall")
DIRECTIONS = ("tx", "rx")        # tx: host -> device (requests), rx: device -> host (answers)


@dataclass
class FaultCounts:
    """Faults injected per direction and kind, and the frames seen."""

    frames: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    injected: dict[str, dict[str, int]] = field(
        default_factory=lambda: {d: dict.fromkeys(FAULT_KINDS, 0) for d in DIRECTIONS})

    @property
    def total(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.injected.values())

    def to_dict(self) -> dict:
        return {"frames": dict(self.frames), "total": self.total,
                "injected": {d: dict(kinds) for d, kinds in self.injected.items()}}


class FaultyTransport:
    """``transport`` with faults at ``rate`` per frame (module docstring) in the ``directions`` given."""

    def __init__(self, transport, *, rate: float, seed: int = 0, kinds=FAULT_KINDS, stall: float = 0.02,
                 directions=DIRECTIONS):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1] (a probability per frame), got {rate}")
        unknown = sorted(set(kinds) - set(FAULT_KINDS)) + sorted(set(directions) - set(DIRECTIONS))
        if unknown:
            raise ValueError(f"unknown fault kinds or directions {unknown}; kinds: {', '.join(FAULT_KINDS)}")
        self.inner = transport
        self.rate, self.kinds, self.stall, self.directions = rate, tuple(kinds), stall, tuple(directions)
        self.rng = np.random.default_rng(seed)
        self.counts = FaultCounts()
        self._raw = bytearray()          # answer bytes read from the device, not yet cut into frames
        self._queue: list[tuple[float, bytes]] = []     # answer bytes for the host: (release time, bytes)

    # -- drawing --
    def _fault(self, direction: str, size: int) -> tuple[str | None, int]:
        """(kind or None, byte position) for the next frame of ``size`` bytes in ``direction``."""
        self.counts.frames[direction] += 1
        if direction not in self.directions or not self.kinds or self.rng.random() >= self.rate:
            return None, 0
        kind = self.kinds[int(self.rng.integers(len(self.kinds)))]
        self.counts.injected[direction][kind] += 1
        return kind, int(self.rng.integers(max(size, 1)))

    def _flip(self, frame: bytes, at: int) -> bytes:
        data = bytearray(frame)
        data[at] ^= 1 << int(self.rng.integers(8))
        return bytes(data)

    # -- host -> device --
    def write(self, data: bytes) -> None:
        data = bytes(data)
        kind, at = self._fault("tx", len(data))
        if kind == "flip":
            self.inner.write(self._flip(data, at))
        elif kind == "duplicate":
            self.inner.write(data + data)
        elif kind == "truncate":
            self.inner.write(data[:at])
        elif kind == "stall":
            self.inner.write(data[:at])
            time.sleep(self.stall)
            self.inner.write(data[at:])
        elif kind != "drop":
            self.inner.write(data)

    # -- device -> host --
    def _cut(self) -> bytes | None:
        """The next whole answer frame (or bytes before a sync byte) from the raw stream, if complete."""
        start = self._raw.find(RESPONSE_SYNC)
        if start != 0:
            passed = bytes(self._raw if start < 0 else self._raw[:start])
            del self._raw[:len(passed)]
            return passed or None
        if len(self._raw) < 6:
            return None
        size = RESPONSE_OVERHEAD + struct.unpack_from("<H", self._raw, 4)[0]
        if len(self._raw) < size:
            return None
        frame = bytes(self._raw[:size])
        del self._raw[:size]
        return frame

    def _queue_bytes(self, data: bytes, delay: float = 0.0) -> None:
        """Queue answer bytes for the host, never ahead of bytes a stall holds back."""
        if data:
            release = max([time.monotonic()] + [t for t, _ in self._queue[-1:]]) + delay
            self._queue.append((release, data))

    def _deliver(self, frame: bytes) -> None:
        if frame[0] != RESPONSE_SYNC:
            self._queue_bytes(frame)
            return
        kind, at = self._fault("rx", len(frame))
        if kind == "flip":
            self._queue_bytes(self._flip(frame, at))
        elif kind == "duplicate":
            self._queue_bytes(frame + frame)
        elif kind == "truncate":
            self._queue_bytes(frame[:at])
        elif kind == "stall":
            self._queue_bytes(frame[:at])
            self._queue_bytes(frame[at:], self.stall)
        elif kind != "drop":
            self._queue_bytes(frame)

    def _take(self, n: int) -> bytes:
        """Up to ``n`` released bytes from the head of the queue."""
        out = bytearray()
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now and len(out) < n:
            release, data = self._queue.pop(0)
            room = n - len(out)
            out += data[:room]
            if len(data) > room:
                self._queue.insert(0, (release, data[room:]))
        return bytes(out)

    def read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            out = self._take(n)
            if out:
                return out
            frame = self._cut()
            if frame is not None:
                self._deliver(frame)
                continue
            now = time.monotonic()
            if now >= deadline:
                return b""
            until = min(deadline, self._queue[0][0]) if self._queue else deadline
            data = self.inner.read(4096, until - now)
            if data:
                self._raw += data
            elif not self._queue:
                return b""              # the line is quiet (the inner transport waited as it saw fit)
            else:
                time.sleep(max(until - time.monotonic(), 0.0))     # stalled bytes are due then

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
