"""The wire protocol of the host link (docs/protocol.md): one home for every shared fact.

Imported by the gateware (hw/host_link.py), its reference model
(protocol/link_model.py) and the host driver (host/client.py).  Frames are

    request  0xA5 cmd seq len(2) payload crc(2)           crc over cmd .. payload
    response 0x5A cmd seq status len(2) payload crc(2)    crc over cmd .. payload

little-endian, with CRC-16/CCITT-FALSE (:data:`CRC`, amaranth.lib.crc's
catalog entry; :func:`crc16` is its software twin).  :data:`COMMANDS` is the
command table: what each command's request carries, whether it is served
while a run is active, and what its OK answer holds.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from amaranth.lib.crc import catalog

from golden_model.config import CoreConfig
from golden_model.isa import Status

REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A
MAGIC = b"EOQ1"
REQUEST_OVERHEAD = 7    # sync, cmd, seq, len(2), crc(2)
RESPONSE_OVERHEAD = 8   # sync, cmd, seq, link status, len(2), crc(2)
ADDRESS_BYTES = 2       # the address that leads WRITE_TMEM / WRITE_PROGRAM payloads
INSTRUCTION_BYTES = 8

#: The frame check: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first, no reflection, no final
#: XOR), sent low byte first.  The gateware instantiates amaranth.lib.crc.Processor with it.
CRC = catalog.CRC16_CCITT_FALSE


class Cmd(enum.IntEnum):
    PING = 0x01
    WRITE_TMEM = 0x02
    READ_TMEM = 0x03
    WRITE_TENSOR = 0x04
    READ_TENSOR = 0x05
    WRITE_PROGRAM = 0x06
    RUN = 0x07
    STATUS = 0x08
    WRITE_KEYS = 0x09
    READ_COUNTERS = 0x0A
    CLEAR_COUNTERS = 0x0B
    WRITE_DATA = 0x0C
    WRITE_LABELS = 0x0D
    WRITE_CURSOR = 0x0E
    LOOP = 0x0F
    PROGRESS = 0x10


class LinkStatus(enum.IntEnum):
    OK = 0
    BAD_CRC = 1
    BAD_COMMAND = 2
    BAD_LENGTH = 3
    ADDR_RANGE = 4
    BUSY = 5
    TIMEOUT = 6


LINK_STATUS_HELP = {
    LinkStatus.BAD_CRC: "the request frame arrived corrupted (CRC mismatch); nothing was changed",
    LinkStatus.BAD_COMMAND: "unknown command byte; host and bitstream speak different protocol versions?",
    LinkStatus.BAD_LENGTH: "payload length beyond max_payload or not what the command takes",
    LinkStatus.ADDR_RANGE: "TMEM address, program address, tensor slot, pc or exponent out of range "
                           "for the bitstream's configuration",
    LinkStatus.BUSY: "a run is active; only STATUS and PING are served until it ends",
    LinkStatus.TIMEOUT: "the request frame stalled mid-way and was discarded (bytes lost on the line?)",
}

#: Payload formats (struct) of the fixed-size payloads.
PING_FORMAT = "<4sBBBHHBHBH"        # magic, lanes, rows, cols, tmem_words, acc_words, slots, depth, exp_bits, payload
STATUS_FORMAT = "<BBHIB"            # busy, code, pc, cycles, run_seq
RUN_FORMAT = "<BHI"                 # code, pc, cycles
ENTRY_FORMAT = "<HHHh"              # base, rows, cols, exp
WRITE_TENSOR_FORMAT = "<BHHHh"      # slot, then an entry
READ_TMEM_FORMAT = "<HH"            # addr, count
WRITE_KEYS_FORMAT = "<II"           # seed, step (golden_model.prng.step_key)
COUNTERS_FORMAT = "<IIQ"            # samples, correct, loss_bits (golden_model.machine.LossCounters)
CURSOR_FORMAT = "<IHH"              # epoch, train, eval (golden_model.machine.Cursor)
LOOP_FORMAT = "<HIB"                # pc, passes, advance (golden_model.machine.Machine.loop)
PROGRESS_FORMAT = "<IIHHI"          # step, cursor epoch, train, eval, passes left
ADDRESS_FORMAT = "<H"

PING_PAYLOAD_BYTES = struct.calcsize(PING_FORMAT)
STATUS_PAYLOAD_BYTES = struct.calcsize(STATUS_FORMAT)
RUN_PAYLOAD_BYTES = struct.calcsize(RUN_FORMAT)
COUNTERS_PAYLOAD_BYTES = struct.calcsize(COUNTERS_FORMAT)
PROGRESS_PAYLOAD_BYTES = struct.calcsize(PROGRESS_FORMAT)
TENSOR_ENTRY_BYTES = struct.calcsize(ENTRY_FORMAT)
WRITE_TENSOR_BYTES = struct.calcsize(WRITE_TENSOR_FORMAT)


class Unit(enum.Enum):
    """What follows the address of a bulk write: TMEM words (``lanes`` bytes), instructions (8 bytes),
    data-memory words (``lanes`` bytes) or labels (1 byte)."""

    WORD = 0
    INSTRUCTION = 1
    DATA = 2
    LABEL = 3


@dataclass(frozen=True)
class CommandSpec:
    """One row of the command table.

    length          the request payload length, or None for a bulk write (address + whole ``unit``s)
    unit            the unit of a bulk write
    while_running   served while a run is active (else BUSY)
    answer_bytes    the OK answer's payload length (None: depends on the request, READ_TMEM)
    """

    length: int | None
    unit: Unit | None = None
    while_running: bool = False
    answer_bytes: int | None = 0


COMMANDS: dict[Cmd, CommandSpec] = {
    Cmd.PING: CommandSpec(0, while_running=True, answer_bytes=PING_PAYLOAD_BYTES),
    Cmd.WRITE_TMEM: CommandSpec(None, Unit.WORD),
    Cmd.READ_TMEM: CommandSpec(struct.calcsize(READ_TMEM_FORMAT), answer_bytes=None),
    Cmd.WRITE_TENSOR: CommandSpec(WRITE_TENSOR_BYTES),
    Cmd.READ_TENSOR: CommandSpec(1, answer_bytes=TENSOR_ENTRY_BYTES),
    Cmd.WRITE_PROGRAM: CommandSpec(None, Unit.INSTRUCTION),
    Cmd.RUN: CommandSpec(struct.calcsize(ADDRESS_FORMAT), answer_bytes=RUN_PAYLOAD_BYTES),
    Cmd.STATUS: CommandSpec(0, while_running=True, answer_bytes=STATUS_PAYLOAD_BYTES),
    Cmd.WRITE_KEYS: CommandSpec(struct.calcsize(WRITE_KEYS_FORMAT)),
    Cmd.READ_COUNTERS: CommandSpec(0, answer_bytes=COUNTERS_PAYLOAD_BYTES),
    Cmd.CLEAR_COUNTERS: CommandSpec(0),
    Cmd.WRITE_DATA: CommandSpec(None, Unit.DATA),
    Cmd.WRITE_LABELS: CommandSpec(None, Unit.LABEL),
    Cmd.WRITE_CURSOR: CommandSpec(struct.calcsize(CURSOR_FORMAT)),
    Cmd.LOOP: CommandSpec(struct.calcsize(LOOP_FORMAT), answer_bytes=RUN_PAYLOAD_BYTES),
    Cmd.PROGRESS: CommandSpec(0, while_running=True, answer_bytes=PROGRESS_PAYLOAD_BYTES),
}

#: The commands that start a run (answered when it ends, docs/protocol.md).
RUN_COMMANDS = (Cmd.RUN, Cmd.LOOP)

#: The longest fixed request payload: the gateware keeps these bytes in an argument register.
ARGUMENT_BYTES = max(spec.length or ADDRESS_BYTES for spec in COMMANDS.values())
#: The longest fixed answer payload: the gateware sends it from one register.
SMALL_ANSWER_BYTES = max(spec.answer_bytes or 0 for spec in COMMANDS.values())


def unit_bytes(unit: Unit, cfg: CoreConfig) -> int:
    return {Unit.WORD: cfg.lanes, Unit.INSTRUCTION: INSTRUCTION_BYTES, Unit.DATA: cfg.lanes, Unit.LABEL: 1}[unit]


def unit_depth(unit: Unit, cfg: CoreConfig) -> int:
    """How many units the target memory holds (TMEM words, program instructions, data words, labels)."""
    return {Unit.WORD: cfg.tmem_words, Unit.INSTRUCTION: cfg.program_depth, Unit.DATA: cfg.data_words,
            Unit.LABEL: cfg.data_samples}[unit]


# ---- CRC and frames ---------------------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC.polynomial) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16_update(crc: int, byte: int) -> int:
    """One byte of :data:`CRC` (MSB first)."""
    return ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]


def crc16(data: bytes, crc: int = CRC.initial_crc) -> int:
    """:data:`CRC` of ``data``, table-driven: crc16(b"123456789") == 0x29B1."""
    for byte in data:
        crc = crc16_update(crc, byte)
    return crc


def encode_request(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    body = struct.pack("<BBH", cmd, seq, len(payload)) + bytes(payload)
    return bytes([REQUEST_SYNC]) + body + struct.pack("<H", crc16(body))


def encode_response(cmd: int, seq: int, status: int, payload: bytes = b"") -> bytes:
    body = struct.pack("<BBBH", cmd, seq, status, len(payload)) + bytes(payload)
    return bytes([RESPONSE_SYNC]) + body + struct.pack("<H", crc16(body))


@dataclass(frozen=True)
class Request:
    cmd: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class Response:
    cmd: int
    seq: int
    status: int
    payload: bytes


class FrameError(ValueError):
    """A byte string that is not one well-formed frame."""


def decode_request(frame: bytes) -> Request:
    if len(frame) < REQUEST_OVERHEAD or frame[0] != REQUEST_SYNC:
        raise FrameError("not a request frame")
    cmd, seq, length = struct.unpack_from("<BBH", frame, 1)
    if len(frame) != REQUEST_OVERHEAD + length:
        raise FrameError(f"request frame of {len(frame)} bytes, header says payload {length}")
    if crc16(frame[1:-2]) != struct.unpack_from("<H", frame, len(frame) - 2)[0]:
        raise FrameError("request CRC mismatch")
    return Request(cmd, seq, bytes(frame[5:-2]))


def decode_response(frame: bytes) -> Response:
    if len(frame) < RESPONSE_OVERHEAD or frame[0] != RESPONSE_SYNC:
        raise FrameError("not a response frame")
    cmd, seq, status, length = struct.unpack_from("<BBBH", frame, 1)
    if len(frame) != RESPONSE_OVERHEAD + length:
        raise FrameError(f"response frame of {len(frame)} bytes, header says payload {length}")
    if crc16(frame[1:-2]) != struct.unpack_from("<H", frame, len(frame) - 2)[0]:
        raise FrameError("response CRC mismatch")
    return Response(cmd, seq, status, bytes(frame[6:-2]))


# ---- payloads ------------------------------------------------------------------------------------

def check_protocol_fit(cfg: CoreConfig) -> None:
    """Raise ValueError when a configuration does not fit the protocol's field widths."""
    limits = {"lanes": (cfg.lanes, 0xFF), "array_rows": (cfg.array_rows, 0xFF),
              "array_cols": (cfg.array_cols, 0xFF), "tensor_slots": (cfg.tensor_slots, 0xFF),
              "tmem_words": (cfg.tmem_words, 0xFFFF), "acc_words": (cfg.acc_words, 0xFFFF),
              "program_depth": (cfg.program_depth, 0xFFFF), "exp_bits": (cfg.exp_bits, 16)}
    for name, (value, limit) in limits.items():
        if not 1 <= value <= limit:
            raise ValueError(f"{name}={value} does not fit the host protocol (at most {limit})")


