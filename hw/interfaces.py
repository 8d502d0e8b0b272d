"""Layouts and Signatures shared by the core's sequencer, engines and memories.

The sequencer decodes an instruction, reads the tensor table, checks shapes
and exponents, and hands one :func:`command_layout` beat to the engine that
executes it.  Engines see the memories only through the port Signatures
below; the core connects the active engine's ports to the memories.

Memory organization (docs/architecture.md):
  TMEM  cfg.tmem_words words of cfg.lanes signed int8 lanes.  Tensor element
        (r, c) of a tensor at ``base`` with ``cols`` columns is lane c % lanes
        of word base + r * ceil(cols / lanes) + c // lanes; pad lanes are 0.
  AMEM  cfg.acc_words words of cfg.lanes signed acc_bits lanes: the ACC tensor,
        laid out the same way from word 0.  Lanes past ACC's columns are
        don't-care: readers mask them by column index.
Both memories have synchronous read ports: data is valid the cycle after
``en`` with ``addr``.
"""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import FIELDS, field_width, status_bits
from golden_model.machine import COUNTER_BITS, CURSOR_BITS

from .rounding import acc_shape, data_shape, shift_shape, signed_shift_shape


def dim_shape(cfg: CoreConfig):
    """Unsigned shape of a tensor dimension (rows or cols): 0 .. cfg.max_dim."""
    return unsigned(cfg.max_dim.bit_length())


def tmem_addr_shape(cfg: CoreConfig):
    return unsigned(max(cfg.tmem_words - 1, 1).bit_length())


def data_addr_shape(cfg: CoreConfig):
    """A data-memory (DMEM) word address."""
    return unsigned(max(cfg.data_words - 1, 1).bit_length())


def label_addr_shape(cfg: CoreConfig):
    """A label-memory (LMEM) address: a sample."""
    return unsigned(max(cfg.data_samples - 1, 1).bit_length())


def amem_addr_shape(cfg: CoreConfig):
    return unsigned(max(cfg.acc_words - 1, 1).bit_length())


def exp_shape(cfg: CoreConfig):
    return signed(cfg.exp_bits)


def tmem_word_layout(cfg: CoreConfig) -> data.ArrayLayout:
    return data.ArrayLayout(data_shape(cfg), cfg.lanes)


def amem_word_layout(cfg: CoreConfig) -> data.ArrayLayout:
    return data.ArrayLayout(acc_shape(cfg), cfg.lanes)


def tensor_layout(cfg: CoreConfig) -> data.StructLayout:
    """One operand as the sequencer resolved it from the tensor table."""
    return data.StructLayout({
        "base": tmem_addr_shape(cfg),
        "rows": dim_shape(cfg),
        "cols": dim_shape(cfg),
        "stride": dim_shape(cfg),     # words per row = ceil(cols / lanes)
    })


def command_layout(cfg: CoreConfig) -> data.StructLayout:
    """What an engine needs to execute one instruction (shapes already checked).

    op/f0/f1/f2/lr/key are the instruction's fields.  a, b, dst are the resolved
    operands.  acc_rows/acc_cols/acc_stride give the ACC tensor's shape: for a
    producer (golden_model.isa.Acc.PRODUCES) the shape it must write, for a
    consumer (QUANT, QUPDATE) the shape it reads.  shift_a/shift_b are the ADD
    alignment shifts (e - e_a, e - e_b >= 0).  shift is UPDATE's signed shift
    e_w + lr - e_g (QUPDATE: e_w + lr - (e_acc + sq_shift)).  sq_shift is the
    SQ shift of the ACC a consumer quantizes (hw.sq_shift.SqShift of its
    maximum, after QUANT's ReLU), computed once by the sequencer.
    """
    return data.StructLayout({
        "op": field_width("opcode"),
        "f0": field_width("f0"),
        "f1": field_width("f1"),
        "f2": field_width("f2"),
        "lr": field_width("lr"),
        "key": field_width("key"),
        "a": tensor_layout(cfg),
        "b": tensor_layout(cfg),
        "dst": tensor_layout(cfg),
        "acc_rows": dim_shape(cfg),
        "acc_cols": dim_shape(cfg),
        "acc_stride": dim_shape(cfg),
        "shift_a": unsigned(cfg.exp_bits + 1),
        "shift_b": unsigned(cfg.exp_bits + 1),
        "shift": signed_shift_shape(cfg),
        "sq_shift": shift_shape(cfg),
    })


def result_layout(cfg: CoreConfig) -> data.StructLayout:
    """What a producer reports when done: the ACC's peaks, the bitwise OR of |x| and of max(x, 0) over
    the valid elements.  An OR has the bit length of the largest value it covers, and the bit length is
    all the SQ shift rule reads (hw/sq_shift.py, golden ``quant.sq_shift``), so the engines OR their
    magnitudes instead of comparing them."""
    return data.StructLayout({
        "peak_abs": unsigned(cfg.acc_bits),
        "peak_pos": unsigned(cfg.acc_bits),
    })


class ReadPortSignature(wiring.Signature):
    """Read port, engine side: data valid the cycle after en (DataMemory's: ``READ_LATENCY`` cycles after)."""

    def __init__(self, addr_shape, word_layout):
        super().__init__({
            "addr": Out(addr_shape),
            "en": Out(1),
            "data": In(word_layout),
        })


class WritePortSignature(wiring.Signature):
    """Write port, engine side: the word is written at the clock edge when en."""

    def __init__(self, addr_shape, word_layout):
        super().__init__({
            "addr": Out(addr_shape),
            "en": Out(1),
            "data": Out(word_layout),
        })


