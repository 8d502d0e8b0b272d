"""The core's instruction set: one table per fact, shared by the golden machine, the
hardware sequencer, the bench decode reference and the host.  docs/isa.md is the
prose version (and tells how to add an instruction).

An instruction is 64 bits (:data:`FIELDS`):

    [3:0]   opcode
    [9:4]   dst     tensor-table slot written
    [15:10] a       first source slot
    [21:16] b       second source slot
    [22]    f0      MATMUL: transpose A     QUANT: ReLU before quantizing
                    QUPDATE: stochastic gradient rounding    CONV: with f1, the weight gradient
    [23]    f1      MATMUL: transpose B     QUANT/UPDATE/QUPDATE: stochastic (update) rounding
                    CONV: backward (the error product; with f0 the weight gradient)
    [28:24] lr      UPDATE/QUPDATE: learning rate 2**-lr
    [29]    f2      QUANT: mask the result by slot b > 0 (ReLU derivative); 0 for other opcodes
    [30]    f3      QUANT: frozen exponent, dst keeps its exponent (inference); 0 for other opcodes
    [31]    f4      QUANT/UPDATE/QUPDATE: step key, the key field is a tensor's prng.tensor_mix and the
                    key is prng.step_key of the core's seed and step registers; 0 for other opcodes
    [63:32] key     generator key for stochastic rounding (with f4 the tensor's mix); CONV, POOL, UNPOOL:
                    the geometry (golden_model.geometry)

Tensors live in the tensor memory (TMEM), described by the tensor table:
slot -> (base word address, rows, cols, exponent).  A row of ``cols`` int8
elements takes ceil(cols / lanes) words; pad lanes hold 0.  Products and
element-wise results go to the single accumulator tensor ACC (int32, in the
accumulator memory) whose shape, exponent, max |x| and max x the core keeps
for the QUANT that follows.

:data:`OPS` is the opcode table: for each opcode its engine, the memory ports
it holds while running, the TMEM operands it reads and writes, the exponent it
writes, its ACC behaviour (produces with a shape and exponent rule, or
consumes), its checks in order, and the instruction fields it uses.  The
check rules and the exponent and shape rules are names defined in
:data:`CHECK_RULES`, :data:`ACC_SHAPES`, :data:`ACC_EXPONENTS` and
:data:`DST_EXPONENTS`; the golden machine and the sequencer each implement
every name once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .geometry import Geometry

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
    CONV = 10
    POOL = 11
    UNPOOL = 12
    LOSS = 13
    LOAD = 14


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
    DATA_RANGE = 8


STATUS_HELP = {
    Status.ILLEGAL_INSTRUCTION: ("unknown opcode, f2 or f3 outside QUANT, f4 outside QUANT/UPDATE/QUPDATE, CONV f0 "
                                  "without f1 or a key that is no geometry; re-encode the program with "
                                  "golden_model.isa"),
    Status.SHAPE_MISMATCH: "operand shapes do not fit the instruction; check the tensor table entries",
    Status.TMEM_RANGE: "a tensor extends past the tensor memory; place it lower or use a larger configuration",
    Status.ACC_RANGE: "the result does not fit the accumulator memory; split the layer or raise acc_elements",
    Status.EXP_RANGE: ("a tensor exponent overflowed exp_bits (the data has an extreme dynamic range), or a frozen "
                       "QUANT's exponent is finer than its ACC's: calibrate again (golden_model/inference.py)"),
    Status.PC_RANGE: "the program ran off the end of program memory; end it with HALT",
    Status.OVERLAP: ("the destination partly overlaps a source tensor in TMEM; write in place (same base) "
                     "or to a disjoint range"),
    Status.DATA_RANGE: ("a LOAD's data set (base, count) is empty or extends past the data memory or the label "
                        "memory; upload the set within data_bytes and data_samples (a larger configuration "
                        "holds more)"),
}

FIELDS = {  # name: (low bit, width)
    "opcode": (0, 4),
    "dst": (4, 6),
    "a": (10, 6),
    "b": (16, 6),
    "f0": (22, 1),
    "f1": (23, 1),
    "lr": (24, 5),
    "f2": (29, 1),
    "f3": (30, 1),
    "f4": (31, 1),
    "key": (32, 32),
}


def field_width(name: str) -> int:
    return FIELDS[name][1]


class Engine(enum.IntEnum):
    """The execution engines of the core (hw/core.py instantiates one of each, in this order)."""

    MATMUL = 0
    QUANT = 1
    VECTOR = 2
    UPDATE = 3
    LOSS = 4
    LOAD = 5


class Acc(enum.Enum):
    """What an instruction does with the ACC tensor."""

    NONE = "none"
    PRODUCES = "produces"    # writes a new ACC (shape and exponent by the op's rules)
    CONSUMES = "consumes"    # reads the current ACC (waits for its producer)


#: Memory ports an instruction may hold while it runs (two instructions run side by side only when
#: they share none): three TMEM read ports, the TMEM write port, the AMEM read and write ports.
PORTS = ("tmem_a", "tmem_b", "tmem_c", "tmem_w", "amem_r", "amem_w")

#: Check rules: name -> what must hold (a failing check stops the run with the status its row names).
CHECK_RULES = {
    "dims:dst": "dst has 1..max_dim rows and columns",
    "dims:a": "A has 1..max_dim rows and columns",
    "dims:b": "B has 1..max_dim rows and columns",
    "extent:dst": "dst ends within TMEM: base + rows * ceil(cols / lanes) <= tmem_words",
    "extent:a": "A ends within TMEM",
    "extent:b": "B ends within TMEM",
    "inner": "op(A) and op(B) have the same inner length (MATMUL, after the transpose flags)",
    "b_scalar": "B is 1x1",
    "ab_or_b_scalar": "B has A's shape or is 1x1 (broadcast)",
    "ab": "A and B have the same shape",
    "dst_ab": "A, B and dst have the same shape",
    "dst_a": "dst and A have the same shape",
    "dst_acc": "dst has ACC's shape",
    "b_acc": "B has ACC's shape",
    "acc_fits": "the ACC the instruction produces fits AMEM: rows * ceil(cols / lanes) <= acc_words",
    "overlap:dst,a": "dst is A (same base) or disjoint from it",
    "overlap:dst,b": "dst is B (same base) or disjoint from it",
    "disjoint:dst,a": "dst and A share no TMEM word",
    "conv": ("the operands fit the geometry: forward A (B*H*W, C) and B (O, KH*KW*Cp); error A (B*Ho*Wo, O), "
             "B (O, KH*KW*Cp) and dst (B*H*W, C); gradient A (B*Ho*Wo, O) and B (B*H*W, C); "
             "Cp = ceil(C / lanes) * lanes"),
    "pool": "A is (B*H*W, C) for the geometry",
    "unpool": "A is (B*(H/KH)*(W/KW), C) and dst (B*H*W, C) for the geometry",
    "loss": "B is (rows of A) x 1 (the labels) and A has at most max_features columns (the classes)",
    "labels": "dst has one column (a LOAD of labels)",
    "data_fits": ("the key's data set is 1..data_samples samples within the memories: base + count <= "
                  "data_samples and (base + count) * ceil(cols / lanes) <= data_words"),
    "exp_fits": "the exponent written to dst (ACC.exp + SQ shift) fits exp_bits",
    "frozen": "dst's (frozen) exponent is not finer than ACC's: the shift dst.exp - ACC.exp is not negative",
}

#: Shape of the ACC a producer writes.
ACC_SHAPES = {
    "matmul": "(rows of op(A), rows of op(B)), op(T) = T^T when the instruction's flag (f0 for A, f1 for B) is set",
    "a": "A's shape",
    "scalar": "1x1",
    "conv": "forward (B*Ho*Wo, rows of B); error dst's shape; gradient (cols of A, KH*KW*Cp) with C = cols of B",
    "pool": "(B*(H/KH)*(W/KW), cols of A)",
}

#: Exponent of the ACC a producer writes.
ACC_EXPONENTS = {
    "a+b": "eA + eB",
    "max": "max(eA, eB) (the operands are aligned to the coarser one)",
    "a": "eA",
    "a-window": "eA - log2(KH*KW) (an average over the window: the division is the exponent)",
    "loss-grid": "loss_fixed_exp: the integer loss writes its error on that grid (golden_model/int_loss.py)",
}

#: Exponent an instruction writes to dst's table entry.
DST_EXPONENTS = {
    "sq": "ACC.exp + the SQ shift of the ACC it quantizes; with QUANT's f3 (frozen) dst's own exponent",
    "a": "eA",
    "a-window": "eA - log2(KH*KW)",
}

#: A condition on instruction fields: every (field, value) pair must hold.
Flags = tuple[tuple[str, int], ...]


def flags(**values: int) -> Flags:
    return tuple(sorted(values.items()))


def holds(condition: Flags, inst) -> bool:
    return all(getattr(inst, field) == value for field, value in condition)


@dataclass(frozen=True)
class Check:
    rule: str                     # a CHECK_RULES name
    status: "Status"
    when: Flags = ()              # the fields that enable the check (QUANT's mask: f2 = 1)


@dataclass(frozen=True)
class Read:
    slot: str                     # "a", "b" or "dst": a TMEM operand the instruction reads
    when: Flags = ()              # the fields that enable the read


@dataclass(frozen=True)
class OpSpec:
    """One row of the opcode table (see the module docstring)."""

    engine: Engine | None
    ports: tuple[str, ...] = ()
    reads: tuple[Read, ...] = ()
    writes_dst: bool = False      # writes dst's TMEM words
    dst_exp: str | None = None    # writes dst's exponent: a DST_EXPONENTS name
    acc: Acc = Acc.NONE
    acc_shape: str | None = None  # producers: an ACC_SHAPES name
    acc_exp: str | None = None    # producers: an ACC_EXPONENTS name
    checks: tuple[Check, ...] = ()
    fields: tuple[str, ...] = ()  # instruction fields with a meaning (the others are ignored; f2 must be 0)
    illegal: tuple[Flags, ...] = ()   # field combinations that make the instruction illegal
    geometry: str | None = None   # "conv" or "pool": the key field holds a golden_model.geometry.Geometry

    def reads_slot(self, slot: str) -> bool:
        return any(read.slot == slot for read in self.reads)

    def uses_slot(self, slot: str) -> bool:
        """Whether the instruction reads or writes the slot's TMEM words or exponent (flags aside)."""
        return self.reads_slot(slot) or (slot == "dst" and (self.writes_dst or self.dst_exp is not None))