PING_FIELDS = ("lanes", "array_rows", "array_cols", "tmem_words", "acc_words", "tensor_slots",
               "program_depth", "exp_bits", "max_payload")


def ping_payload(cfg: CoreConfig) -> bytes:
    """What PING answers: magic and the configuration the bitstream was built for."""
    check_protocol_fit(cfg)
    return struct.pack(PING_FORMAT, MAGIC, *(getattr(cfg, name) for name in PING_FIELDS))


def parse_ping(payload: bytes) -> dict:
    if len(payload) != PING_PAYLOAD_BYTES or payload[:4] != MAGIC:
        raise FrameError(f"PING answer {payload!r} lacks magic {MAGIC!r}: not an EOQ core (or another protocol version)")
    return dict(zip(PING_FIELDS, struct.unpack(PING_FORMAT, payload)[1:]))


def pc_mask(cfg: CoreConfig) -> int:
    """The status pc holds 0 .. program_depth (hw.interfaces.pc_shape): replies mask it to that width."""
    return (1 << cfg.program_depth.bit_length()) - 1


@dataclass(frozen=True)
class DeviceStatus:
    busy: bool
    code: Status | int
    pc: int
    cycles: int
    run_seq: int


def status_payload(busy: bool, code: int, pc: int, cycles: int, run_seq: int) -> bytes:
    return struct.pack(STATUS_FORMAT, int(busy), int(code), pc, cycles, run_seq)


