"""One Device API over three transports: the simulated board, a real board, the golden model.

``open_device(target, cfg)`` with ``target``:

  sim                  the Verilator-simulated board (sim_board/): eoq_system.v
                       in a subprocess, host-link bytes over its stdin/stdout
                       pipes, driven by host.client.LinkClient.  Built on
                       first use (python -m sim_board.build), then reused.
  serial:PORT[@BAUD]   a board on a serial port (pyserial), LinkClient over it;
                       BAUD defaults to 3000000 (the FPGA top's UART).
  golden               golden_model.machine.Machine behind the same API (no
                       link: cycles and link bytes stay 0).

Every device offers what golden_model.program.ProgramTrainer needs
(set_tensor, write_tensor, read_tensor, load_program, set_keys, run), the
loss counters (read_counters, clear_counters), ``stats``
(:class:`DeviceStats`: core cycles of runs, host-link bytes in/out, frames,
retries, resent bytes), ``info`` (what PING answered) and close().  Link
devices PING on connect and raise host.client.ConfigMismatch when the
bitstream was built for another CoreConfig; ``link_faults=RATE`` injects
faults on their link (host/faults.py).
"""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass

import serial

from golden_model.config import CoreConfig, get_config
from golden_model.isa import Status
from golden_model.machine import Machine, MachineError
from protocol.link_model import machine_progress

from sim_board.build import BuildError, build

from .client import DeviceError, LinkClient, LinkError, SerialTransport
from .faults import FaultyTransport

DEFAULT_BAUD = 3_000_000


class DeviceNotFound(Exception):
    """No device answers where the target says (missing serial port, simulator failed to start)."""


@dataclass
class DeviceStats:
    runs: int = 0
    cycles: int = 0          # core cycles of all runs (as the device reports them)
    bytes_out: int = 0       # host -> device
    bytes_in: int = 0        # device -> host
    frames: int = 0
    retries: int = 0
    resent_bytes: int = 0    # bytes of request frames sent more than once
    resyncs: int = 0         # flushes after unanswered requests (host.client.LinkClient._resync)
    flush_bytes: int = 0
    poll_bytes: int = 0      # STATUS exchanges that found a run still busy (LinkStats.poll_bytes)

    def to_dict(self) -> dict:
        return asdict(self)

    def minus(self, other: "DeviceStats") -> "DeviceStats":
        return DeviceStats(**{k: v - getattr(other, k) for k, v in asdict(self).items()})

    def plus(self, other: "DeviceStats") -> "DeviceStats":
        return DeviceStats(**{k: v + getattr(other, k) for k, v in asdict(self).items()})