def _operand(slot: str) -> tuple[Check, ...]:
    return Check(f"dims:{slot}", Status.SHAPE_MISMATCH), Check(f"extent:{slot}", Status.TMEM_RANGE)


_SHAPE, _ACC, _OVERLAP = Status.SHAPE_MISMATCH, Status.ACC_RANGE, Status.OVERLAP
_ELEMENTWISE_PORTS = ("tmem_a", "tmem_b", "amem_w")
_MASKED = flags(f2=1)
_FROZEN = flags(f3=1)
_LABELS = flags(f0=1)
#: CONV's products: forward (f0, f1) = (0, 0), error (0, 1), weight gradient (1, 1)
CONV_ERROR, CONV_GRADIENT = flags(f0=0, f1=1), flags(f0=1, f1=1)

OPS: dict[Op, OpSpec] = {
    Op.HALT: OpSpec(None),
    Op.MATMUL: OpSpec(
        Engine.MATMUL, ports=("tmem_a", "tmem_b", "amem_w"), reads=(Read("a"), Read("b")),
        acc=Acc.PRODUCES, acc_shape="matmul", acc_exp="a+b",
        checks=_operand("a") + _operand("b") + (Check("inner", _SHAPE), Check("acc_fits", _ACC)),
        fields=("a", "b", "f0", "f1")),
    Op.QUANT: OpSpec(
        Engine.QUANT, ports=("amem_r", "tmem_c", "tmem_w"), reads=(Read("b", when=_MASKED),),
        writes_dst=True, dst_exp="sq", acc=Acc.CONSUMES,
        checks=(Check("dims:dst", _SHAPE), Check("dst_acc", _SHAPE), Check("extent:dst", Status.TMEM_RANGE),
                Check("dims:b", _SHAPE, _MASKED), Check("extent:b", Status.TMEM_RANGE, _MASKED),
                Check("b_acc", _SHAPE, _MASKED), Check("overlap:dst,b", _OVERLAP, _MASKED),
                Check("frozen", Status.EXP_RANGE, _FROZEN), Check("exp_fits", Status.EXP_RANGE)),
        fields=("dst", "b", "f0", "f1", "f2", "f3", "f4", "key")),
    Op.SCALE: OpSpec(
        Engine.VECTOR, ports=_ELEMENTWISE_PORTS, reads=(Read("a"), Read("b")),
        acc=Acc.PRODUCES, acc_shape="a", acc_exp="a+b",
        checks=_operand("a") + _operand("b") + (Check("b_scalar", _SHAPE), Check("acc_fits", _ACC)),
        fields=("a", "b")),
    Op.ADD: OpSpec(
        Engine.VECTOR, ports=_ELEMENTWISE_PORTS, reads=(Read("a"), Read("b")),
        acc=Acc.PRODUCES, acc_shape="a", acc_exp="max",
        checks=_operand("a") + _operand("b") + (Check("ab_or_b_scalar", _SHAPE), Check("acc_fits", _ACC)),
        fields=("a", "b")),
    Op.SUM: OpSpec(
        Engine.VECTOR, ports=_ELEMENTWISE_PORTS, reads=(Read("a"),),
        acc=Acc.PRODUCES, acc_shape="scalar", acc_exp="a",
        checks=_operand("a"), fields=("a",)),
    Op.DOT: OpSpec(
        Engine.VECTOR, ports=_ELEMENTWISE_PORTS, reads=(Read("a"), Read("b")),
        acc=Acc.PRODUCES, acc_shape="scalar", acc_exp="a+b",
        checks=_operand("a") + _operand("b") + (Check("ab", _SHAPE),), fields=("a", "b")),
    Op.MASK: OpSpec(
        Engine.VECTOR, ports=("tmem_a", "tmem_b", "tmem_w"), reads=(Read("a"), Read("b")),
        writes_dst=True, dst_exp="a",
        checks=_operand("a") + _operand("b") + (Check("dims:dst", _SHAPE), Check("dst_ab", _SHAPE),
                                                Check("extent:dst", Status.TMEM_RANGE),
                                                Check("overlap:dst,a", _OVERLAP), Check("overlap:dst,b", _OVERLAP)),
        fields=("dst", "a", "b")),
    Op.UPDATE: OpSpec(
        Engine.UPDATE, ports=("tmem_c", "tmem_b", "tmem_w"), reads=(Read("dst"), Read("a")), writes_dst=True,
        checks=_operand("dst") + _operand("a") + (Check("dst_a", _SHAPE), Check("overlap:dst,a", _OVERLAP)),
        fields=("dst", "a", "f1", "lr", "f4", "key")),
    Op.QUPDATE: OpSpec(
        Engine.UPDATE, ports=("tmem_c", "amem_r", "tmem_w"), reads=(Read("dst"),), writes_dst=True,
        acc=Acc.CONSUMES,
        checks=_operand("dst") + (Check("dst_acc", _SHAPE),),
        fields=("dst", "f0", "f1", "lr", "f4", "key")),
    Op.CONV: OpSpec(
        Engine.MATMUL, ports=("tmem_a", "tmem_b", "amem_w"), reads=(Read("a"), Read("b")),
        acc=Acc.PRODUCES, acc_shape="conv", acc_exp="a+b", geometry="conv", illegal=(flags(f0=1, f1=0),),
        checks=_operand("a") + _operand("b") + (Check("dims:dst", _SHAPE, CONV_ERROR), Check("conv", _SHAPE),
                                                Check("acc_fits", _ACC)),
        fields=("dst", "a", "b", "f0", "f1", "key")),
    Op.POOL: OpSpec(
        Engine.VECTOR, ports=_ELEMENTWISE_PORTS, reads=(Read("a"),),
        acc=Acc.PRODUCES, acc_shape="pool", acc_exp="a-window", geometry="pool",
        checks=_operand("a") + (Check("pool", _SHAPE), Check("acc_fits", _ACC)),
        fields=("a", "key")),
    Op.UNPOOL: OpSpec(
        Engine.VECTOR, ports=("tmem_a", "tmem_w"), reads=(Read("a"),), writes_dst=True, dst_exp="a-window",
        geometry="pool",
        checks=_operand("a") + (Check("dims:dst", _SHAPE), Check("unpool", _SHAPE),
                                Check("extent:dst", Status.TMEM_RANGE), Check("disjoint:dst,a", _OVERLAP)),
        fields=("dst", "a", "key")),
    Op.LOSS: OpSpec(
        Engine.LOSS, ports=_ELEMENTWISE_PORTS, reads=(Read("a"), Read("b")),
        acc=Acc.PRODUCES, acc_shape="a", acc_exp="loss-grid",
        checks=_operand("a") + _operand("b") + (Check("loss", _SHAPE), Check("acc_fits", _ACC)),
        fields=("a", "b")),
    Op.LOAD: OpSpec(
        Engine.LOAD, ports=("tmem_w",), writes_dst=True,
        checks=(Check("dims:dst", _SHAPE), Check("extent:dst", Status.TMEM_RANGE),
                Check("labels", _SHAPE, _LABELS), Check("data_fits", Status.DATA_RANGE)),
        fields=("dst", "f0", "f1", "key")),
}