class EngineSignature(wiring.Signature):
    """An execution engine as the sequencer and memories see it.

    ``cmd`` is a stream: one beat starts one instruction; the engine drops
    ``cmd.ready`` while busy.  When finished it pulses ``done`` for one cycle
    with ``result`` valid in that cycle.  An engine that does not use a port
    keeps its ``en`` low.
    """

    def __init__(self, cfg: CoreConfig):
        tword, aword = tmem_word_layout(cfg), amem_word_layout(cfg)
        taddr, aaddr = tmem_addr_shape(cfg), amem_addr_shape(cfg)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cfg))),
            "done": Out(1),
            "result": Out(result_layout(cfg)),
            "tmem_a": Out(ReadPortSignature(taddr, tword)),
            "tmem_b": Out(ReadPortSignature(taddr, tword)),
            "tmem_w": Out(WritePortSignature(taddr, tword)),
            "amem_r": Out(ReadPortSignature(aaddr, aword)),
            "amem_w": Out(WritePortSignature(aaddr, aword)),
        })


def table_entry_layout(cfg: CoreConfig) -> data.StructLayout:
    """A tensor-table entry as the host writes it (16-bit fields; the sequencer range-checks them)."""
    return data.StructLayout({
        "base": unsigned(16),
        "rows": unsigned(16),
        "cols": unsigned(16),
        "exp": exp_shape(cfg),
    })


def slot_shape(cfg: CoreConfig):
    return unsigned(max(cfg.tensor_slots - 1, 1).bit_length())


def pc_shape(cfg: CoreConfig):
    """Program counter: holds 0 .. program_depth (one past the end is the PC_RANGE error's pc)."""
    return unsigned(cfg.program_depth.bit_length())


def status_layout(cfg: CoreConfig) -> data.StructLayout:
    """Run state the host reads: busy, golden_model.isa.Status code, pc, cycles of the last run."""
    return data.StructLayout({
        "busy": 1,
        "code": status_bits(),
        "pc": pc_shape(cfg),
        "cycles": 32,
    })


def run_signature(cfg: CoreConfig) -> wiring.Signature:
    """A run's start, host side: ``passes`` passes from ``pc`` (at least 1), with ``advance`` the step
    register counting each pass (golden ``Machine.loop``)."""
    return wiring.Signature({"start": Out(1), "pc": Out(pc_shape(cfg)), "passes": Out(32), "advance": Out(1)})


def counters_layout() -> data.StructLayout:
    """The loss counters (golden_model.machine.LossCounters, COUNTER_BITS wide)."""
    return data.StructLayout({name: unsigned(bits) for name, bits in COUNTER_BITS.items()})


def cursor_layout() -> data.StructLayout:
    """The LOAD engine's data cursor (golden_model.machine.Cursor, CURSOR_BITS wide)."""
    return data.StructLayout({name: unsigned(bits) for name, bits in CURSOR_BITS.items()})


def progress_layout() -> data.StructLayout:
    """What PROGRESS reports: the step register, the data cursor and the passes left of the run."""
    return data.StructLayout({"step": 32, "cursor": cursor_layout(), "passes": 32})


def keys_write_signature() -> wiring.Signature:
    """A write of the step keys' seed and step registers (hw/step_keys.py), host side."""
    return wiring.Signature({"en": Out(1), "seed": Out(32), "step": Out(32)})


class CoreControlSignature(wiring.Signature):
    """What the host link drives on the core (host-link side; the core takes it flipped).

    tmem_r/tmem_w   TMEM words (sync read); writes only while not busy.
    table_w         write one tensor-table entry when en.
    table_r_slot    slot whose entry table_r shows in the next cycle (synchronous read).
    prog_w          write one 64-bit instruction when en.
    keys_w          write the seed and step registers of step keys (hw/step_keys.py) when en.
    counters        the loss counters (hw/loss_engine.py); counters_clear sets them to 0.
    run             start pulse with the pc to start from, the passes and the step's advance.
    status          busy / status code / pc / cycle count of the current or last run.
    data_w/labels_w DMEM words and LMEM labels (the resident data set); only while not busy.
    cursor_w        set the LOAD engine's data cursor; only while not busy.
    progress        step, data cursor and passes left, for the host's progress (served while running).
    """

    def __init__(self, cfg: CoreConfig):
        super().__init__({
            "tmem_r": Out(ReadPortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
            "tmem_w": Out(WritePortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
            "table_w": Out(wiring.Signature({"en": Out(1), "slot": Out(slot_shape(cfg)),
                                             "entry": Out(table_entry_layout(cfg))})),
            "table_r_slot": Out(slot_shape(cfg)),
            "table_r": In(table_entry_layout(cfg)),
            "prog_w": Out(wiring.Signature({"en": Out(1), "addr": Out(pc_shape(cfg)), "data": Out(64)})),
            "keys_w": Out(keys_write_signature()),
            "counters": In(counters_layout()), "counters_clear": Out(1),
            "run": Out(run_signature(cfg)),
            "status": In(status_layout(cfg)),
            "data_w": Out(WritePortSignature(data_addr_shape(cfg), tmem_word_layout(cfg))),
            "labels_w": Out(WritePortSignature(label_addr_shape(cfg), signed(8))),
            "cursor_w": Out(wiring.Signature({"en": Out(1), "value": Out(cursor_layout())})),
            "progress": In(progress_layout()),
        })


def instruction_layout() -> data.StructLayout:
    """The 64-bit instruction word as golden_model.isa.FIELDS lays it out."""
    fields, position = {}, 0
    for name, (low, width) in sorted(FIELDS.items(), key=lambda item: item[1][0]):
        assert low == position, f"instruction fields must tile the word: {name} at {low}, expected {position}"
        fields[name] = unsigned(width)
        position += width
    assert position == 64
    return data.StructLayout(fields)
