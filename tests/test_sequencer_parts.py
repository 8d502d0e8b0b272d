"""Unit tests of the sequencer's parts in Amaranth's simulator: SqShift, Decoder + Checker against the
golden machine, StepKeys, and the IssueTracker's hazards.  The whole sequencer is checked inside the core by the
cocotb benches (sim_tests/tb_eoq_core.py)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Signal

from golden_model import isa
from golden_model.config import get_config
from golden_model.geometry import Geometry
from golden_model.isa import OPS, PORTS, Acc, Engine, Instruction, Op, Status
from golden_model.machine import Machine, MachineError, TensorEntry
from golden_model.prng import step_base
from golden_model.quant import sq_shift
from hw.checker import Checker, checker_inputs
from hw.decoder import Decoder, port_mask
from hw.issue_tracker import IssueTracker
from hw.sq_shift import SqShift, bit_length
from hw.step_keys import StepKeys
from sim_tests.amaranth_sim import simulate
from sim_tests.command_model import acc_peaks, resolve

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 11])
def test_bit_length_tree_at_every_value(width):
    """The leading-one tree (widths padded to a power of two inside) against int.bit_length, exhaustively."""
    m = Module()
    x = Signal(width)
    length = bit_length(m, x)

    async def bench(ctx):
        for value in range(1 << width):
            ctx.set(x, value)
            await ctx.delay(1e-9)
            assert ctx.get(length) == value.bit_length(), f"width {width}, x {value}"

    simulate(m, bench)


@pytest.mark.parametrize("config", ["small4x4", "default"])
@pytest.mark.parametrize("pipelined", [False, True])
def test_sq_shift_matches_the_golden_rule_at_every_bit_length(config, pipelined):
    cfg = get_config(config)
    dut = SqShift(cfg, pipelined=pipelined)
    rng = random.Random(SEED)
    peaks = [0, 1, 63, 64, 127, 128, 2**31 - 1, 2**31] + [rng.randrange(1 << bits) for bits in range(1, 33)
                                                            for _ in range(3)]

    async def bench(ctx):
        for peak in peaks:
            ctx.set(dut.peak, peak)
            if pipelined:
                await ctx.tick().repeat(SqShift.LATENCY)
            else:
                await ctx.delay(1e-9)
            assert ctx.get(dut.shift) == sq_shift(np.array([peak]), cfg), f"peak {peak} (EOQ_SEED={SEED})"

    simulate(dut, bench)


class DecodeAndCheck(Elaboratable):
    """Decoder and Checker wired as the sequencer wires them."""

    def __init__(self, cfg):
        self.decoder, self.checker = Decoder(cfg), Checker(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder, m.submodules.checker = d, c = self.decoder, self.checker
        m.d.comb += [c.inst.eq(d.inst), c.dst.eq(d.dst), c.a.eq(d.a), c.b.eq(d.b), *checker_inputs(d, c, d.acc)]
        return m

    async def check(self, ctx, machine, inst):
        """Present ``inst`` with the machine's entries of its slots (the ACC state as it is) and wait until
        the checker has settled; return its status and the decoder's command."""
        d = self.decoder
        ctx.set(d.inst.as_value(), inst.encode())
        for name in ("dst", "a", "b"):
            e = machine.table[getattr(inst, name)]
            ctx.set(getattr(d, name), {"base": e.base, "rows": e.rows, "cols": e.cols, "exp": e.exp})
        await ctx.tick().repeat(Checker.LATENCY)
        return Status(ctx.get(self.checker.error)), ctx.get(d.cmd)