def illegal(word: int) -> str | None:
    """Why a 64-bit word is not a legal instruction (ILLEGAL_INSTRUCTION), or None.

    Unknown opcode, a flag bit the opcode does not define (f2 and f3 are
    QUANT's, f4 QUANT's, UPDATE's and QUPDATE's), a combination of fields the opcode
    refuses (CONV's f0 without f1), or a key that is not a geometry where the
    opcode takes one.  Checked before anything else.
    """
    opcode = word & ((1 << field_width("opcode")) - 1)
    if opcode not in Op._value2member_map_:
        return f"unknown opcode {opcode}"
    inst = Instruction.decode(word)
    spec = OPS[inst.op]
    for flag in STRICT_FLAGS:
        if getattr(inst, flag) and flag not in spec.fields:
            return f"flag {flag} is not defined for {inst.op.name}"
    for condition in spec.illegal:
        if holds(condition, inst):
            return f"{inst.op.name} does not take " + ", ".join(f"{name}={value}" for name, value in condition)
    if spec.geometry is not None:
        try:
            geometry = Geometry.decode(inst.key)
        except ValueError as error:
            return f"{inst.op.name} key {inst.key:#010x}: {error}"
        if spec.geometry == "pool" and not geometry.is_pool():
            return (f"{inst.op.name} needs windows that tile the image with a power-of-two area, stride field 1 "
                    f"and no padding, got {geometry}")
    return None


