"""The core's instruction set: encodings shared by the golden machine, the
hardware sequencer and the host.  docs/isa.md is the prose version.

An instruction is 64 bits:

    [3:0]   opcode
    [8:4]   dst     tensor-table slot written
    [13:9]  a       first source slot
    [18:14] b       second source slot
    [19]    f0      MATMUL: transpose A     QUANT: ReLU before quantizing
                    QUPDATE: stochastic gradient rounding
    [20]    f1      MATMUL: transpose B     QUANT/UPDATE/QUPDATE: stochastic (update) rounding
    [25:21] lr      UPDATE/QUPDATE: learning rate 2**-lr
    [26]    f2      QUANT: mask the result by slot b > 0 (ReLU derivative); 0 for other opcodes
    [31:27] reserved, must be 0
    [63:32] key     generator key for stochastic rounding

Tensors live in the tensor memory (TMEM), described by the tensor table:
slot -> (base word address, rows, cols, exponent).  A row of ``cols`` int8
elements takes ceil(cols / lanes) words; pad lanes hold 0.  Products and
element-wise results go to the single accumulator tensor ACC (int32, in the
accumulator memory) whose shape, exponent, max |x| and max x the core keeps
for the QUANT that follows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Op(enum.IntEnum):
    HALT = 0
    MATMUL = 1
    QUANT = 2
    SCALE = 3
    ADD = 4
    SUM = 5
    DOT = 6
    MASK = 7
    UPDATE = 8
    QUPDATE = 9


class Status(enum.IntEnum):
    """Device status codes (the host turns non-zero codes into exceptions)."""

    OK = 0
    ILLEGAL_INSTRUCTION = 1
    SHAPE_MISMATCH = 2
    TMEM_RANGE = 3
    ACC_RANGE = 4
    EXP_RANGE = 5
    PC_RANGE = 6
    OVERLAP = 7


STATUS_HELP = {
    Status.ILLEGAL_INSTRUCTION: "unknown opcode, reserved bits set or f2 outside QUANT; re-encode the program with golden_model.isa",
    Status.SHAPE_MISMATCH: "operand shapes do not fit the instruction; check the tensor table entries",
    Status.TMEM_RANGE: "a tensor extends past the tensor memory; place it lower or use a larger configuration",
    Status.ACC_RANGE: "the result does not fit the accumulator memory; split the layer or raise acc_elements",
    Status.EXP_RANGE: "a tensor exponent overflowed exp_bits; the data has an extreme dynamic range",
    Status.PC_RANGE: "the program ran off the end of program memory; end it with HALT",
    Status.OVERLAP: ("the destination partly overlaps a source tensor in TMEM; write in place (same base) "
                     "or to a disjoint range"),
}

FIELDS = {  # name: (low bit, width)
    "opcode": (0, 4),
    "dst": (4, 5),
    "a": (9, 5),
    "b": (14, 5),
    "f0": (19, 1),
    "f1": (20, 1),
    "lr": (21, 5),
    "f2": (26, 1),
    "reserved": (27, 5),
    "key": (32, 32),
}


@dataclass(frozen=True)
class Instruction:
    op: Op
    dst: int = 0
    a: int = 0
    b: int = 0
    f0: int = 0
    f1: int = 0
    lr: int = 0
    key: int = 0
    f2: int = 0
    reserved: int = 0

    def encode(self) -> int:
        word = 0
        for name, (low, width) in FIELDS.items():
            value = int(self.op) if name == "opcode" else int(getattr(self, name))
            if not 0 <= value < (1 << width):
                raise ValueError(f"instruction field {name}={value} does not fit {width} bits")
            word |= value << low
        return word

    @classmethod
    def decode(cls, word: int) -> "Instruction":
        """Decode a 64-bit word; an unknown opcode raises ValueError."""
        if not 0 <= word < (1 << 64):
            raise ValueError(f"instruction word {word:#x} is not 64 bits")
        fields = {name: (word >> low) & ((1 << width) - 1) for name, (low, width) in FIELDS.items()}
        opcode = fields.pop("opcode")
        if opcode not in Op._value2member_map_:
            raise ValueError(f"unknown opcode {opcode}")
        return cls(Op(opcode), **fields)


def halt() -> Instruction:
    return Instruction(Op.HALT)


def matmul(a: int, b: int, transpose_a: bool = False, transpose_b: bool = False) -> Instruction:
    """ACC = op(A) . op(B)^T, op(T) = T or T^T."""
    return Instruction(Op.MATMUL, a=a, b=b, f0=int(transpose_a), f1=int(transpose_b))


def quant(dst: int, relu: bool = False, stochastic: bool = False, key: int = 0,
          mask: int | None = None) -> Instruction:
    """dst = SQ(ACC) with optional ReLU; nearest or stochastic rounding.

    With ``mask=slot``: dst = where(B > 0, SQ(ACC), 0), B = that slot (ACC's
    shape); the shift still comes from the whole ACC (QUANT then MASK, fused).
    """
    return Instruction(Op.QUANT, dst=dst, b=0 if mask is None else mask, f0=int(relu), f1=int(stochastic),
                       key=key, f2=int(mask is not None))


def scale(a: int, m: int) -> Instruction:
    """ACC = A * m[0] (m a 1x1 tensor)."""
    return Instruction(Op.SCALE, a=a, b=m)


def add(a: int, b: int) -> Instruction:
    """ACC = align(A) + align(B) at the coarser exponent; B same shape or 1x1."""
    return Instruction(Op.ADD, a=a, b=b)


def total(a: int) -> Instruction:
    """ACC (1x1) = sum(A)."""
    return Instruction(Op.SUM, a=a)


def dot(a: int, b: int) -> Instruction:
    """ACC (1x1) = sum(A * B)."""
    return Instruction(Op.DOT, a=a, b=b)


def mask(dst: int, a: int, b: int) -> Instruction:
    """dst = A where B > 0 else 0 (ReLU derivative); dst takes A's exponent."""
    return Instruction(Op.MASK, dst=dst, a=a, b=b)


def update(w: int, g: int, lr_shift: int, stochastic: bool = True, key: int = 0) -> Instruction:
    """W = saturate(W - round(G * 2**(eG - lr_shift - eW)))."""
    return Instruction(Op.UPDATE, dst=w, a=g, lr=lr_shift, f1=int(stochastic), key=key)


def qupdate(w: int, lr_shift: int, stochastic_grad: bool = True, stochastic_update: bool = True,
            key: int = 0) -> Instruction:
    """Fused gradient quantization and update: g = SQ(ACC) (rounding f0, ``key``), then
    W = saturate(W - round(g * 2**(eg - lr_shift - eW))) (rounding f1, prng.update_key(key))."""
    return Instruction(Op.QUPDATE, dst=w, lr=lr_shift, f0=int(stochastic_grad), f1=int(stochastic_update), key=key)
