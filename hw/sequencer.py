"""The sequencer: fetches instructions, checks them, dispatches them to engines.

Per instruction: FETCH (program memory read) -> DECODE -> CHECK (tensor table
lookup, the same shape / range / exponent checks as golden_model.machine, in
the same order, so the same status code comes out) -> ISSUE (one command
beat to the engine) -> WAIT (engine done; write back exponents and the ACC
state).  A failed check stops the run with the status code and the pc of the
failing instruction; HALT stops it with OK.

The ACC state (shape, exponent, max |x|, max x) lives here: producers set the
shape and exponent at dispatch and the maxima at done; QUANT takes its shift
from the maxima (a leading-zero count) before dispatch, so an exponent
overflow is caught before anything is written.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.isa import FIELDS, Op, Status

from .interfaces import command_layout, exp_shape, pc_shape, result_layout, status_layout
from .tensor_table import ExpWriteSignature, TableReadSignature

ENGINES = ("matmul", "quant", "vector", "update")
ENGINE_OF_OP = {Op.MATMUL: 0, Op.QUANT: 1, Op.SCALE: 2, Op.ADD: 2, Op.SUM: 2, Op.DOT: 2, Op.MASK: 2,
                Op.UPDATE: 3, Op.QUPDATE: 3}


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
            "done": In(1),
            "result": In(result_layout(cfg)),
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
            with m.If(inst.opcode < len(Op)):
                m.d.sync += self.op_cycles[inst.opcode].eq(self.op_cycles[inst.opcode] + 1)

        # ACC state
        acc_rows = Signal.like(self.cmd.payload.acc_rows)
        acc_cols = Signal.like(self.cmd.payload.acc_cols)
        acc_exp = Signal(wide)
        acc_maxabs = Signal(cfg.acc_bits)
        acc_maxpos = Signal(cfg.acc_bits)

        # operands of the latched instruction
        m.d.comb += [self.rd_dst.slot.eq(inst.dst), self.rd_a.slot.eq(inst.a), self.rd_b.slot.eq(inst.b)]
        dst, a, b = self.rd_dst.entry, self.rd_a.entry, self.rd_b.entry

        def stride(entry):
            return (entry.cols + (cfg.lanes - 1)) >> lanes_log2

        def dims_bad(entry):
            return (entry.rows == 0) | (entry.cols == 0) | (entry.rows > limit) | (entry.cols > limit)

        def range_bad(entry):
            return (entry.base + entry.rows * stride(entry)) > cfg.tmem_words

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

        def operand(entry):
            return [(dims_bad(entry), Status.SHAPE_MISMATCH), (range_bad(entry), Status.TMEM_RANGE)]

        checks = {
            Op.MATMUL: operand(a) + operand(b) + [(mat_ka != mat_kb, Status.SHAPE_MISMATCH),
                                                 (acc_words_bad(mat_m, mat_n), Status.ACC_RANGE)],
            Op.QUANT: [(dims_bad(dst), Status.SHAPE_MISMATCH),
                       (~acc_shape(dst), Status.SHAPE_MISMATCH),
                       (range_bad(dst), Status.TMEM_RANGE),
                       (inst.f2 & dims_bad(b), Status.SHAPE_MISMATCH),     # the mask operand
                       (inst.f2 & range_bad(b), Status.TMEM_RANGE),
                       (inst.f2 & ~acc_shape(b), Status.SHAPE_MISMATCH),
                       (quant_exp_bad, Status.EXP_RANGE)],
            Op.SCALE: operand(a) + operand(b) + [(~scalar(b), Status.SHAPE_MISMATCH),
                                                (acc_words_bad(a.rows, a.cols), Status.ACC_RANGE)],
            Op.ADD: operand(a) + operand(b) + [(~same_shape(a, b) & ~scalar(b), Status.SHAPE_MISMATCH),
                                              (acc_words_bad(a.rows, a.cols), Status.ACC_RANGE)],
            Op.SUM: operand(a),
            Op.DOT: operand(a) + operand(b) + [(~same_shape(a, b), Status.SHAPE_MISMATCH)],
            Op.MASK: operand(a) + operand(b) + [(dims_bad(dst), Status.SHAPE_MISMATCH),
                                               (~same_shape(a, b) | ~same_shape(dst, a), Status.SHAPE_MISMATCH),
                                               (range_bad(dst), Status.TMEM_RANGE)],
            Op.UPDATE: operand(dst) + operand(a) + [(~same_shape(dst, a), Status.SHAPE_MISMATCH)],
            Op.QUPDATE: operand(dst) + [(~acc_shape(dst), Status.SHAPE_MISMATCH)],
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

        issued = Signal(command_layout(cfg))
        issued_engine = Signal.like(engine)
        writeback_exp = Signal(exp_shape(cfg))
        m.d.comb += [self.cmd.payload.eq(issued), self.engine.eq(issued_engine)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.run.start):
                    m.d.sync += [pc.eq(self.run.pc), code.eq(Status.OK), cycles.eq(0), busy.eq(1)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(pc >= cfg.program_depth):
                    m.d.sync += [code.eq(Status.PC_RANGE), busy.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [read.addr.eq(pc), read.en.eq(1)]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += inst.eq(read.data)
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(error != Status.OK):
                    m.d.sync += [code.eq(error), busy.eq(0)]
                    m.next = "IDLE"
                with m.Elif(opcode == Op.HALT):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [issued.eq(cmd), issued_engine.eq(engine),
                                 writeback_exp.eq(Mux(opcode == Op.QUANT, quant_exp, a.exp))]
                    with m.If(is_producer):
                        m.d.sync += [acc_rows.eq(producer_rows), acc_cols.eq(producer_cols),
                                     acc_exp.eq(producer_exp)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += self.cmd.valid.eq(1)
                with m.If(self.cmd.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.done):
                    with m.If(opcode.matches(Op.MATMUL, Op.SCALE, Op.ADD, Op.SUM, Op.DOT)):
                        m.d.sync += [acc_maxabs.eq(self.result.maxabs), acc_maxpos.eq(self.result.maxpos)]
                    with m.If(opcode.matches(Op.QUANT, Op.MASK)):
                        m.d.comb += [self.exp_w.en.eq(1), self.exp_w.slot.eq(inst.dst),
                                     self.exp_w.exp.eq(writeback_exp)]
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
        return m