#: Flag fields that must be 0 on an opcode that does not define them (the others are ignored there).
STRICT_FLAGS = ("f2", "f3", "f4")


def status_bits() -> int:
    """Width of a status code on the device."""
    return max(Status).bit_length()


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
    f3: int = 0
    f4: int = 0

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
          mask: int | None = None, frozen: bool = False, step_key: bool = False) -> Instruction:
    """dst = SQ(ACC) with optional ReLU; nearest or stochastic rounding (``step_key``: ``key`` is a
    tensor's mix and the core derives the key from its seed and step, golden_model/prng.py).

    With ``mask=slot``: dst = where(B > 0, SQ(ACC), 0), B = that slot (ACC's
    shape); the shift still comes from the whole ACC (QUANT then MASK, fused).
    With ``frozen``: the shift is dst.exp - ACC.exp, dst's exponent as the
    table holds it (frozen from training), not the ACC's own SQ shift, so an
    inference result does not depend on the rest of its batch.
    """
    return Instruction(Op.QUANT, dst=dst, b=0 if mask is None else mask, f0=int(relu), f1=int(stochastic),
                       key=key, f2=int(mask is not None), f3=int(frozen), f4=int(step_key))


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


def update(w: int, g: int, lr_shift: int, stochastic: bool = True, key: int = 0,
           step_key: bool = False) -> Instruction:
    """W = saturate(W - round(G * 2**(eG - lr_shift - eW))) (``step_key`` as for :func:`quant`)."""
    return Instruction(Op.UPDATE, dst=w, a=g, lr=lr_shift, f1=int(stochastic), key=key, f4=int(step_key))


