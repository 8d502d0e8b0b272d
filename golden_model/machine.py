"""Instruction-level golden model of the core: memories, tensor table, ACC.

Executes programs of golden_model.isa instructions with the same quant.py
functions as the network model, so a program that spells out a training step
produces exactly what network.ResMLP produces.  Every instruction first runs
the checks of its row in the opcode table (isa.OPS), each rule of
isa.CHECK_RULES implemented once here (``_rule_<name>``), then its semantics
(:data:`SEMANTICS`).  The hardware is checked against this machine state
(TMEM words, tensor table, ACC) instruction by instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .config import CoreConfig
from .conv import conv_error_acc, conv_forward_acc, conv_gradient_acc, padded_channels, pool_acc, pool_shift, unpool
from .geometry import Geometry
from .int_loss import softmax_grid
from .isa import (CHECK_RULES, CONV_ERROR, CONV_GRADIENT, OPS, Check, Instruction, Op, Status, holds, illegal,
                  split_data_set)
from .prng import MASK32, check_word, step_key, update_key
from .shuffle import epoch_key, permute
from .quant import QTensor, check_acc, round_shift, saturate, shift_quantize, sq_shift, update_weights


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


#: Widths of the loss counters (they wrap): samples and correct count rows, loss_bits sums Q16 bits.
COUNTER_BITS = {"samples": 32, "correct": 32, "loss_bits": 64}


@dataclass
class LossCounters:
    """What LOSS adds up over the rows whose label is a class: the rows, those whose first largest logit
    is the label, and their cross-entropy -log2 p[label] in Q16 bits (golden int_loss.softmax_grid)."""

    samples: int = 0
    correct: int = 0
    loss_bits: int = 0

    def add(self, samples: int, correct: int, loss_bits: int) -> None:
        for name, value in (("samples", samples), ("correct", correct), ("loss_bits", loss_bits)):
            setattr(self, name, (getattr(self, name) + value) % (1 << COUNTER_BITS[name]))


#: Widths of the data cursor's fields (docs/isa.md, LOAD).
CURSOR_BITS = {"epoch": 32, "train": 16, "eval": 16}
#: the label of a padding row (past the end of an evaluation set): no class
NO_LABEL = -1


def check_cursor(epoch: int, train: int, eval: int) -> None:
    """ValueError unless each field fits its CURSOR_BITS (Machine.set_cursor's and the client's check)."""
    for name, value in (("epoch", epoch), ("train", train), ("eval", eval)):
        if not 0 <= value < 1 << CURSOR_BITS[name]:
            raise ValueError(f"cursor {name} must fit {CURSOR_BITS[name]} bits, got {value}")


def check_passes(passes: int) -> None:
    """ValueError unless a LOOP's pass count is 1 .. 2**32 - 1 (what LOOP's 32-bit field holds, 0 refused)."""
    if not 1 <= passes < 1 << 32:
        raise ValueError(f"passes must be in [1, 2**32), got {passes}")


@dataclass
class Cursor:
    """Where LOAD's two streams stand: the training stream's epoch and its position in the epoch's order,
    and the evaluation stream's position (it stops at 2**16 - 1)."""

    epoch: int = 0
    train: int = 0
    eval: int = 0