def random_case(cfg, rng):
    """A machine with random table entries and ACC, and a random instruction over them (often legal)."""
    machine = Machine(cfg)
    limit = cfg.max_dim
    shape = (rng.randint(1, limit), rng.randint(1, limit))

    def dim():
        return rng.choice([0, 1, limit, limit + 1] + [rng.randint(1, limit)] * 6)

    for slot in range(4):
        rows, cols = rng.choice([shape, shape, (1, 1), (shape[1], shape[0]), (dim(), dim())])
        base = rng.choice([0, rng.randrange(cfg.tmem_words), cfg.tmem_words - 1, 40 * slot])
        machine.table[slot] = TensorEntry(base, rows, cols, rng.randint(-(1 << (cfg.exp_bits - 1)),
                                                                       (1 << (cfg.exp_bits - 1)) - 1)
                                          if rng.random() < 0.1 else rng.randint(-30, 10))
    acc_shape = rng.choice([shape, (1, 1), (rng.randint(1, limit), rng.randint(1, limit))])
    machine.acc = np.array([[rng.randint(-2**31, 2**31 - 1) >> rng.randint(0, 31) for _ in range(acc_shape[1])]
                            for _ in range(acc_shape[0])], dtype=np.int64)
    machine.acc_exp = rng.randint(-40, 20) if rng.random() < 0.9 else rng.choice([-2**15 + 3, 2**15 - 30])
    op = rng.choice([op for op in Op if op != Op.HALT])
    inst = Instruction(op, dst=rng.randrange(4), a=rng.randrange(4), b=rng.randrange(4), f0=rng.randrange(2),
                       f1=rng.randrange(2), lr=rng.randrange(32), key=rng.randrange(2**32),
                       f2=int(rng.random() < 0.3), f3=int(rng.random() < 0.2), f4=int(rng.random() < 0.2))
    machine.set_keys(rng.randrange(2**32), rng.choice([0, rng.randrange(2**32), 2**32 - 1]))
    if OPS[op].geometry is not None and rng.random() < 0.8:
        inst = geometry_case(cfg, machine, inst, rng)
    return machine, inst