def qupdate(w: int, lr_shift: int, stochastic_grad: bool = True, stochastic_update: bool = True,
            key: int = 0, step_key: bool = False) -> Instruction:
    """Fused gradient quantization and update: g = SQ(ACC) (rounding f0, ``key``), then
    W = saturate(W - round(g * 2**(eg - lr_shift - eW))) (rounding f1, prng.update_key(key));
    ``step_key`` as for :func:`quant`."""
    return Instruction(Op.QUPDATE, dst=w, lr=lr_shift, f0=int(stochastic_grad), f1=int(stochastic_update), key=key,
                       f4=int(step_key))


CONV_MODES = {"forward": (0, 0), "error": (0, 1), "gradient": (1, 1)}


def conv(a: int, b: int, geometry: Geometry, mode: str = "forward", dst: int = 0) -> Instruction:
    """The three products of a convolution (golden_model.geometry for the layouts):

    forward   ACC (B*Ho*Wo, O) = im2col(A) . B^T            A = X (B*H*W, C), B = W (O, KH*KW*Cp)
    error     ACC (dst's shape) = col2im(A . B)               A = E (B*Ho*Wo, O), B = W, dst shaped like X
    gradient  ACC (O, KH*KW*Cp) = A^T . im2col(B)           A = E, B = X
    """
    if mode not in CONV_MODES:
        raise ValueError(f"conv mode must be one of {', '.join(CONV_MODES)}, got {mode!r}")
    f0, f1 = CONV_MODES[mode]
    return Instruction(Op.CONV, dst=dst, a=a, b=b, f0=f0, f1=f1, key=geometry.encode())