def parse_status(payload: bytes) -> DeviceStatus:
    busy, code, pc, cycles, run_seq = struct.unpack(STATUS_FORMAT, payload)
    return DeviceStatus(bool(busy), status_code(code), pc, cycles, run_seq)


def run_payload(code: int, pc: int, cycles: int) -> bytes:
    return struct.pack(RUN_FORMAT, int(code), pc, cycles)


def parse_run(payload: bytes) -> tuple[Status | int, int, int]:
    code, pc, cycles = struct.unpack(RUN_FORMAT, payload)
    return status_code(code), pc, cycles


def counters_payload(counters) -> bytes:
    return struct.pack(COUNTERS_FORMAT, counters.samples, counters.correct, counters.loss_bits)


def parse_counters(payload: bytes) -> tuple[int, int, int]:
    """(samples, correct, loss_bits) of a READ_COUNTERS answer."""
    return struct.unpack(COUNTERS_FORMAT, payload)


def cursor_payload(epoch: int, train: int, eval: int) -> bytes:
    return struct.pack(CURSOR_FORMAT, epoch, train, eval)


def loop_payload(pc: int, passes: int, advance: bool) -> bytes:
    return struct.pack(LOOP_FORMAT, pc, passes, int(advance))


@dataclass(frozen=True)
class Progress:
    """A PROGRESS answer: the step register, the data cursor, the passes the run has left."""

    step: int
    epoch: int
    train: int
    eval: int
    passes: int


def progress_payload(progress: Progress) -> bytes:
    return struct.pack(PROGRESS_FORMAT, progress.step, progress.epoch, progress.train, progress.eval,
                       progress.passes)


def parse_progress(payload: bytes) -> Progress:
    return Progress(*struct.unpack(PROGRESS_FORMAT, payload))


def entry_payload(base: int, rows: int, cols: int, exp: int) -> bytes:
    return struct.pack(ENTRY_FORMAT, base, rows, cols, exp)


def parse_entry(payload: bytes) -> tuple[int, int, int, int]:
    return struct.unpack(ENTRY_FORMAT, payload)


def status_code(code: int) -> Status | int:
    """The core's golden_model.isa.Status for a code byte (the raw int if unknown)."""
    try:
        return Status(code)
    except ValueError:
        return code


def command_name(cmd: int) -> str:
    return Cmd(cmd).name if cmd in Cmd._value2member_map_ else f"command {cmd:#04x}"
