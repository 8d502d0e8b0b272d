"""The sequencer: fetches instructions, checks them, dispatches them to engines.

Per instruction: FETCH (program memory read) -> DECODE -> CHECK (the same
shape / range / exponent checks as golden_model.machine, in the same order,
so the same status code comes out) -> ISSUE (one command beat to the
engine).  CHECK works on pipeline registers: the tensor table answers one
cycle after it is given the slots, and the range products, comparisons and
the engine command computed from its entries are registered once more
before CHECK uses them (``settle`` counts these two cycles down after
anything they depend on changes), which keeps the table lookup, the
rows x stride multiplies and the error priority out of one clock period.
The sequencer does not wait for the engine: the next
instruction is fetched at once and issued beside the running one when the
two share no engine, no physical memory port (:data:`RESOURCES`) and no TMEM
words (read/write, write/read and write/write overlaps of their word
ranges).  It waits at CHECK while a running instruction will still write an
exponent this one reads, and a QUANT or QUPDATE waits for the producer of
its ACC.  Results therefore equal in-order execution, which the golden
machine defines.  A failed check waits for the running instructions, then
stops the run with the status code and the pc of the failing instruction;
HALT stops it with OK the same way.

The ACC state (shape, exponent, max |x|, max x) lives here: producers set the
shape and exponent at issue and the maxima at done; QUANT takes its shift
from the maxima (a leading-zero count) before issue, so an exponent overflow
is caught before anything is written.  ACC lives in two AMEM banks: each
producer writes the bank its predecessor did not, so a QUANT or QUPDATE can
still read the previous ACC while the next product is being computed.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import FIELDS, Op, Status

from .interfaces import command_layout, exp_shape, pc_shape, result_layout, slot_shape, status_layout, tmem_addr_shape
from .tensor_table import ExpWriteSignature, TableReadSignature

ENGINES = ("matmul", "quant", "vector", "update")
ENGINE_OF_OP = {Op.MATMUL: 0, Op.QUANT: 1, Op.SCALE: 2, Op.ADD: 2, Op.SUM: 2, Op.DOT: 2, Op.MASK: 2,
                Op.UPDATE: 3, Op.QUPDATE: 3}

#: Physical memory ports: three TMEM read ports, the TMEM write port, AMEM read and write.
PORT_BITS = ("tmem_a", "tmem_b", "tmem_c", "tmem_w", "amem_r", "amem_w")

#: (engine, engine port) -> physical port.  The QUANT and UPDATE engines read TMEM through
#: port C, so they can run beside a MATMUL or an element-wise op, which use A and B.
PORT_MAP = {
    ("matmul", "tmem_a"): "tmem_a", ("matmul", "tmem_b"): "tmem_b", ("matmul", "amem_w"): "amem_w",
    ("quant", "tmem_a"): "tmem_c", ("quant", "amem_r"): "amem_r", ("quant", "tmem_w"): "tmem_w",
    ("vector", "tmem_a"): "tmem_a", ("vector", "tmem_b"): "tmem_b", ("vector", "tmem_w"): "tmem_w",
    ("vector", "amem_w"): "amem_w",
    ("update", "tmem_a"): "tmem_c", ("update", "tmem_b"): "tmem_b", ("update", "tmem_w"): "tmem_w",
    ("update", "amem_r"): "amem_r",
}

_ELEMENTWISE = (("tmem_a", "tmem_b", "amem_w"), ("a", "b"))
#: opcode -> (physical ports it may use, tensor-table slots it reads or writes)
RESOURCES = {
    Op.HALT: ((), ()),
    Op.MATMUL: (("tmem_a", "tmem_b", "amem_w"), ("a", "b")),
    Op.QUANT: (("amem_r", "tmem_c", "tmem_w"), ("dst", "b")),      # b only with the mask flag
    Op.SCALE: _ELEMENTWISE, Op.ADD: _ELEMENTWISE, Op.DOT: _ELEMENTWISE,
    Op.SUM: (("tmem_a", "tmem_b", "amem_w"), ("a",)),
    Op.MASK: (("tmem_a", "tmem_b", "tmem_w"), ("dst", "a", "b")),
    Op.UPDATE: (("tmem_c", "tmem_b", "tmem_w"), ("dst", "a")),
    Op.QUPDATE: (("tmem_c", "amem_r", "tmem_w"), ("dst",)),
}


def port_mask(ports) -> int:
    return sum(1 << PORT_BITS.index(port) for port in ports)


def instruction_layout() -> data.StructLayout:
    """The 64-bit instruction word as golden_model.isa.FIELDS lays it out."""
    fields, position = {}, 0
    for name, (low, width) in sorted(FIELDS.items(), key=lambda item: item[1][0]):
        assert low == position, f"instruction fields must tile the word: {name} at {low}, expected {position}"
        fields[name] = unsigned(width)
        position += width
    assert position == 64
    return data.StructLayout(fields)


class Sequencer(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "prog_w": In(wiring.Signature({"en": Out(1), "addr": Out(pc_shape(cfg)), "data": Out(64)})),
            "run": In(wiring.Signature({"start": Out(1), "pc": Out(pc_shape(cfg))})),
            "status": Out(status_layout(cfg)),
            "rd_dst": Out(TableReadSignature(cfg)),
            "rd_a": Out(TableReadSignature(cfg)),
            "rd_b": Out(TableReadSignature(cfg)),
            "exp_w": Out(ExpWriteSignature(cfg)),
            "cmd": Out(stream.Signature(command_layout(cfg))),
            "engine": Out(range(len(ENGINES))),
            "done": In(len(ENGINES)),
            "result": In(data.ArrayLayout(result_layout(cfg), len(ENGINES))),
            "bank": Out(len(ENGINES)),
            "op_cycles": Out(data.ArrayLayout(32, len(Op))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lanes_log2 = cfg.lanes.bit_length() - 1
        limit = cfg.max_dim
        wide = signed(cfg.exp_bits + 3)

        m.submodules.program = program = Memory(shape=64, depth=cfg.program_depth, init=[])
        write = program.write_port()
        read = program.read_port()
        m.d.comb += [write.en.eq(self.prog_w.en), write.addr.eq(self.prog_w.addr),
                     write.data.eq(self.prog_w.data)]

        pc = Signal(pc_shape(cfg))
        inst = Signal(instruction_layout())
        busy = Signal()
        code = Signal(4)
        cycles = Signal(32)
        m.d.comb += [self.status.busy.eq(busy), self.status.code.eq(code), self.status.pc.eq(pc),
                     self.status.cycles.eq(cycles)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        # ACC state
        acc_rows = Signal.like(self.cmd.payload.acc_rows)
        acc_cols = Signal.like(self.cmd.payload.acc_cols)
        acc_exp = Signal(wide)
        acc_maxabs = Signal(cfg.acc_bits)
        acc_maxpos = Signal(cfg.acc_bits)

        # operands of the latched instruction: the table answers in the next cycle
        m.d.comb += [self.rd_dst.slot.eq(inst.dst), self.rd_a.slot.eq(inst.a), self.rd_b.slot.eq(inst.b)]
        dst, a, b = self.rd_dst.entry, self.rd_a.entry, self.rd_b.entry

        def registered(value, name):
            """A pipeline register between the table's answer and CHECK."""
            reg = Signal(value.shape(), name=name)
            m.d.sync += reg.eq(value)
            return reg

        def stride(entry):
            return (entry.cols + (cfg.lanes - 1)) >> lanes_log2

        def dims_bad(entry):
            return (entry.rows == 0) | (entry.cols == 0) | (entry.rows > limit) | (entry.cols > limit)

        def end(entry):
            return entry.base + entry.rows * stride(entry)

        def range_bad(entry):
            return end(entry) > cfg.tmem_words

        def partly_overlaps(x, y):
            return (x.base != y.base) & (x.base < end(y)) & (y.base < end(x))

        def acc_words_bad(rows, cols):
            return (rows * ((cols + (cfg.lanes - 1)) >> lanes_log2)) > cfg.acc_words

        def same_shape(x, y):
            return (x.rows == y.rows) & (x.cols == y.cols)

        def acc_shape(entry):
            return (entry.rows == acc_rows) & (entry.cols == acc_cols)

        def scalar(entry):
            return (entry.rows == 1) & (entry.cols == 1)

        opcode = inst.opcode
        f0, f1 = inst.f0, inst.f1
        mat_m = Mux(f0, a.cols, a.rows)
        mat_ka = Mux(f0, a.rows, a.cols)
        mat_n = Mux(f1, b.cols, b.rows)
        mat_kb = Mux(f1, b.rows, b.cols)

        # SQ shift of QUANT / QUPDATE: bit_length of the relevant maximum, minus 7
        # (QUPDATE's f0 is its gradient rounding, not ReLU)
        peak = Mux(f0 & (opcode == Op.QUANT), acc_maxpos, acc_maxabs)
        bitlen = Signal(range(cfg.acc_bits + 1))
        for bit in range(cfg.acc_bits):
            with m.If(peak[bit]):
                m.d.comb += bitlen.eq(bit + 1)
        quant_shift = Signal(range(cfg.acc_bits + 1))
        m.d.comb += quant_shift.eq(Mux(bitlen > cfg.data_bits - 1, bitlen - (cfg.data_bits - 1), 0))
        quant_exp = Signal(wide)
        m.d.comb += quant_exp.eq(acc_exp + quant_shift)
        exp_limit = 1 << (cfg.exp_bits - 1)
        quant_exp_bad = (quant_exp < -exp_limit) | (quant_exp >= exp_limit)

        # the check conditions, registered
        bad_dims = {name: registered(dims_bad(entry), f"{name}_dims_bad")
                    for name, entry in (("dst", dst), ("a", a), ("b", b))}
        bad_range = {name: registered(range_bad(entry), f"{name}_range_bad")
                     for name, entry in (("dst", dst), ("a", a), ("b", b))}
        k_mismatch = registered(mat_ka != mat_kb, "k_mismatch")
        mat_acc_bad = registered(acc_words_bad(mat_m, mat_n), "mat_acc_bad")
        a_acc_bad = registered(acc_words_bad(a.rows, a.cols), "a_acc_bad")
        dst_acc_shape = registered(acc_shape(dst), "dst_acc_shape")
        b_acc_shape = registered(acc_shape(b), "b_acc_shape")
        b_scalar = registered(scalar(b), "b_scalar")
        same_ab = registered(same_shape(a, b), "same_ab")
        same_dst_a = registered(same_shape(dst, a), "same_dst_a")
        quant_exp_bad_r = registered(quant_exp_bad, "quant_exp_bad")
        dst_overlaps_a = registered(partly_overlaps(dst, a), "dst_overlaps_a")
        dst_overlaps_b = registered(partly_overlaps(dst, b), "dst_overlaps_b")

        def operand(name):
            return [(bad_dims[name], Status.SHAPE_MISMATCH), (bad_range[name], Status.TMEM_RANGE)]

        checks = {
            Op.MATMUL: operand("a") + operand("b") + [(k_mismatch, Status.SHAPE_MISMATCH),
                                                     (mat_acc_bad, Status.ACC_RANGE)],
            Op.QUANT: [(bad_dims["dst"], Status.SHAPE_MISMATCH),
                       (~dst_acc_shape, Status.SHAPE_MISMATCH),
                       (bad_range["dst"], Status.TMEM_RANGE),
                       (inst.f2 & bad_dims["b"], Status.SHAPE_MISMATCH),     # the mask operand
                       (inst.f2 & bad_range["b"], Status.TMEM_RANGE),
                       (inst.f2 & ~b_acc_shape, Status.SHAPE_MISMATCH),
                       (inst.f2 & dst_overlaps_b, Status.OVERLAP),
                       (quant_exp_bad_r, Status.EXP_RANGE)],
            Op.SCALE: operand("a") + operand("b") + [(~b_scalar, Status.SHAPE_MISMATCH),
                                                    (a_acc_bad, Status.ACC_RANGE)],
            Op.ADD: operand("a") + operand("b") + [(~same_ab & ~b_scalar, Status.SHAPE_MISMATCH),
                                                  (a_acc_bad, Status.ACC_RANGE)],
            Op.SUM: operand("a"),
            Op.DOT: operand("a") + operand("b") + [(~same_ab, Status.SHAPE_MISMATCH)],
            Op.MASK: operand("a") + operand("b") + [(bad_dims["dst"], Status.SHAPE_MISMATCH),
                                                   (~same_ab | ~same_dst_a, Status.SHAPE_MISMATCH),
                                                   (bad_range["dst"], Status.TMEM_RANGE),
                                                   (dst_overlaps_a, Status.OVERLAP),
                                                   (dst_overlaps_b, Status.OVERLAP)],
            Op.UPDATE: operand("dst") + operand("a") + [(~same_dst_a, Status.SHAPE_MISMATCH),
                                                        (dst_overlaps_a, Status.OVERLAP)],
            Op.QUPDATE: operand("dst") + [(~dst_acc_shape, Status.SHAPE_MISMATCH)],
        }
        error = Signal(4)
        with m.Switch(opcode):
            for op, chain in checks.items():
                with m.Case(op):
                    for condition, status in reversed(chain):  # first failing check wins
                        with m.If(condition):
                            m.d.comb += error.eq(status)
            with m.Case(Op.HALT):
                pass
            with m.Default():
                m.d.comb += error.eq(Status.ILLEGAL_INSTRUCTION)
        with m.If((inst.reserved != 0) | (inst.f2 & (opcode != Op.QUANT))):
            m.d.comb += error.eq(Status.ILLEGAL_INSTRUCTION)

        # the command for the engine
        cmd = Signal(command_layout(cfg))
        exp_max = Mux(a.exp > b.exp, a.exp, b.exp)

        def resolved(field, entry):
            return [field.base.eq(entry.base), field.rows.eq(entry.rows), field.cols.eq(entry.cols),
                    field.stride.eq(stride(entry))]

        producer_rows = Signal.like(acc_rows)
        producer_cols = Signal.like(acc_cols)
        producer_exp = Signal(wide)
        with m.Switch(opcode):
            with m.Case(Op.MATMUL):
                m.d.comb += [producer_rows.eq(mat_m), producer_cols.eq(mat_n),
                             producer_exp.eq(a.exp + b.exp)]
            with m.Case(Op.SCALE):
                m.d.comb += [producer_rows.eq(a.rows), producer_cols.eq(a.cols), producer_exp.eq(a.exp + b.exp)]
            with m.Case(Op.ADD):
                m.d.comb += [producer_rows.eq(a.rows), producer_cols.eq(a.cols), producer_exp.eq(exp_max)]
            with m.Case(Op.SUM):
                m.d.comb += [producer_rows.eq(1), producer_cols.eq(1), producer_exp.eq(a.exp)]
            with m.Case(Op.DOT):
                m.d.comb += [producer_rows.eq(1), producer_cols.eq(1), producer_exp.eq(a.exp + b.exp)]
        is_producer = opcode.matches(Op.MATMUL, Op.SCALE, Op.ADD, Op.SUM, Op.DOT)
        cmd_rows = Mux(is_producer, producer_rows, acc_rows)
        cmd_cols = Mux(is_producer, producer_cols, acc_cols)
        m.d.comb += [
            cmd.op.eq(opcode), cmd.f0.eq(f0), cmd.f1.eq(f1), cmd.f2.eq(inst.f2), cmd.lr.eq(inst.lr),
            cmd.key.eq(inst.key),
            *resolved(cmd.a, a), *resolved(cmd.b, b), *resolved(cmd.dst, dst),
            cmd.acc_rows.eq(cmd_rows), cmd.acc_cols.eq(cmd_cols),
            cmd.acc_stride.eq((cmd_cols + (cfg.lanes - 1)) >> lanes_log2),
            cmd.shift_a.eq(exp_max - a.exp), cmd.shift_b.eq(exp_max - b.exp),
            cmd.shift.eq(dst.exp + inst.lr - Mux(opcode == Op.QUPDATE, quant_exp, a.exp)),
            cmd.maxabs.eq(acc_maxabs), cmd.maxpos.eq(acc_maxpos),
        ]
        engine = Signal(range(len(ENGINES)))
        with m.Switch(opcode):
            for op, index in ENGINE_OF_OP.items():
                with m.Case(op):
                    m.d.comb += engine.eq(index)

        # ---- issue: the next instruction runs beside the one in flight when they share no
        # engine, memory port, ACC bank or TMEM words (docs/architecture.md) ----
        n_ports = Signal(len(PORT_BITS))
        uses_dst, uses_a, uses_b = Signal(), Signal(), Signal()
        writes_dst, reads_a, reads_b, writes_exp = Signal(), Signal(), Signal(), Signal()
        with m.Switch(opcode):
            for op, (ports, used) in RESOURCES.items():
                with m.Case(op):
                    m.d.comb += n_ports.eq(port_mask(ports))
                    m.d.comb += [uses_dst.eq("dst" in used), uses_a.eq("a" in used),
                                 uses_b.eq(("b" in used) & ((op != Op.QUANT) | inst.f2))]
        m.d.comb += [
            writes_dst.eq(opcode.matches(Op.QUANT, Op.MASK, Op.UPDATE, Op.QUPDATE)),
            writes_exp.eq(opcode.matches(Op.QUANT, Op.MASK)),
            reads_a.eq(uses_a),
            reads_b.eq(uses_b),
        ]
        is_consumer = opcode.matches(Op.QUANT, Op.QUPDATE)
        end_shape = unsigned(tmem_addr_shape(cfg).width + 1)

        def span(entry, enable):
            lo, hi = Signal(end_shape), Signal(end_shape)
            m.d.comb += [lo.eq(entry.base), hi.eq(Mux(enable, end(entry), entry.base))]
            return lo, hi

        n_w, n_r0, n_r1 = span(dst, writes_dst), span(a, reads_a), span(b, reads_b)

        record = data.StructLayout({
            "valid": 1, "op": 4, "dst": slot_shape(cfg), "writes_exp": 1, "producer": 1, "ports": len(PORT_BITS),
            "w_lo": end_shape, "w_hi": end_shape, "r0_lo": end_shape, "r0_hi": end_shape,
            "r1_lo": end_shape, "r1_hi": end_shape, "wb_exp": exp_shape(cfg),
        })
        next_record = Signal(record)
        m.d.comb += [
            next_record.op.eq(opcode), next_record.dst.eq(inst.dst), next_record.writes_exp.eq(writes_exp),
            next_record.producer.eq(is_producer), next_record.ports.eq(n_ports),
            next_record.w_lo.eq(n_w[0]), next_record.w_hi.eq(n_w[1]), next_record.r0_lo.eq(n_r0[0]),
            next_record.r0_hi.eq(n_r0[1]), next_record.r1_lo.eq(n_r1[0]), next_record.r1_hi.eq(n_r1[1]),
            next_record.wb_exp.eq(Mux(opcode == Op.QUANT, quant_exp, a.exp)),
        ]
        staged_record = registered(next_record, "staged_record")
        staged_cmd = registered(cmd, "staged_cmd")
        staged_acc = registered(Cat(producer_rows, producer_cols, producer_exp), "staged_acc")
        records = [Signal(record, name=f"inflight_{name}") for name in ENGINES]
        any_inflight = Cat(*(r.valid for r in records)).any()

        def overlap(lo1, hi1, lo2, hi2):
            return (lo1 < hi2) & (lo2 < hi1)

        def slot_used(slot):
            return ((uses_dst & (inst.dst == slot)) | (uses_a & (inst.a == slot)) | (uses_b & (inst.b == slot)))

        must_wait = Cat(*(r.valid & ((r.writes_exp & slot_used(r.dst)) | (r.producer & (is_consumer | is_producer)))
                          for r in records)).any()

        pending = Signal(record)
        pending_engine = Signal(range(len(ENGINES)))
        pending_cmd = Signal(command_layout(cfg))
        pending_acc = Signal(data.StructLayout({"rows": acc_rows.shape(), "cols": acc_cols.shape(), "exp": wide}))
        conflict = Cat(*(r.valid & ((Const(index, pending_engine.shape()) == pending_engine)
                                    | (r.ports & pending.ports).any()
                                    | overlap(pending.w_lo, pending.w_hi, r.w_lo, r.w_hi)
                                    | overlap(pending.w_lo, pending.w_hi, r.r0_lo, r.r0_hi)
                                    | overlap(pending.w_lo, pending.w_hi, r.r1_lo, r.r1_hi)
                                    | overlap(pending.r0_lo, pending.r0_hi, r.w_lo, r.w_hi)
                                    | overlap(pending.r1_lo, pending.r1_hi, r.w_lo, r.w_hi))
                         for index, r in enumerate(records))).any()
        m.d.comb += [self.cmd.payload.eq(pending_cmd), self.engine.eq(pending_engine)]
        issue = Signal()
        changed = Signal()
        settle = Signal(range(3))

        acc_bank = Signal()
        banks = [Signal(name=f"bank_{name}") for name in ENGINES]
        m.d.comb += self.bank.eq(Cat(*banks))
        for index, (r, bank) in enumerate(zip(records, banks)):
            mine = issue & (pending_engine == index)
            with m.If(mine):
                m.d.sync += [r.eq(pending), r.valid.eq(1), bank.eq(Mux(pending.producer, ~acc_bank, acc_bank))]
            with m.Elif(self.done[index] & r.valid):
                m.d.sync += r.valid.eq(0)
                with m.If(r.producer):
                    m.d.sync += [acc_maxabs.eq(self.result[index].maxabs), acc_maxpos.eq(self.result[index].maxpos)]
                with m.If(r.writes_exp):
                    m.d.comb += [self.exp_w.en.eq(1), self.exp_w.slot.eq(r.dst), self.exp_w.exp.eq(r.wb_exp)]
        with m.If(issue & pending.producer):
            m.d.sync += [acc_bank.eq(~acc_bank), acc_rows.eq(pending_acc.rows), acc_cols.eq(pending_acc.cols),
                         acc_exp.eq(pending_acc.exp)]

        # CHECK waits until the pipeline registers show the current table, ACC state and instruction
        with m.If(changed | self.exp_w.en | issue | Cat(*(self.done[i] & r.valid for i, r in enumerate(records))).any()):
            m.d.sync += settle.eq(2)
        with m.Elif(settle != 0):
            m.d.sync += settle.eq(settle - 1)

        # cycles with an instruction of each opcode in flight (overlapping runs count twice);
        # the HALT counter takes the cycles with none in flight (fetch, checks, stalls)
        with m.If(busy):
            for op in Op:
                in_flight = sum(r.valid & (r.op == op) for r in records) if op != Op.HALT else ~any_inflight
                m.d.sync += self.op_cycles[op].eq(self.op_cycles[op] + in_flight)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run.start):
                    m.d.sync += [pc.eq(self.run.pc), code.eq(Status.OK), cycles.eq(0), busy.eq(1)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(pc >= cfg.program_depth):
                    m.d.sync += code.eq(Status.PC_RANGE)
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += [read.addr.eq(pc), read.en.eq(1)]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += inst.eq(read.data)
                m.d.comb += changed.eq(1)
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(must_wait | (settle != 0)):
                    pass
                with m.Elif(error != Status.OK):
                    m.d.sync += code.eq(error)
                    m.next = "DRAIN"
                with m.Elif(opcode == Op.HALT):
                    m.next = "DRAIN"
                with m.Else():
                    m.d.sync += [pending_cmd.eq(staged_cmd), pending_engine.eq(engine), pending.eq(staged_record),
                                 pending_acc.eq(staged_acc)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(~conflict):
                    m.d.comb += self.cmd.valid.eq(1)
                    with m.If(self.cmd.ready):
                        m.d.comb += issue.eq(1)
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
            with m.State("DRAIN"):
                with m.If(~any_inflight):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"
        return m