def pool(a: int, geometry: Geometry) -> Instruction:
    """ACC (B*(H/KH)*(W/KW), C) = sum of each KH x KW window of A; ACC.exp = eA - log2(KH*KW) (average pooling)."""
    return Instruction(Op.POOL, a=a, key=geometry.encode())


def loss(logits: int, labels: int) -> Instruction:
    """ACC (B, C) = (softmax(A) - onehot(B)) / B on the grid 2**loss_fixed_exp, in integers
    (golden_model/int_loss.py); A = the int8 logits (B, C), B = the labels (B, 1)."""
    return Instruction(Op.LOSS, a=logits, b=labels)


def data_set(base: int, count: int) -> int:
    """LOAD's key: a data set of ``count`` samples from sample ``base`` of the data memory."""
    if not (0 <= base < 1 << 16 and 0 < count < 1 << 16):
        raise ValueError(f"a data set is base 0..65535 and count 1..65535 samples, got base {base}, count {count}")
    return base | count << 16


def split_data_set(key: int) -> tuple[int, int]:
    """(base, count) of LOAD's key."""
    return key & 0xFFFF, key >> 16


def load(dst: int, base: int, count: int, labels: bool = False, shuffle: bool = False) -> Instruction:
    """dst = the next batch (dst's rows) of the data set of ``count`` samples from ``base``: their features,
    or with ``labels`` their labels (dst (B, 1)).  ``shuffle``: the training stream, drawn in the epoch's
    Feistel order (golden_model/shuffle.py) from the core's train cursor, epoch after epoch; else the
    evaluation stream, in order from the eval cursor, rows past the end zero with label -1.  A feature
    LOAD advances its cursor; a label LOAD does not, so it comes first (docs/isa.md)."""
    return Instruction(Op.LOAD, dst=dst, f0=int(labels), f1=int(shuffle), key=data_set(base, count))


def unpool(dst: int, a: int, geometry: Geometry) -> Instruction:
    """dst (B*H*W, C) = A's value of each pixel's window; dst.exp = eA - log2(KH*KW) (the pooling's error)."""
    return Instruction(Op.UNPOOL, dst=dst, a=a, key=geometry.encode())