def geometry_case(cfg, machine, inst, rng):
    """A CONV, POOL or UNPOOL over a random (mostly legal) geometry, with operands (mostly) of its shapes."""
    pool = OPS[inst.op].geometry == "pool"
    while True:
        kh, kw = (rng.choice([1, 2, 4]), rng.choice([1, 2, 4])) if pool else (rng.choice([1, 3]), rng.choice([1, 3]))
        fields = dict(batch=rng.randint(1, 4), height=rng.randint(1, 9) * (kh if pool else 1),
                      width=rng.randint(1, 9) * (kw if pool else 1), kh=kh, kw=kw)
        if not pool:
            fields.update(stride=rng.choice([1, 2]), pad_h=rng.randint(0, 1), pad_w=rng.randint(0, 1))
        try:
            g = Geometry(**fields)
        except ValueError:
            continue
        if g.in_rows <= cfg.max_dim:
            break
    channels, outputs = rng.randint(1, 2 * cfg.lanes), rng.randint(1, 2 * cfg.lanes)
    padded = -(-channels // cfg.lanes) * cfg.lanes
    mode = rng.choice(list(isa.CONV_MODES))
    if pool:
        shapes = {"a": (g.in_rows, channels), "dst": (g.in_rows, channels)}
        if inst.op == Op.UNPOOL:
            shapes["a"] = (g.pool_map().out_rows, channels)
    elif mode == "forward":
        shapes = {"a": (g.in_rows, channels), "b": (outputs, g.taps * padded)}
    elif mode == "error":
        shapes = {"a": (g.out_rows, outputs), "b": (outputs, g.taps * padded), "dst": (g.in_rows, channels)}
    else:
        shapes = {"a": (g.out_rows, outputs), "b": (g.in_rows, channels)}
    slots = rng.sample(range(4), 3)
    base = rng.choice([0, 7])
    for name, slot in zip(("dst", "a", "b"), slots):
        if name in shapes and rng.random() < 0.9:
            rows, cols = shapes[name]
            machine.table[slot] = TensorEntry(base, rows, cols, rng.randint(-20, 5))
            base += rows * -(-cols // cfg.lanes)
    f0, f1 = isa.CONV_MODES[mode] if not pool else (0, 0)
    return Instruction(inst.op, dst=slots[0], a=slots[1], b=slots[2], f0=f0, f1=f1, key=g.encode())


def golden_status(machine, inst):
    problem = isa.illegal(inst.encode())
    if problem:
        return Status.ILLEGAL_INSTRUCTION
    try:
        machine.execute(inst)
    except MachineError as error:
        return error.status
    return Status.OK


@pytest.mark.parametrize("config", ["small4x4", "wide8x16"])
def test_decoder_and_checker_agree_with_the_golden_machine(config):
    """Random instructions over random entries and ACC states: the same status code as the machine,
    and for legal ones the engine command of the bench reference (sim_tests/command_model.py)."""
    cfg = get_config(config)
    dut = DecodeAndCheck(cfg)
    d = dut.decoder
    rng = random.Random(SEED)
    seen = set()

    async def bench(ctx):
        for trial in range(250):
            machine, inst = random_case(cfg, rng)
            entries = {name: machine.table[getattr(inst, name)] for name in ("dst", "a", "b")}
            peak_abs, peak_pos = acc_peaks(machine.acc)
            legal = OPS[inst.op].engine is not None and not isa.illegal(inst.encode())
            want_cmd = resolve(machine, inst) if legal else None
            ctx.set(d.acc, {"rows": machine.acc.shape[0], "cols": machine.acc.shape[1], "exp": machine.acc_exp,
                            "peak_abs": peak_abs, "peak_pos": peak_pos})
            ctx.set(d.step_base, step_base(machine.seed, machine.step))
            got, cmd = await dut.check(ctx, machine, inst)
            record = ctx.get(d.record)
            want = golden_status(machine, inst)
            what = f"trial {trial} {inst} entries {entries} ACC {machine.acc.shape} (EOQ_SEED={SEED})"
            assert got == want, f"{what}: gateware {got.name}, golden {want.name}"
            seen.add((inst.op, want))
            if want != Status.OK:
                continue
            spec = OPS[inst.op]
            fields = ["acc_rows", "acc_cols", "acc_stride"] if spec.acc is not Acc.NONE else []
            fields += {Op.ADD: ["shift_a", "shift_b"], Op.UPDATE: ["shift", "key"], Op.QUPDATE: ["shift", "sq_shift", "key"],
                       Op.QUANT: ["sq_shift", "key"], Op.LOSS: ["shift"]}.get(inst.op, [])
            for field in fields:
                assert getattr(cmd, field) == want_cmd[field], f"{what}: command {field}"
            if spec.dst_exp is not None:
                assert record.wb_exp == machine.table[inst.dst].exp, f"{what}: written exponent"
            assert record.ports == port_mask(spec.ports) and ctx.get(d.engine) == spec.engine

    simulate(dut, bench)
    statuses = {status for _, status in seen}
    assert {Status.OK, Status.SHAPE_MISMATCH, Status.TMEM_RANGE, Status.ILLEGAL_INSTRUCTION} <= statuses


@pytest.mark.parametrize("config", ["small4x4", "wide8x16"])
def test_the_acc_fit_counts_the_produced_words_of_every_matmul_form(config):
    """MATMULs whose ACC (max_dim rows) fills AMEM exactly or by one word too many, in all four transpose
    forms, B's other dimension far from N: the checker's words per row of the ACC (the decoder's
    ``produced_words``) must be ceil(N / lanes) of the right operand dimension, or a status differs."""
    cfg = get_config(config)
    rows = cfg.max_dim
    words = cfg.acc_words // rows
    assert words >= 1 and (words * cfg.lanes + 1) <= cfg.max_dim, "the configuration leaves no boundary to test"
    depth = 3
    dut = DecodeAndCheck(cfg)
    seen = []

    async def bench(ctx):
        for f0 in (0, 1):
            for f1 in (0, 1):
                for n in (words * cfg.lanes, words * cfg.lanes + 1):
                    machine = Machine(cfg)
                    a_shape = (depth, rows) if f0 else (rows, depth)
                    b_shape = (depth, n) if f1 else (n, depth)
                    a = TensorEntry(0, *a_shape, 0)
                    b = TensorEntry(a.rows * -(-a.cols // cfg.lanes), *b_shape, 0)
                    machine.table[0], machine.table[1], machine.table[2] = TensorEntry(0, 1, 1, 0), a, b
                    inst = isa.matmul(1, 2, bool(f0), bool(f1))
                    got, _ = await dut.check(ctx, machine, inst)
                    want = golden_status(machine, inst)
                    assert got == want, f"{config} MATMUL f0={f0} f1={f1} N={n}: gateware {got.name}, golden {want.name}"
                    seen.append(want)

    simulate(dut, bench)
    assert seen.count(Status.OK) == 4 and seen.count(Status.ACC_RANGE) == 4, seen


@pytest.mark.parametrize("config", ["small4x4", "wide8x16"])
def test_add_aligns_both_operands_to_the_coarser_exponent(config):
    """ADD's alignment shifts in the command (max(A.exp, B.exp) minus each) for exponents on either side,
    equal and at the range's ends, against the bench's command model."""
    cfg = get_config(config)
    rng = random.Random(SEED)
    low, high = -(1 << (cfg.exp_bits - 1)), (1 << (cfg.exp_bits - 1)) - 1
    pairs = [(0, 0), (-3, 5), (5, -3), (low, high), (high, low)] + [(rng.randint(low, high), rng.randint(low, high))
                                                                     for _ in range(20)]
    dut = DecodeAndCheck(cfg)

    async def bench(ctx):
        for a_exp, b_exp in pairs:
            machine = Machine(cfg)
            machine.table[1], machine.table[2] = TensorEntry(0, 3, 5, a_exp), TensorEntry(40, 3, 5, b_exp)
            inst = isa.add(1, 2)
            status, cmd = await dut.check(ctx, machine, inst)
            want = resolve(machine, inst)
            assert status == golden_status(machine, inst) == Status.OK
            for field in ("shift_a", "shift_b"):
                assert getattr(cmd, field) == want[field], f"{config} A.exp {a_exp} B.exp {b_exp}: {field} " \
                    f"{getattr(cmd, field)}, want {want[field]} (EOQ_SEED={SEED})"

    simulate(dut, bench)


def test_step_keys_follow_their_writes():
    """StepKeys' base is prng.step_base of the last seed and step written, LATENCY cycles after the write
    (and of seed 0, step 0 out of reset, as the golden machine starts)."""
    rng = random.Random(SEED)
    dut = StepKeys()

    async def bench(ctx):
        await ctx.tick().repeat(StepKeys.LATENCY)
        assert ctx.get(dut.base) == step_base(0, 0)
        for trial in range(40):
            seed = rng.choice([0, 2**32 - 1, rng.randrange(2**32)])
            step = rng.choice([0, 2**32 - 1, rng.randrange(2**32)])
            ctx.set(dut.write.en, 1)
            ctx.set(dut.write.seed, seed)
            ctx.set(dut.write.step, step)
            await ctx.tick()
            ctx.set(dut.write.en, 0)
            ctx.set(dut.write.seed, rng.randrange(2**32))
            await ctx.tick().repeat(StepKeys.LATENCY - 1)
            assert ctx.get(dut.base) == step_base(seed, step), f"trial {trial} (EOQ_SEED={SEED})"

    simulate(dut, bench)


def record(engine, ports=(), w=(0, 0), r0=(0, 0), r1=(0, 0), producer=0, writes_exp=0, dst=0, wb_exp=0):
    return {"valid": 1, "op": 0, "dst": dst, "writes_exp": writes_exp, "producer": producer,
            "ports": port_mask(ports), "w_lo": w[0], "w_hi": w[1], "r0_lo": r0[0], "r0_hi": r0[1],
            "r1_lo": r1[0], "r1_hi": r1[1], "wb_exp": wb_exp}


def test_issue_tracker_hazards_banks_and_write_back():
    cfg = get_config("small4x4")
    dut = IssueTracker(cfg)

    async def issue(ctx, engine, rec, acc=None):
        ctx.set(dut.pending, rec)
        ctx.set(dut.pending_engine, engine)
        ctx.set(dut.pending_acc, acc or {"rows": 0, "cols": 0, "exp": 0})
        await ctx.tick().repeat(IssueTracker.CONFLICT_LATENCY)     # pending is held while ``conflict`` answers
        conflict = ctx.get(dut.conflict)
        ctx.set(dut.issue, 1)
        await ctx.tick()
        ctx.set(dut.issue, 0)
        assert not ctx.get(dut.inflight[engine].valid), "the record was taken before ISSUE_LATENCY"
        await ctx.tick().repeat(IssueTracker.ISSUE_LATENCY)        # pending is held until the record is taken
        assert ctx.get(dut.inflight[engine].valid)
        return conflict

    async def bench(ctx):
        # a product in flight on bank 1 (the first producer flips the bank)
        product = record(Engine.MATMUL, ("tmem_a", "tmem_b", "amem_w"), r0=(0, 10), r1=(10, 20), producer=1)
        assert not await issue(ctx, Engine.MATMUL, product, {"rows": 3, "cols": 5, "exp": -9})
        assert (ctx.get(dut.bank) >> Engine.MATMUL) & 1 == 1 and ctx.get(dut.any_inflight)
        assert (ctx.get(dut.acc.rows), ctx.get(dut.acc.cols), ctx.get(dut.acc.exp)) == (3, 5, -9)
        # conflicts: the same engine, a shared port, a write into words the product reads; each
        # CONFLICT_LATENCY cycles after the pending instruction is set (the answers before it are the
        # previous instruction's)
        for engine, rec in ((Engine.MATMUL, record(Engine.MATMUL)),
                            (Engine.VECTOR, record(Engine.VECTOR, ("tmem_a",))),
                            (Engine.QUANT, record(Engine.QUANT, ("amem_r", "tmem_c", "tmem_w"), w=(15, 16)))):
            ctx.set(dut.pending, record(Engine.QUANT, w=(30, 31)))
            ctx.set(dut.pending_engine, Engine.QUANT)
            await ctx.tick().repeat(IssueTracker.CONFLICT_LATENCY)
            ctx.set(dut.pending, rec)
            ctx.set(dut.pending_engine, engine)
            for _ in range(IssueTracker.CONFLICT_LATENCY):
                assert not ctx.get(dut.conflict)
                await ctx.tick()
            assert ctx.get(dut.conflict), f"engine {engine.name}"
        # a QUANT writing words nobody reads does not conflict; a consumer reads the latest producer's bank
        quant = record(Engine.QUANT, ("amem_r", "tmem_c", "tmem_w"), w=(20, 24), writes_exp=1, dst=6, wb_exp=-3)
        assert not await issue(ctx, Engine.QUANT, quant)
        assert (ctx.get(dut.bank) >> Engine.QUANT) & 1 == 1
        # an instruction using slot 6 must wait for its exponent; a consumer waits for the producer
        # (``must_wait`` answers MUST_WAIT_LATENCY cycles after a change)
        ctx.set(dut.check, {"uses": {"dst": 0, "a": 1, "b": 0}, "dst": 0, "a": 6, "b": 0, "consumer": 0,
                            "producer": 0})
        await ctx.tick().repeat(IssueTracker.MUST_WAIT_LATENCY)
        assert ctx.get(dut.must_wait)
        ctx.set(dut.check, {"uses": {"dst": 0, "a": 1, "b": 0}, "dst": 0, "a": 5, "b": 0, "consumer": 0,
                            "producer": 0})
        await ctx.tick().repeat(IssueTracker.MUST_WAIT_LATENCY)
        assert not ctx.get(dut.must_wait), "slot 5 has no exponent pending and no ACC use"
        ctx.set(dut.check, {"uses": {"dst": 0, "a": 1, "b": 0}, "dst": 0, "a": 5, "b": 0, "consumer": 1,
                            "producer": 0})
        await ctx.tick().repeat(IssueTracker.MUST_WAIT_LATENCY)
        assert ctx.get(dut.must_wait)
        # the product finishes: its peaks become the ACC's
        ctx.set(dut.result, [{"peak_abs": 1000, "peak_pos": 77}] * len(Engine))
        ctx.set(dut.done, 1 << Engine.MATMUL)
        await ctx.tick()
        ctx.set(dut.done, 0)
        assert (ctx.get(dut.acc.peak_abs), ctx.get(dut.acc.peak_pos)) == (1000, 77)
        await ctx.tick().repeat(IssueTracker.MUST_WAIT_LATENCY)
        assert not ctx.get(dut.must_wait), "the consumer waited for a producer no longer running"
        # the QUANT finishes: its exponent is written back EXP_WRITE_LATENCY cycles later, once
        ctx.set(dut.done, 1 << Engine.QUANT)
        for _ in range(IssueTracker.EXP_WRITE_LATENCY):
            assert not ctx.get(dut.exp_w.en), "the write-back came early"
            await ctx.tick()
            ctx.set(dut.done, 0)
        assert ctx.get(dut.exp_w.en) and (ctx.get(dut.exp_w.slot), ctx.get(dut.exp_w.exp)) == (6, -3)
        await ctx.tick()
        assert not ctx.get(dut.exp_w.en), "the exponent was written back twice"
        ctx.set(dut.check, {"uses": {"dst": 0, "a": 1, "b": 0}, "dst": 0, "a": 6, "b": 0, "consumer": 1,
                            "producer": 0})
        await ctx.tick().repeat(IssueTracker.MUST_WAIT_LATENCY)
        assert not ctx.get(dut.any_inflight) and not ctx.get(dut.must_wait)

    simulate(dut, bench)


def test_port_masks_follow_the_port_list():
    assert port_mask(PORTS) == (1 << len(PORTS)) - 1
    assert port_mask(("tmem_b",)) == 1 << PORTS.index("tmem_b")


@pytest.mark.parametrize("config", ["small4x4", "wide8x16"])
def test_load_checks_the_label_column_and_the_set_s_end(config):
    """LOADs at the edges of their rules: a label LOAD into one column or two, a set that ends at the last
    sample or one past it, that is empty, or whose rows of dst's width end at DMEM's last word or one past
    it: the same status as the machine, with OK and each failure seen."""
    cfg = get_config(config)
    samples = cfg.data_samples
    wide = cfg.max_dim                               # the widest rows: the fewest samples fit DMEM's words
    fit = cfg.data_words // -(-wide // cfg.lanes)
    cases = [(True, 1, 0, 4), (True, 2, 0, 4), (False, 3, samples - 5, 5), (False, 3, samples - 5, 6),
             (False, 3, 0, 0), (True, 1, samples - 1, 2)]
    if fit < samples:
        cases += [(False, wide, fit - 2, 2), (False, wide, fit - 2, 3)]
    dut = DecodeAndCheck(cfg)
    seen = []

    async def bench(ctx):
        for labels, cols, base, count in cases:
            machine = Machine(cfg)
            machine.table[1] = TensorEntry(0, 2, cols, 0)
            inst = Instruction(Op.LOAD, dst=1, f0=int(labels), f1=count % 2, key=base | count << 16)  # count 0 too
            got, _ = await dut.check(ctx, machine, inst)
            want = golden_status(machine, inst)
            assert got == want, f"{config} LOAD labels={labels} {cols} columns, set ({base}, {count}): " \
                                f"gateware {got.name}, golden {want.name}"
            seen.append(want)

    simulate(dut, bench)
    assert Status.OK in seen and len(set(seen)) >= 2 and seen.count(Status.OK) < len(seen) - 2, seen
