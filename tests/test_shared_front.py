"""The QUANT and UPDATE engines on the core's one AccQuantizer (``shared_front=True``): each takes the
front's parts, and passes its reads on, only between its own command and its done, so the other engine's
run through the shared front writes nothing and enables no port of theirs (hw/core.py, _share_front)."""

import pytest
from amaranth.sim import Simulator

from golden_model.config import get_config
from golden_model.isa import Op
from hw.quant_engine import QuantEngine
from hw.shift_quantizer import ShiftQuantizer
from hw.update_engine import UpdateEngine

CFG = get_config("small4x4")
IDLE_CYCLES = 24
RUN_LIMIT = 64
#: cycles from the front's command to its first part (hw/acc_quantizer.py)
FRONT_LATENCY = 4 + ShiftQuantizer.LATENCY


def _stream_other_engines_parts(ctx, front):
    """The shared front busy with the other engine's command: a part (the last one) every cycle, reads asked."""
    for signal in (front.o.valid, front.o.payload.last, front.early, front.amem.en, front.mask.en):
        ctx.set(signal, 1)
    ctx.set(front.o.payload.count, CFG.unit_width)


def _quiet(ctx, engine, when):
    uses = {name: ctx.get(signal) for name, signal in (("done", engine.done), ("tmem_w.en", engine.tmem_w.en),
                                                      ("amem_r.en", engine.amem_r.en),
                                                      ("tmem_a.en", engine.tmem_a.en))}
    assert not any(uses.values()), f"{type(engine).__name__} {when}: {uses}"


def _command(ctx, engine, op):
    cmd = engine.cmd.payload
    ctx.set(cmd.op, op)
    ctx.set(cmd.dst.rows, 1)
    ctx.set(cmd.dst.cols, CFG.lanes)
    ctx.set(cmd.acc_rows, 1)
    ctx.set(cmd.acc_cols, CFG.lanes)


@pytest.mark.parametrize("engine_class, op", [(QuantEngine, Op.QUANT), (UpdateEngine, Op.QUPDATE)])
def test_an_engine_takes_the_shared_front_only_during_its_own_run(engine_class, op):
    engine = engine_class(CFG, shared_front=True)
    front = engine.front
    seen = {"done": 0, "forwarded": 0}

    async def bench(ctx):
        ctx.set(front.cmd.ready, 1)
        _stream_other_engines_parts(ctx, front)
        for _ in range(IDLE_CYCLES):                          # another engine's run
            await ctx.tick()
            _quiet(ctx, engine, "idle while the shared front streams another engine's parts")
        ctx.set(front.o.valid, 0)
        _command(ctx, engine, op)
        ctx.set(engine.cmd.valid, 1)
        assert ctx.get(engine.cmd.ready)
        await ctx.tick()
        ctx.set(engine.cmd.valid, 0)
        for cycle in range(RUN_LIMIT):                       # its own run: one word, its last part
            ctx.set(front.o.valid, cycle == FRONT_LATENCY)
            seen["forwarded"] |= ctx.get(engine.amem_r.en)
            if ctx.get(engine.done):
                seen["done"] += 1
                break
            await ctx.tick()
        ctx.set(front.o.valid, 1)                            # the other engine's next run
        for _ in range(IDLE_CYCLES):
            await ctx.tick()
            _quiet(ctx, engine, "after its done")

    sim = Simulator(engine)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"done": 1, "forwarded": 1}