class Device:
    """Common part: the Machine-like API and statistics."""

    target = "?"

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        self._runs = 0
        self._cycles = 0
        self.info: dict = {}

    def run(self, pc: int = 0) -> int:
        cycles = self._run(pc)
        self._runs += 1
        self._cycles += cycles
        return cycles

    def loop(self, pc: int, passes: int, advance: bool) -> int:
        """``passes`` runs of the program at pc in one command (LOOP), with ``advance`` the step counting on."""
        cycles = self._loop(pc, passes, advance)
        self._runs += passes
        self._cycles += cycles
        return cycles

    @property
    def stats(self) -> DeviceStats:
        return DeviceStats(runs=self._runs, cycles=self._cycles)

    def adopt(self) -> None:
        """Take the device's present run state as the starting point (after reloading its memory)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GoldenDevice(Device):
    """The golden Machine (instruction level, no timing, no link)."""

    target = "golden"

    def __init__(self, cfg: CoreConfig):
        super().__init__(cfg)
        self.machine = Machine(cfg)
        self.info = {"target": "golden"}

    def set_tensor(self, slot, base, rows, cols, exp):
        self.machine.set_tensor(slot, base, rows, cols, exp)

    def write_tensor(self, slot, t):
        self.machine.write_tensor(slot, t)

    def read_tensor(self, slot):
        return self.machine.read_tensor(slot)

    def load_program(self, words, start=0):
        self.machine.load_program(words, start)

    def set_keys(self, seed, step):
        self.machine.set_keys(seed, step)

    def read_counters(self):
        return self.machine.read_counters()

    def clear_counters(self):
        self.machine.clear_counters()

    def write_data(self, addr, words):
        self.machine.write_data(addr, words)

    def write_labels(self, addr, labels):
        self.machine.write_labels(addr, labels)

    def set_cursor(self, epoch, train, eval):
        self.machine.set_cursor(epoch, train, eval)

    def progress(self):
        return machine_progress(self.machine)

    def _run(self, pc):
        return self._loop(pc, 1, False)

    def _loop(self, pc, passes, advance):
        try:
            self.machine.loop(pc, passes, advance)
        except MachineError as error:
            raise DeviceError(error.status, error.pc, 0) from None
        return 0


class LinkDevice(Device):
    """A device behind the host protocol (LinkClient over a transport).

    ``link_faults`` > 0 puts a host.faults.FaultyTransport (that rate per
    frame, generator seed ``fault_seed``) between the client and the line;
    ``faults`` then holds it (its ``counts``)."""

    def __init__(self, cfg: CoreConfig, transport, *, link_faults: float = 0.0, fault_seed: int = 0,
                 **client_options):
        super().__init__(cfg)
        self.transport = transport
        self.fault_seed = fault_seed
        self.faults = FaultyTransport(transport, rate=link_faults, seed=fault_seed) if link_faults else None
        self.client = LinkClient(self.faults or transport, cfg, **client_options)
        self.info = self.client.ping()
        self.client.status()

    def set_tensor(self, slot, base, rows, cols, exp):
        self.client.set_tensor(slot, base, rows, cols, exp)

    def write_tensor(self, slot, t):
        self.client.write_tensor(slot, t)

    def read_tensor(self, slot):
        return self.client.read_tensor(slot)

    def read_exponent(self, slot):
        return self.client.read_entry(slot).exp

    def load_program(self, words, start=0):
        self.client.load_program(words, start)

    def set_keys(self, seed, step):
        self.client.set_keys(seed, step)

    def read_counters(self):
        return self.client.read_counters()

    def clear_counters(self):
        self.client.clear_counters()

    def write_data(self, addr, words):
        self.client.write_data(addr, words)

    def write_labels(self, addr, labels):
        self.client.write_labels(addr, labels)

    def set_cursor(self, epoch, train, eval):
        self.client.set_cursor(epoch, train, eval)

    def progress(self):
        return self.client.progress()

    def _run(self, pc):
        return self.client.run(pc)

    def _loop(self, pc, passes, advance):
        return self.client.loop(pc, passes, advance)

    def adopt(self) -> None:
        self.client.forget_runs()

    @property
    def stats(self) -> DeviceStats:
        s = self.client.stats
        return DeviceStats(runs=self._runs, cycles=self._cycles, bytes_out=s.bytes_out, bytes_in=s.bytes_in,
                           frames=s.frames, retries=s.retries, resent_bytes=s.resent_bytes, resyncs=s.resyncs,
                           flush_bytes=s.flush_bytes, poll_bytes=s.poll_bytes)

    def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()


# ---- the simulated board --------------------------------------------------------------------------

class PipeTransport:
    """The sim_board harness as a subprocess; bytes over its stdin/stdout pipes."""

    def __init__(self, exe, args=()):
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([str(exe), "--stats", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, bufsize=0)
        self._in, self._out = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        self.harness_stats: dict = {}
        self.started = time.perf_counter()

    def _dead(self) -> LinkError:
        code = self.proc.poll()
        return LinkError(f"the simulated board exited (code {code}): {self._stderr_text()[-500:]}")

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._out, view):]
        except BrokenPipeError:
            raise self._dead() from None

    def read(self, n: int, timeout: float) -> bytes:
        ready, _, _ = select.select([self._in], [], [], max(timeout, 0.0))
        if not ready:
            return b""
        data = os.read(self._in, n)
        if not data:
            raise self._dead()
        return data

    def close(self) -> None:
        """EOF to the harness; it finishes and prints its statistics (harness_stats)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.harness_stats = parse_harness_stats(self._stderr_text())
        self._stderr.close()


