"""Instruction-level golden model of the core: memories, tensor table, ACC.

Executes programs of golden_model.isa instructions with the same quant.py
functions as the network model, so a program that spells out a training step
produces exactly what network.ResMLP produces.  The hardware is checked
against this machine state (TMEM words, tensor table, ACC) instruction by
instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import CoreConfig
from .isa import Instruction, Op, Status
from .prng import update_key
from .quant import QTensor, bit_length, round_shift, saturate, update_weights


class MachineError(Exception):
    """Raised by Machine.run when the device would stop with a non-zero status."""

    def __init__(self, status: Status, pc: int, detail: str):
        super().__init__(f"{status.name} at pc {pc}: {detail}")
        self.status, self.pc, self.detail = status, pc, detail


@dataclass
class TensorEntry:
    base: int = 0
    rows: int = 0
    cols: int = 0
    exp: int = 0


def words_per_row(cols: int, lanes: int) -> int:
    return -(-cols // lanes)


class Machine:
    """TMEM (int8 words of cfg.lanes), ACC (int32 tensor), tensor table, program memory."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        self.tmem = np.zeros((cfg.tmem_words, cfg.lanes), dtype=np.int8)
        self.table = [TensorEntry() for _ in range(cfg.tensor_slots)]
        self.program = [0] * cfg.program_depth
        self.acc = np.zeros((0, 0), dtype=np.int64)
        self.acc_exp = 0
        self.status = Status.OK
        self.pc = 0
        self.useful_macs = 0

    # --- host-side access -------------------------------------------------
    def set_tensor(self, slot: int, base: int, rows: int, cols: int, exp: int) -> None:
        self._check_slot(slot)
        self.table[slot] = TensorEntry(base, rows, cols, exp)

    def write_tensor(self, slot: int, t: QTensor) -> None:
        """Write t's mantissas into the slot's TMEM words and its exponent into the table."""
        entry = self.table[slot]
        if t.q.shape != (entry.rows, entry.cols):
            raise ValueError(f"tensor slot {slot} holds {entry.rows}x{entry.cols}, got shape {t.q.shape}")
        self._store(entry, t.q)
        entry.exp = t.exp

    def read_tensor(self, slot: int) -> QTensor:
        entry = self.table[slot]
        return QTensor(self._load(entry), entry.exp)

    def load_program(self, words: list[int], start: int = 0) -> None:
        if start < 0 or start + len(words) > self.cfg.program_depth:
            raise ValueError(f"program of {len(words)} words at {start} exceeds program_depth {self.cfg.program_depth}")
        self.program[start:start + len(words)] = list(words)

    # --- memory layout ----------------------------------------------------
    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.cfg.tensor_slots:
            raise ValueError(f"tensor slot {slot} out of range [0, {self.cfg.tensor_slots})")

    def _span(self, entry: TensorEntry) -> tuple[int, int]:
        stride = words_per_row(entry.cols, self.cfg.lanes)
        return stride, entry.base + entry.rows * stride

    def _in_range(self, entry: TensorEntry) -> bool:
        return self._span(entry)[1] <= self.cfg.tmem_words

    def _check_overlap(self, dst_slot: int, src_slot: int) -> None:
        """A TMEM destination is its source (same base) or disjoint from it: the core streams
        sources while it writes, so a partly overlapping destination would be read back."""
        (dst_lo, dst_hi), (src_lo, src_hi) = (self._words(self.table[s]) for s in (dst_slot, src_slot))
        if dst_lo != src_lo and dst_lo < src_hi and src_lo < dst_hi:
            self._fail(Status.OVERLAP, f"destination slot {dst_slot} (words {dst_lo}..{dst_hi - 1}) partly overlaps "
                                       f"source slot {src_slot} (words {src_lo}..{src_hi - 1})")

    def _words(self, entry: TensorEntry) -> tuple[int, int]:
        return entry.base, self._span(entry)[1]

    def _load(self, entry: TensorEntry) -> np.ndarray:
        stride, end = self._span(entry)
        if end > self.cfg.tmem_words:
            raise ValueError(f"tensor at word {entry.base} of {entry.rows}x{entry.cols} exceeds TMEM")
        words = self.tmem[entry.base:end].reshape(entry.rows, stride * self.cfg.lanes)
        return words[:, :entry.cols].copy()

    def _store(self, entry: TensorEntry, q: np.ndarray) -> None:
        stride, end = self._span(entry)
        if end > self.cfg.tmem_words:
            raise ValueError(f"tensor at word {entry.base} of {entry.rows}x{entry.cols} exceeds TMEM")
        padded = np.zeros((entry.rows, stride * self.cfg.lanes), dtype=np.int8)
        padded[:, :entry.cols] = q
        self.tmem[entry.base:end] = padded.reshape(-1, self.cfg.lanes)

    # --- execution ----------------------------------------------------------
    def run(self, pc: int = 0, max_steps: int = 100_000) -> int:
        """Run from pc until HALT; return the number of instructions executed."""
        self.pc, self.status = pc, Status.OK
        for executed in range(max_steps):
            if not 0 <= self.pc < self.cfg.program_depth:
                self._fail(Status.PC_RANGE, "no HALT before the end of program memory")
            word = self.program[self.pc]
            try:
                inst = Instruction.decode(word)
            except ValueError as error:
                self._fail(Status.ILLEGAL_INSTRUCTION, str(error))
            if inst.reserved:
                self._fail(Status.ILLEGAL_INSTRUCTION, f"reserved bits {inst.reserved:#x} set")
            if inst.f2 and inst.op != Op.QUANT:
                self._fail(Status.ILLEGAL_INSTRUCTION, f"flag f2 is defined for QUANT only, set on {inst.op.name}")
            if inst.op == Op.HALT:
                return executed
            self.execute(inst)
            self.pc += 1
        raise RuntimeError(f"program did not halt within {max_steps} instructions")

    def _fail(self, status: Status, detail: str):
        self.status = status
        raise MachineError(status, self.pc, detail)

    def _check_dims(self, slot: int) -> None:
        """Every tensor an instruction touches has 1..max_dim rows and columns."""
        entry = self.table[slot]
        limit = self.cfg.max_dim
        if not (1 <= entry.rows <= limit and 1 <= entry.cols <= limit):
            self._fail(Status.SHAPE_MISMATCH,
                       f"slot {slot} is {entry.rows}x{entry.cols}; the core handles 1..{limit} rows and columns")

    def _operand(self, slot: int) -> tuple[TensorEntry, np.ndarray]:
        self._check_dims(slot)
        entry = self.table[slot]
        if not self._in_range(entry):
            self._fail(Status.TMEM_RANGE, f"slot {slot} ({entry.rows}x{entry.cols} at word {entry.base}) exceeds TMEM")
        return entry, self._load(entry).astype(np.int64)

    def _set_acc(self, values: np.ndarray, exp: int) -> None:
        rows, cols = values.shape
        if rows * words_per_row(cols, self.cfg.lanes) > self.cfg.acc_words:
            self._fail(Status.ACC_RANGE, f"result {values.shape} needs more than the {self.cfg.acc_words} "
                                         f"accumulator words")
        self.acc, self.acc_exp = values, exp

    def _set_exp(self, entry: TensorEntry, exp: int) -> None:
        limit = 1 << (self.cfg.exp_bits - 1)
        if not -limit <= exp < limit:
            self._fail(Status.EXP_RANGE, f"exponent {exp} does not fit {self.cfg.exp_bits} bits")
        entry.exp = exp

    def _sq(self, acc: np.ndarray, stochastic: int, key: int) -> tuple[np.ndarray, int]:
        """SQ of an ACC tensor: int8 mantissas and the shift (from its own max |x|)."""
        cfg = self.cfg
        peak = int(np.abs(acc).max()) if acc.size else 0
        shift = max(0, bit_length(peak) - (cfg.data_bits - 1))
        mode = "stochastic" if stochastic else "nearest"
        return saturate(round_shift(acc, shift, mode, cfg, key), cfg), shift

    def execute(self, inst: Instruction) -> None:
        cfg = self.cfg
        op = inst.op
        if op == Op.MATMUL:
            ea, a = self._operand(inst.a)
            eb, b = self._operand(inst.b)
            a = a.T if inst.f0 else a
            b = b.T if inst.f1 else b
            if a.shape[1] != b.shape[1]:
                self._fail(Status.SHAPE_MISMATCH, f"MATMUL inner dimensions {a.shape} . {b.shape}^T")
            self._set_acc(a @ b.T, ea.exp + eb.exp)
            self.useful_macs += a.shape[0] * b.shape[0] * a.shape[1]
        elif op == Op.QUANT:
            self._check_dims(inst.dst)
            dst = self.table[inst.dst]
            if (dst.rows, dst.cols) != self.acc.shape:
                self._fail(Status.SHAPE_MISMATCH, f"QUANT into {dst.rows}x{dst.cols} from ACC {self.acc.shape}")
            if not self._in_range(dst):
                self._fail(Status.TMEM_RANGE, f"slot {inst.dst} exceeds TMEM")
            if inst.f2:
                _, b = self._operand(inst.b)
                if b.shape != self.acc.shape:
                    self._fail(Status.SHAPE_MISMATCH, f"QUANT mask {b.shape} for ACC {self.acc.shape}")
                self._check_overlap(inst.dst, inst.b)
            q, shift = self._sq(np.maximum(self.acc, 0) if inst.f0 else self.acc, inst.f1, inst.key)
            if inst.f2:
                q = np.where(b > 0, q, 0).astype(np.int8)
            self._set_exp(dst, self.acc_exp + shift)
            self._store(dst, q)
        elif op == Op.SCALE:
            ea, a = self._operand(inst.a)
            em, m = self._operand(inst.b)
            if m.shape != (1, 1):
                self._fail(Status.SHAPE_MISMATCH, f"SCALE multiplier must be 1x1, got {m.shape}")
            self._set_acc(a * m[0, 0], ea.exp + em.exp)
            self.useful_macs += a.size
        elif op == Op.ADD:
            ea, a = self._operand(inst.a)
            eb, b = self._operand(inst.b)
            if b.shape != a.shape and b.shape != (1, 1):
                self._fail(Status.SHAPE_MISMATCH, f"ADD of {a.shape} and {b.shape}")
            exp = max(ea.exp, eb.exp)
            aligned_a = round_shift(a, exp - ea.exp, "nearest", cfg)
            aligned_b = round_shift(b, exp - eb.exp, "nearest", cfg)
            self._set_acc(aligned_a + aligned_b, exp)
        elif op == Op.SUM:
            ea, a = self._operand(inst.a)
            self._set_acc(np.array([[a.sum()]]), ea.exp)
        elif op == Op.DOT:
            ea, a = self._operand(inst.a)
            eb, b = self._operand(inst.b)
            if a.shape != b.shape:
                self._fail(Status.SHAPE_MISMATCH, f"DOT of {a.shape} and {b.shape}")
            self._set_acc(np.array([[np.sum(a * b)]]), ea.exp + eb.exp)
            self.useful_macs += a.size
        elif op == Op.MASK:
            ea, a = self._operand(inst.a)
            _, b = self._operand(inst.b)
            self._check_dims(inst.dst)
            dst = self.table[inst.dst]
            if a.shape != b.shape or (dst.rows, dst.cols) != a.shape:
                self._fail(Status.SHAPE_MISMATCH, f"MASK of {a.shape} by {b.shape} into {dst.rows}x{dst.cols}")
            if not self._in_range(dst):
                self._fail(Status.TMEM_RANGE, f"slot {inst.dst} exceeds TMEM")
            self._check_overlap(inst.dst, inst.a)
            self._check_overlap(inst.dst, inst.b)
            exp = ea.exp
            self._store(dst, np.where(b > 0, a, 0).astype(np.int8))
            dst.exp = exp
        elif op == Op.UPDATE:
            ew, w = self._operand(inst.dst)
            eg, g = self._operand(inst.a)
            if w.shape != g.shape:
                self._fail(Status.SHAPE_MISMATCH, f"UPDATE of {w.shape} by gradient {g.shape}")
            self._check_overlap(inst.dst, inst.a)
            mode = "stochastic" if inst.f1 else "nearest"
            new = update_weights(QTensor(w.astype(np.int8), ew.exp), QTensor(g.astype(np.int8), eg.exp),
                                 inst.lr, mode, cfg, inst.key)
            self._store(ew, new.q)
        elif op == Op.QUPDATE:
            ew, w = self._operand(inst.dst)
            if w.shape != self.acc.shape:
                self._fail(Status.SHAPE_MISMATCH, f"QUPDATE of {w.shape} by the ACC gradient {self.acc.shape}")
            g, shift = self._sq(self.acc, inst.f0, inst.key)
            mode = "stochastic" if inst.f1 else "nearest"
            new = update_weights(QTensor(w.astype(np.int8), ew.exp), QTensor(g, self.acc_exp + shift),
                                 inst.lr, mode, cfg, update_key(inst.key))
            self._store(ew, new.q)
        else:
            self._fail(Status.ILLEGAL_INSTRUCTION, f"opcode {op} not executable")