@dataclass(frozen=True)
class TensorPlace:
    """Where a program puts a tensor: its table slot and its TMEM words (base, rows x cols int8)."""

    slot: int
    base: int
    rows: int
    cols: int


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
        self.seed, self.step = 0, 0
        self.counters = LossCounters()
        self.data = np.zeros((cfg.data_words, cfg.lanes), dtype=np.int8)
        self.labels = np.zeros(cfg.data_samples, dtype=np.int8)
        self.cursor = Cursor()
        self.passes = 0

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

    def set_keys(self, seed: int, step: int) -> None:
        """The seed and step a step-key instruction (f4) derives its key from (prng.step_key)."""
        check_word("seed", seed)
        check_word("step", step)
        self.seed, self.step = seed, step

    def read_counters(self) -> LossCounters:
        """A copy of the loss counters."""
        return replace(self.counters)

    def clear_counters(self) -> None:
        """The loss counters start again from 0 (the host reads an epoch's, then clears them)."""
        self.counters = LossCounters()

    def write_data(self, addr: int, words: np.ndarray) -> None:
        """Write data-memory words (rows of ``lanes`` int8) from word ``addr`` on."""
        words = np.asarray(words, dtype=np.int8).reshape(-1, self.cfg.lanes)
        if addr < 0 or addr + len(words) > self.cfg.data_words:
            raise ValueError(f"{len(words)} data words at {addr} exceed data_words {self.cfg.data_words}")
        self.data[addr:addr + len(words)] = words

    def write_labels(self, addr: int, labels: np.ndarray) -> None:
        """Write label-memory entries (int8 classes) from sample ``addr`` on."""
        labels = np.asarray(labels, dtype=np.int8).reshape(-1)
        if addr < 0 or addr + len(labels) > self.cfg.data_samples:
            raise ValueError(f"{len(labels)} labels at {addr} exceed data_samples {self.cfg.data_samples}")
        self.labels[addr:addr + len(labels)] = labels

    def set_cursor(self, epoch: int, train: int, eval: int) -> None:
        """Where LOAD's streams continue (the host starts a run at 0, 0, 0 and an evaluation at eval 0)."""
        check_cursor(epoch, train, eval)
        self.cursor = Cursor(epoch, train, eval)

    def loop(self, pc: int, passes: int, advance: bool) -> None:
        """Run the program at pc ``passes`` times; with ``advance`` the step register counts each pass
        (the core's LOOP: a training epoch is one LOOP of its steps)."""
        check_passes(passes)
        self.passes = passes                  # the passes left, the current one included (a failing one stays)
        while self.passes:
            self.run(pc)
            if advance:
                self.step = (self.step + 1) & MASK32
            self.passes -= 1

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
            problem = illegal(word)
            if problem:
                self._fail(Status.ILLEGAL_INSTRUCTION, problem)
            inst = Instruction.decode(word)
            if inst.op == Op.HALT:
                return executed
            self.execute(inst)
            self.pc += 1
        raise RuntimeError(f"program did not halt within {max_steps} instructions")

    def _fail(self, status: Status, detail: str):
        self.status = status
        raise MachineError(status, self.pc, detail)

    def execute(self, inst: Instruction) -> None:
        """Check ``inst`` in the table's order (isa.OPS), then apply its semantics."""
        spec = OPS[inst.op]
        for check in spec.checks:
            if holds(check.when, inst):
                self._check(check, inst)
        SEMANTICS[inst.op](self, replace(inst, key=self.key_of(inst), f4=0) if inst.f4 else inst)

    def key_of(self, inst: Instruction) -> int:
        """The rounding key ``inst`` uses: its key field, or with f4 (a step key) prng.step_key of the
        seed and step registers and the field (a tensor's mix)."""
        return step_key(self.seed, self.step, inst.key) if inst.f4 else inst.key

    # --- the check rules (isa.CHECK_RULES) -----------------------------------
    def _check(self, check: Check, inst: Instruction) -> None:
        rule, _, args = check.rule.partition(":")
        slots = [getattr(inst, name) for name in args.split(",")] if args else []
        entries = [self.table[slot] for slot in slots]
        ok = getattr(self, f"_rule_{rule}")(inst, *entries)
        if not ok:
            operands = ", ".join(f"slot {slot} ({e.rows}x{e.cols} at word {e.base})" for slot, e in zip(slots, entries))
            self._fail(check.status, f"{inst.op.name}: {CHECK_RULES[check.rule]} fails" +
                       (f" for {operands}" if operands else f" (ACC {self.acc.shape})"))

    def _rule_dims(self, inst, entry):
        limit = self.cfg.max_dim
        return 1 <= entry.rows <= limit and 1 <= entry.cols <= limit

    def _rule_extent(self, inst, entry):
        return self._in_range(entry)

    def _shape(self, slot: int) -> tuple[int, int]:
        entry = self.table[slot]
        return entry.rows, entry.cols

    def _matmul_operands(self, inst) -> tuple[tuple[int, int], tuple[int, int]]:
        """Shapes of op(A) and op(B)."""
        a, b = self._shape(inst.a), self._shape(inst.b)
        return (a[::-1] if inst.f0 else a), (b[::-1] if inst.f1 else b)

    def _rule_inner(self, inst):
        a, b = self._matmul_operands(inst)
        return a[1] == b[1]

    def _rule_b_scalar(self, inst):
        return self._shape(inst.b) == (1, 1)

    def _rule_ab_or_b_scalar(self, inst):
        return self._shape(inst.b) in (self._shape(inst.a), (1, 1))

    def _rule_ab(self, inst):
        return self._shape(inst.a) == self._shape(inst.b)

    def _rule_dst_ab(self, inst):
        return self._shape(inst.a) == self._shape(inst.b) == self._shape(inst.dst)

    def _rule_dst_a(self, inst):
        return self._shape(inst.dst) == self._shape(inst.a)

    def _rule_dst_acc(self, inst):
        return self._shape(inst.dst) == self.acc.shape

    def _rule_b_acc(self, inst):
        return self._shape(inst.b) == self.acc.shape

    def _rule_acc_fits(self, inst):
        rows, cols = self.acc_shape_of(inst)
        return rows * words_per_row(cols, self.cfg.lanes) <= self.cfg.acc_words

    def _rule_overlap(self, inst, dst, src):
        """A TMEM destination is its source (same base) or disjoint from it: the core streams
        sources while it writes, so a partly overlapping destination would be read back."""
        (dst_lo, dst_hi), (src_lo, src_hi) = self._words(dst), self._words(src)
        return dst_lo == src_lo or not (dst_lo < src_hi and src_lo < dst_hi)

    def _rule_disjoint(self, inst, dst, src):
        (dst_lo, dst_hi), (src_lo, src_hi) = self._words(dst), self._words(src)
        return not (dst_lo < src_hi and src_lo < dst_hi)

    def _padded_cols(self, cols: int) -> int:
        """Columns of a row padded to whole words: the channels a tap of a weight row holds."""
        return padded_channels(cols, self.cfg.lanes)

    def _rule_conv(self, inst):
        g = Geometry.decode(inst.key)
        a, b = self._shape(inst.a), self._shape(inst.b)
        if holds(CONV_GRADIENT, inst):
            return a[0] == g.out_rows and b[0] == g.in_rows
        if holds(CONV_ERROR, inst):
            x = self._shape(inst.dst)
            return (a[0] == g.out_rows and a[1] == b[0] and x[0] == g.in_rows
                    and b[1] == g.taps * self._padded_cols(x[1]))
        return a[0] == g.in_rows and b[1] == g.taps * self._padded_cols(a[1])

    def _rule_pool(self, inst):
        return self._shape(inst.a)[0] == Geometry.decode(inst.key).in_rows

    def _rule_unpool(self, inst):
        g = Geometry.decode(inst.key)
        a, dst = self._shape(inst.a), self._shape(inst.dst)
        return a[0] == g.pool_map().out_rows and dst == (g.in_rows, a[1])

    def _rule_loss(self, inst):
        (rows, cols), labels = self._shape(inst.a), self._shape(inst.b)
        return labels == (rows, 1) and cols <= self.cfg.max_features

    def _rule_labels(self, inst):
        return self._shape(inst.dst)[1] == 1

    def _rule_data_fits(self, inst):
        base, count = split_data_set(inst.key)
        end = base + count
        stride = words_per_row(self._shape(inst.dst)[1], self.cfg.lanes)
        return count >= 1 and end <= self.cfg.data_samples and end * stride <= self.cfg.data_words

    def _rule_frozen(self, inst):
        return self.table[inst.dst].exp >= self.acc_exp

    def _rule_exp_fits(self, inst):
        limit = 1 << (self.cfg.exp_bits - 1)
        return -limit <= self.dst_exponent_of(inst) < limit

    # --- the ACC rules (isa.ACC_SHAPES, isa.ACC_EXPONENTS) --------------------
    def acc_shape_of(self, inst: Instruction) -> tuple[int, int]:
        """Shape of the ACC a producer writes."""
        rule = OPS[inst.op].acc_shape
        if rule == "matmul":
            a, b = self._matmul_operands(inst)
            return a[0], b[0]
        if rule == "conv":
            g = Geometry.decode(inst.key)
            if holds(CONV_GRADIENT, inst):
                return self._shape(inst.a)[1], g.taps * self._padded_cols(self._shape(inst.b)[1])
            if holds(CONV_ERROR, inst):
                return self._shape(inst.dst)
            return g.out_rows, self._shape(inst.b)[0]
        if rule == "pool":
            return Geometry.decode(inst.key).pool_map().out_rows, self._shape(inst.a)[1]
        return self._shape(inst.a) if rule == "a" else (1, 1)

    def acc_exponent_of(self, inst: Instruction) -> int:
        """Exponent of the ACC a producer writes."""
        rule = OPS[inst.op].acc_exp
        ea, eb = self.table[inst.a].exp, self.table[inst.b].exp
        if rule == "a-window":
            return ea - self._window_shift(inst)
        if rule == "loss-grid":
            return self.cfg.loss_fixed_exp
        return {"a+b": ea + eb, "max": max(ea, eb), "a": ea}[rule]

    @staticmethod
    def _window_shift(inst: Instruction) -> int:
        """log2 of the pooling window's area (a power of two: isa.illegal checks it)."""
        return pool_shift(Geometry.decode(inst.key))

    def quant_shift(self, inst: Instruction) -> int:
        """The shift a consumer quantizes the ACC by: the SQ shift (after QUANT's ReLU when f0 is set), or
        with QUANT's f3 the frozen dst.exp - ACC.exp."""
        if inst.op == Op.QUANT and inst.f3:
            return self.table[inst.dst].exp - self.acc_exp
        relu = inst.op == Op.QUANT and inst.f0
        return sq_shift(np.maximum(self.acc, 0) if relu else self.acc, self.cfg)

    def quant_exponent(self, inst: Instruction) -> int:
        return self.acc_exp + self.quant_shift(inst)

    def dst_exponent_of(self, inst: Instruction) -> int:
        """The exponent an instruction writes to dst (isa.DST_EXPONENTS)."""
        rule = OPS[inst.op].dst_exp
        if rule == "sq":
            return self.quant_exponent(inst)
        return self.table[inst.a].exp - (self._window_shift(inst) if rule == "a-window" else 0)

    # --- semantics, one function per opcode (SEMANTICS) -----------------------
    def _load_slot(self, slot: int) -> np.ndarray:
        return self._load(self.table[slot]).astype(np.int64)

    def _produce(self, inst: Instruction, values: np.ndarray) -> None:
        if values.shape != self.acc_shape_of(inst):
            raise AssertionError(f"{inst.op.name} produced {values.shape}, the table says {self.acc_shape_of(inst)}")
        self.acc, self.acc_exp = check_acc(inst.op.name, values, self.cfg), self.acc_exponent_of(inst)

    def _quantized_acc(self, inst: Instruction, stochastic: int) -> QTensor:
        """SQ of the ACC (quant.shift_quantize), QUANT's ReLU when f0 is set; with f3 the frozen shift."""
        relu = inst.op == Op.QUANT and bool(inst.f0)
        mode = "stochastic" if stochastic else "nearest"
        if inst.op == Op.QUANT and inst.f3:
            acc = np.maximum(self.acc, 0) if relu else self.acc
            return QTensor(saturate(round_shift(acc, self.quant_shift(inst), mode, self.cfg, inst.key), self.cfg),
                           self.table[inst.dst].exp)
        return shift_quantize(self.acc, self.acc_exp, mode, self.cfg, inst.key, relu=relu)

    def _matmul(self, inst):
        a, b = self._load_slot(inst.a), self._load_slot(inst.b)
        a = a.T if inst.f0 else a
        b = b.T if inst.f1 else b
        self._produce(inst, a @ b.T)
        self.useful_macs += a.shape[0] * b.shape[0] * a.shape[1]

    def _quant(self, inst):
        q = self._quantized_acc(inst, inst.f1)
        values = q.q
        if inst.f2:
            values = np.where(self._load_slot(inst.b) > 0, values, 0).astype(np.int8)
        dst = self.table[inst.dst]
        dst.exp = self.dst_exponent_of(inst)
        self._store(dst, values)

    def _scale(self, inst):
        a, m = self._load_slot(inst.a), self._load_slot(inst.b)
        self._produce(inst, a * m[0, 0])
        self.useful_macs += a.size

    def _add(self, inst):
        ea, eb = self.table[inst.a].exp, self.table[inst.b].exp
        exp = max(ea, eb)
        a = round_shift(self._load_slot(inst.a), exp - ea, "nearest", self.cfg)
        b = round_shift(self._load_slot(inst.b), exp - eb, "nearest", self.cfg)
        self._produce(inst, a + b)

    def _sum(self, inst):
        self._produce(inst, np.array([[self._load_slot(inst.a).sum()]]))

    def _dot(self, inst):
        a, b = self._load_slot(inst.a), self._load_slot(inst.b)
        self._produce(inst, np.array([[np.sum(a * b)]]))
        self.useful_macs += a.size

    def _mask(self, inst):
        a, b = self._load_slot(inst.a), self._load_slot(inst.b)
        dst = self.table[inst.dst]
        exp = self.dst_exponent_of(inst)
        self._store(dst, np.where(b > 0, a, 0).astype(np.int8))
        dst.exp = exp

    def _update(self, inst):
        w, g = self.table[inst.dst], self.table[inst.a]
        mode = "stochastic" if inst.f1 else "nearest"
        new = update_weights(QTensor(self._load(w), w.exp), QTensor(self._load(g), g.exp), inst.lr, mode, self.cfg,
                             inst.key)
        self._store(w, new.q)

    def _qupdate(self, inst):
        w = self.table[inst.dst]
        g = self._quantized_acc(inst, inst.f0)
        mode = "stochastic" if inst.f1 else "nearest"
        new = update_weights(QTensor(self._load(w), w.exp), g, inst.lr, mode, self.cfg, update_key(inst.key))
        self._store(w, new.q)


    def _conv(self, inst):
        g, lanes = Geometry.decode(inst.key), self.cfg.lanes
        a, b = self._load_slot(inst.a), self._load_slot(inst.b)
        if holds(CONV_GRADIENT, inst):                  # (O, taps * Cp) = E^T . im2col(X)
            self._produce(inst, conv_gradient_acc(a, b, g, lanes))
            self.useful_macs += a.shape[1] * g.taps * b.shape[1] * g.out_rows
        elif holds(CONV_ERROR, inst):                   # dst-shaped ACC = col2im(E . W)
            channels = self._shape(inst.dst)[1]
            self._produce(inst, conv_error_acc(a, b, g, channels))
            self.useful_macs += g.out_rows * a.shape[1] * g.taps * channels
        else:                                           # (B*Ho*Wo, O) = im2col(X) . W^T
            self._produce(inst, conv_forward_acc(a, b, g, lanes))
            self.useful_macs += g.out_rows * b.shape[0] * g.taps * a.shape[1]

    def _pool(self, inst):
        self._produce(inst, pool_acc(self._load_slot(inst.a), Geometry.decode(inst.key)))

    def _unpool(self, inst):
        dst = self.table[inst.dst]
        exp = self.dst_exponent_of(inst)
        self._store(dst, unpool(self._load(self.table[inst.a]), Geometry.decode(inst.key)))
        dst.exp = exp

    def _loss(self, inst):
        logits = QTensor(self._load(self.table[inst.a]), self.table[inst.a].exp)
        labels = self._load_slot(inst.b)[:, 0]
        grid, bits = softmax_grid(logits, labels, self.cfg)
        self._produce(inst, grid)
        labelled = (labels >= 0) & (labels < logits.q.shape[1])
        top = np.argmax(logits.q, axis=1)
        self.counters.add(int(labelled.sum()), int((labelled & (top == labels)).sum()), int(bits[labelled].sum()))

    def batch_samples(self, inst: Instruction, rows: int) -> tuple[list[int], Cursor]:
        """The data-memory samples of a LOAD's ``rows`` rows (NO_LABEL: a padding row) and the cursor after.

        The training stream (f1) takes position p of the epoch's order, ``base + permute(p, count,
        epoch_key(seed, epoch))``, and starts the next epoch at a row that finds p >= count; the
        evaluation stream takes ``base + p`` while p < count and pads after."""
        base, count = split_data_set(inst.key)
        cursor, samples = replace(self.cursor), []
        for _ in range(rows):
            if inst.f1:
                if cursor.train >= count:
                    cursor.train, cursor.epoch = 0, (cursor.epoch + 1) & MASK32
                samples.append(base + int(permute(cursor.train, count, epoch_key(self.seed, cursor.epoch))))
                cursor.train += 1
            else:
                samples.append(base + cursor.eval if cursor.eval < count else NO_LABEL)
                cursor.eval = min(cursor.eval + 1, (1 << CURSOR_BITS["eval"]) - 1)
        return samples, cursor

    def _load_data(self, inst):
        dst = self.table[inst.dst]
        samples, cursor = self.batch_samples(inst, dst.rows)
        if inst.f0:
            values = np.array([[self.labels[s] if s != NO_LABEL else NO_LABEL] for s in samples], dtype=np.int8)
        else:
            stride = words_per_row(dst.cols, self.cfg.lanes)
            values = np.zeros((dst.rows, dst.cols), dtype=np.int8)
            for row, sample in enumerate(samples):
                if sample != NO_LABEL:
                    values[row] = self.data[sample * stride:(sample + 1) * stride].reshape(-1)[:dst.cols]
            self.cursor = cursor
        self._store(dst, values)


#: opcode -> its golden semantics (run after the table's checks passed)
SEMANTICS = {
    Op.MATMUL: Machine._matmul, Op.QUANT: Machine._quant, Op.SCALE: Machine._scale, Op.ADD: Machine._add,
    Op.SUM: Machine._sum, Op.DOT: Machine._dot, Op.MASK: Machine._mask, Op.UPDATE: Machine._update,
    Op.QUPDATE: Machine._qupdate, Op.CONV: Machine._conv, Op.POOL: Machine._pool, Op.UNPOOL: Machine._unpool,
    Op.LOSS: Machine._loss, Op.LOAD: Machine._load_data,
}