def parse_harness_stats(text: str) -> dict:
    """The ``sim_board: cycles N wall_seconds S ...`` line the harness prints on exit."""
    for line in text.splitlines():
        if line.startswith("sim_board: cycles "):
            words = line.split()[1:]
            return {k: float(v) if "." in v else int(v) for k, v in zip(words[::2], words[1::2])}
    return {}


class SimDevice(LinkDevice):
    target = "sim"

    def __init__(self, cfg: CoreConfig, exe=None, log=None, **client_options):
        if exe is None:
            try:
                exe = build(cfg, log=log or (lambda message: print(message, flush=True)))
            except BuildError as error:
                raise DeviceNotFound(str(error)) from None
        transport = PipeTransport(exe)
        client_options.setdefault("timeout", 0.5)
        client_options.setdefault("run_timeout", 600.0)
        try:
            super().__init__(cfg, transport, **client_options)
        except BaseException:
            transport.close()
            raise

    @property
    def harness_stats(self) -> dict:
        """Simulated cycles and wall time of the harness (after close())."""
        return self.transport.harness_stats


# ---- a board on a serial port ---------------------------------------------------------------------

def parse_serial_target(target: str) -> tuple[str, int]:
    spec = target[len("serial:"):]
    if not spec:
        raise ValueError("serial target needs a port: serial:PORT[@BAUD], e.g. serial:/dev/ttyUSB0@3000000")
    port, _, baud = spec.partition("@")
    if baud:
        try:
            rate = int(baud)
        except ValueError:
            raise ValueError(f"bad baud rate {baud!r} in {target!r}: serial:PORT[@BAUD]") from None
        if rate <= 0:
            raise ValueError(f"bad baud rate {baud!r} in {target!r}")
        return port, rate
    return port, DEFAULT_BAUD


class SerialDevice(LinkDevice):
    target = "serial"

    def __init__(self, cfg: CoreConfig, port: str, baud: int = DEFAULT_BAUD, **client_options):
        if not os.path.exists(port) and "://" not in port:
            raise DeviceNotFound(f"no board found on {port}: no such device (is the board plugged in? "
                                 f"ls /dev/ttyUSB* /dev/ttyACM*)")
        try:
            transport = SerialTransport(port, baud)
        except (serial.SerialException, OSError) as error:
            raise DeviceNotFound(f"no board found on {port}: {error}") from None
        # A byte takes 10 bit times; leave room for a full frame plus the core's answer.
        client_options.setdefault("timeout", max(1.0, 3 * (cfg.max_payload + 16) * 10 / baud))
        try:
            super().__init__(cfg, transport, **client_options)
        except LinkError as error:
            transport.close()
            if error.status is None and error.cmd is not None and "PING" in str(error):
                raise DeviceNotFound(f"no board found on {port} at {baud} baud: {error}") from None
            raise
        except BaseException:
            transport.close()
            raise
        self.port, self.baud = port, baud


TARGETS = ("sim", "golden", "serial:PORT[@BAUD]")


def is_device_target(target: str) -> bool:
    return target in ("sim", "golden") or target.startswith("serial:")


def open_device(target: str = "sim", cfg: CoreConfig | None = None, **options) -> Device:
    """Open ``target`` (sim | golden | serial:PORT[@BAUD]) for configuration ``cfg``."""
    if cfg is None:
        cfg = get_config("default")
    if target == "sim":
        return SimDevice(cfg, **options)
    if target == "golden":
        return GoldenDevice(cfg)
    if target.startswith("serial:"):
        port, baud = parse_serial_target(target)
        return SerialDevice(cfg, port, baud, **options)
    raise ValueError(f"unknown device target {target!r}; choose sim, golden or serial:PORT[@BAUD]")


__all__ = ["Device", "DeviceError", "DeviceNotFound", "DeviceStats", "GoldenDevice", "LinkDevice", "SimDevice",
           "SerialDevice", "PipeTransport", "open_device", "is_device_target", "parse_serial_target", "Status"]
