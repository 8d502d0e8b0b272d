"""fpga/: PLL parameters, report parsing, board/device errors, programming without a board; one slow real build."""

import gc
from fractions import Fraction
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from fpga import build as fb
from fpga import congestion
from fpga.blocks import BLOCKS, stat_script, table
from fpga.blocks import main as blocks_main
from fpga import program as fp
from fpga.pll import pll_params
from fpga.top import DEFAULT_FREQ, UlxTop
from golden_model.config import get_config
from golden_model.isa import Engine

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------- PLL

# (fout MHz) -> (CLKI_DIV, CLKFB_DIV, CLKOP_DIV) as Project Trellis' ecppll -i 25 -o fout chooses them
ECPPLL = {50: (1, 2, 12), 60: (5, 12, 10), 40: (5, 8, 15), 75: (1, 3, 8), 100: (1, 4, 6), 125: (1, 5, 5),
          33.3333: (3, 4, 18)}


@pytest.mark.parametrize("fout", sorted(ECPPLL))
def test_pll_matches_ecppll(fout):
    p = pll_params(25_000_000, fout * 1e6)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == ECPPLL[fout]
    assert 400e6 <= p.fvco <= 800e6
    assert 3.125e6 <= 25e6 / p.clki_div
    assert abs(float(p.fout) - fout * 1e6) / (fout * 1e6) < 1e-3


def test_pll_instance_params():
    params = pll_params(25_000_000, 50e6).instance_params()
    assert params["p_CLKI_DIV"] == 1 and params["p_CLKFB_DIV"] == 2 and params["p_CLKOP_DIV"] == 12
    assert params["p_FEEDBK_PATH"] == "CLKOP"
    assert params["a_FREQUENCY_PIN_CLKOP"] == "50"


@pytest.mark.parametrize("fout, match", [(48e6, "nearest: 46.875 MHz"), (5e6, "unsupported"), (500e6, "unsupported")])
def test_pll_unsupported(fout, match):
    with pytest.raises(ValueError, match=match):
        pll_params(25_000_000, fout)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # the refused top
def test_top_bit_period_for_clock():
    with pytest.raises(ValueError, match="too slow"):
        UlxTop(get_config("small4x4"), freq=10e6, baud=3_000_000)
    gc.collect()
    top = UlxTop(get_config("small4x4"), freq=55e6, baud=3_000_000)
    assert top.bit_period == Fraction(55, 3)
    del top
    gc.collect()


# ---------------------------------------------------------------- report parsing

def test_parse_report_json():
    parsed = fb.parse_nextpnr_report(json.loads((DATA / "nextpnr_report.json").read_text()))
    res = parsed["resources"]
    assert set(res) == {"LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD"}
    assert res["LUT4"]["available"] == 83640 and res["DP16KD"]["available"] == 208
    assert res["MULT18X18D"]["available"] == 156
    for entry in res.values():
        assert 0 <= entry["used"] <= entry["available"]
    assert parsed["clocks"] and all(c["achieved_mhz"] > 0 for c in parsed["clocks"])


def test_parse_log_agrees_with_report():
    from_log = fb.parse_nextpnr_log((DATA / "nextpnr.log").read_text())
    from_json = fb.parse_nextpnr_report(json.loads((DATA / "nextpnr_report.json").read_text()))
    assert from_log["resources"] == from_json["resources"]
    # the log keeps the post-route Fmax (its last mention), which is what the report holds
    assert {c["net"]: c["achieved_mhz"] for c in from_log["clocks"]} == \
           {c["net"]: c["achieved_mhz"] for c in from_json["clocks"]}


def test_parse_yosys_stats():
    cells = fb.parse_yosys_stats((DATA / "yosys_stats.txt").read_text())
    assert cells["LUT4"] > 1000 and cells["TRELLIS_FF"] > 1000 and cells["MULT18X18D"] > 0
    assert fb.parse_yosys_stats("no statistics here") == {}


def test_parse_log_lines():
    text = ("Info: Device utilisation:\n"
            "Info:          TRELLIS_COMB:  1200/83640     1%\n"
            "Info:            TRELLIS_FF:   800/83640     0%\n"
            "Info:            MULT18X18D:    16/  156    10%\n"
            "Info:                DP16KD:    20/  208     9%\n"
            "Info: Max frequency for clock 'sync_clk': 40.00 MHz (FAIL at 50.00 MHz)\n"
            "Info: Max frequency for clock 'sync_clk': 55.10 MHz (PASS at 50.00 MHz)\n")
    parsed = fb.parse_nextpnr_log(text)
    assert parsed["resources"]["MULT18X18D"] == {"used": 16, "available": 156}
    assert parsed["clocks"] == [{"net": "sync_clk", "achieved_mhz": 55.1, "constraint_mhz": 50.0, "met": True}]


def _report(clocks, used=10):
    return {"board": "ulx3s", "device": "85F", "config": "x", "array": "4x4", "freq_mhz": 50, "baud": 3_000_000,
            "resources": {"LUT4": {"used": used, "available": 100}}, "clocks": clocks}


def test_check_report_timing():
    ok = fb._clock("sync_clk", 61.0, 50.0)
    bad = fb._clock("sync_clk", 41.0, 50.0)
    fb.check_report(_report([ok]))
    with pytest.raises(fb.BuildError, match="timing not met: sync_clk reaches 41.00 MHz < 50.00 MHz"):
        fb.check_report(_report([bad]))
    with pytest.raises(fb.BuildError, match="does not fit"):
        fb.check_report(_report([ok], used=101))
    assert "FAILED" in fb.format_table(_report([bad]))


# ---------------------------------------------------------------- boards, devices, tools

def test_unknown_board():
    with pytest.raises(fb.BuildError, match="unknown board 'de10'; known boards: ulx3s"):
        fb.get_platform("de10", "85F")
    assert fb.main(["--board", "de10"]) == 1


@pytest.mark.parametrize("device", ["85F", "85f", "85", "LFE5U-85F", "12F", "25F", "45F"])
def test_devices(device):
    cls = fb.get_platform("ulx3s", device)
    assert cls.device == "LFE5U-" + fb.normalize_device(device)
    assert "openFPGALoader" not in cls().required_tools


def test_unknown_device():
    with pytest.raises(fb.BuildError, match="unknown device '100F'; known: 12F, 25F, 45F, 85F"):
        fb.get_platform("ulx3s", "100F")


def test_unknown_config(capsys):
    assert fb.main(["--config", "nope"]) == 1
    assert "unknown configuration 'nope'" in capsys.readouterr().err


def test_block_report_unknown_config(capsys):
    assert blocks_main(["--config", "nope"]) == 1
    err = capsys.readouterr().err
    assert "unknown configuration 'nope'" in err and "Traceback" not in err


def test_missing_tools(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(fb.BuildError, match="run make setup"):
        fb.find_tools(tmp_path)


def test_tools_from_venv():
    env = fb.find_tools()
    assert set(env) == {"YOSYS", "NEXTPNR_ECP5", "ECPPACK"}
    assert all(Path(p).name.startswith("yowasp-") for p in env.values())


def fake_tools(tmp_path, monkeypatch, body: str) -> None:
    """Every tool of the build (yosys, nextpnr, ecppack) replaced by one shell script running ``body``."""
    tool = tmp_path / "fake-tool"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    monkeypatch.setattr(fb, "find_tools", lambda: {name: str(tool) for name in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK")})


def test_tool_timeout_reports(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, "sleep 30")
    with pytest.raises(fb.BuildError, match="yosys did not finish within 0.01 min"):
        fb.build(fb.BuildOptions(config="small4x4", freq_mhz=50, out=tmp_path, echo=True, timeout_min=0.01))
    saved = json.loads((tmp_path / "ulx3s-85F-echo" / "fpga_report.json").read_text())
    assert saved["failed_step"] == "yosys" and saved["exit_code"] == "timeout"


def test_block_ram_overflow_stops_before_nextpnr(tmp_path, monkeypatch):
    """A netlist with more DP16KD than the device has is refused after yosys, naming the board's config."""
    yosys = tmp_path / "fake-yosys"
    yosys.write_text("#!/bin/sh\nprintf '2.50. Printing statistics.\\n\\n     232   DP16KD\\n      76   MULT18X18D\\n'"
                     " > top.rpt\necho '{}' > top.json\n")
    nextpnr = tmp_path / "fake-nextpnr"
    nextpnr.write_text(f"#!/bin/sh\ntouch {tmp_path}/nextpnr-ran\n")
    for tool in (yosys, nextpnr):
        tool.chmod(0o755)
    monkeypatch.setattr(fb, "find_tools", lambda: {"YOSYS": str(yosys), "NEXTPNR_ECP5": str(nextpnr),
                                                   "ECPPACK": str(nextpnr)})
    with pytest.raises(fb.BuildError, match="configuration default does not fit the 85F: yosys maps it to 232 "
                                            "DP16KD of the 85F's 208. .*--config ulx3s"):
        fb.build(fb.BuildOptions(config="default", out=tmp_path))
    assert not (tmp_path / "nextpnr-ran").exists()
    fb.check_blocks({"DP16KD": 208, "MULT18X18D": 156}, "ulx3s", "85F", "ulx3s")   # exactly full fits


def test_board_builds_its_own_configuration():
    assert fb.BuildOptions().config is None and fb.BOARD_CONFIGS["ulx3s"] == "ulx3s"
    assert get_config("ulx3s").tmem_bytes < get_config("default").tmem_bytes


def fake_flow(tmp_path, dp16kd: int, fmax: float) -> dict:
    """Stand-in tools: yosys reports ``dp16kd`` block RAMs, nextpnr routes at ``fmax`` MHz."""
    yosys = tmp_path / "fake-yosys"
    yosys.write_text(f"#!/bin/sh\nprintf '2.50. Printing statistics.\\n\\n     {dp16kd}   DP16KD\\n' > top.rpt\n"
                     "echo '{}' > top.json\n")
    report = {"utilization": {"TRELLIS_COMB": {"used": 40000, "available": 83640},
                              "TRELLIS_FF": {"used": 9000, "available": 83640},
                              "MULT18X18D": {"used": 76, "available": 156}, "DP16KD": {"used": dp16kd, "available": 208}},
              "fmax": {"$glbnet$clk": {"achieved": fmax, "constraint": 30.0}}}
    nextpnr = tmp_path / "fake-nextpnr"
    nextpnr.write_text(f"#!/bin/sh\necho '{json.dumps(report)}' > report.json\ntouch top.bit\n")
    for tool in (yosys, nextpnr):
        tool.chmod(0o755)
    return {"YOSYS": str(yosys), "NEXTPNR_ECP5": str(nextpnr), "ECPPACK": str(nextpnr)}


def test_sweep_tabulates_met_missed_and_unfit_points(tmp_path, monkeypatch):
    from fpga import sweep
    for directory in ("a", "b"):
        (tmp_path / directory).mkdir()
    flows = {"ulx3s": fake_flow(tmp_path / "a", 136, 31.5), "default": fake_flow(tmp_path / "b", 232, 31.5)}
    current = {}
    monkeypatch.setattr(fb, "find_tools", lambda: flows[current["config"]])
    rows = []
    for config, freq in (("ulx3s", 30.0), ("default", 30.0)):
        current["config"] = config
        rows.append(sweep.point(config, freq, 1, board="ulx3s", device="85F", out=tmp_path / "out", threads=1))
    fit, unfit = rows
    assert fit["met"] and fit["fmax_mhz"] == 31.5 and fit["DP16KD"] == 136 and fit["macs"] == 64
    assert fit["gmacs"] == round(64 * 30.0 / 1e3, 2)                 # at the clock it runs, not its Fmax
    assert not unfit["met"] and "does not fit" in unfit["error"] and unfit["DP16KD"] == 232
    text = sweep.table(rows)
    assert "| ulx3s | 64 | 30.0 | 1 | 40,000 |" in text and "| default |" in text and "does not fit" in text
    missed = sweep.row("ulx3s", 40.0, 2, {"resources": {}, "clocks": [{"achieved_mhz": 31.5}], "timing_met": False},
                       None)
    assert not missed["met"] and "| no |" in sweep.table([missed])
    spread = sweep.table([fit, {**fit, "seed": 2, "fmax_mhz": 33.0}])
    assert "ulx3s at 30 MHz: Fmax 31.50 to 33.00 MHz over 2 seeds" in spread


def _slow_first_point(config, freq, seed, **_):
    """fpga.sweep.point's stand-in (module level: the pool pickles it by name): the ulx3s point finishes last."""
    import time
    from fpga import sweep
    time.sleep(1.0 if config == "ulx3s" else 0.0)
    report = {"resources": {"LUT4": {"used": 1000 if config == "ulx3s" else 500}}, "timing_met": True,
              "clocks": [{"achieved_mhz": 50.0}], "seconds": 60}
    return sweep.row(config, freq, seed, report, None)


def test_sweep_jobs_build_points_at_once_and_keep_their_order(tmp_path, monkeypatch, capsys):
    from fpga import sweep
    monkeypatch.setattr(sweep, "point", _slow_first_point)
    out = tmp_path / "sweep"
    assert sweep.main(["--configs", "ulx3s", "small4x4", "--freqs", "45", "--jobs", "2", "--seeds", "1",
                       "--out", str(out)]) == 0
    assert "small4x4 at 45 MHz, seed 1: done (1 of 2)" in capsys.readouterr().out
    lines = (out / "sweep.md").read_text().splitlines()
    assert {r["commit"] for r in json.loads((out / "sweep.json").read_text())} == {sweep.source_commit()}
    assert lines[2].startswith("| ulx3s | 64 | 45.0 | 1 | 1,000 |") and lines[3].startswith("| small4x4 | 16 |")
    assert [r["config"] for r in json.loads((out / "sweep.json").read_text())] == ["ulx3s", "small4x4"]
    with pytest.raises(SystemExit):
        sweep.main(["--freqs", "45", "--jobs", "0"])
    assert "--jobs 0: give at least 1" in capsys.readouterr().err


def test_sweep_merges_earlier_sweeps_and_names_each_outcome(tmp_path, capsys):
    from fpga import sweep
    report = {"resources": {"LUT4": {"used": 900}}, "clocks": [{"achieved_mhz": 48.0}], "timing_met": True}
    rows = [sweep.row("ulx3s", 45.0, 1, report, None),
            sweep.row("ulx3s", 50.0, 1, {**report, "timing_met": False}, "timing not met: 48.00 < 50 MHz"),
            sweep.row("ulx3s", 50.0, 2, {"clocks": [{"achieved_mhz": 42.3}], "failed_step": "nextpnr-ecp5"},
                      "nextpnr-ecp5 did not finish within 40 min (for nextpnr usually ...)"),
            sweep.row("ulx3s", 50.0, 3, {}, "nextpnr-ecp5 failed (exit 1) in build/x; see build.log"),
            sweep.row("default", 30.0, 1, {}, "configuration default does not fit the 85F: ...")]
    rows[0]["commit"] = "aaaaaaa"
    for n, part in enumerate((rows[:2], rows[2:] + [{**rows[0], "seed": 4, "fmax_mhz": 47.0, "commit": "bbbbbbb"}])):
        (tmp_path / f"s{n}").mkdir()
        (tmp_path / f"s{n}" / "sweep.json").write_text(json.dumps(part))
    merged = tmp_path / "merged"
    assert sweep.main(["--merge", str(tmp_path / "s0" / "sweep.json"), str(tmp_path / "s1" / "sweep.json"),
                       "--out", str(merged)]) == 1                  # not every point met timing
    lines = (merged / "sweep.md").read_text().splitlines()
    assert [line.split(" | ")[9] for line in lines[2:7]] == ["yes", "no", "gave up (--timeout)", "failed",
                                                              "does not fit"]
    assert len(json.loads((merged / "sweep.json").read_text())) == 6
    assert "over 2 seeds" not in (merged / "sweep.md").read_text()    # 48.0 and 47.0: two commits, no spread
    assert rows[2]["fmax_mhz"] is None and rows[2]["gmacs"] is None   # a placement estimate is not an Fmax
    assert set(rows[4]) == set(sweep.ROW_KEYS)          # --merge checks the keys that row() writes
    for bad in ('{"config": "ulx3s"}', '[{"config": "ulx3s", "met": true}]'):    # not a list; rows lack keys
        (tmp_path / "bad.json").write_text(bad)
        assert sweep.main(["--merge", str(tmp_path / "bad.json"), "--out", str(merged)]) == 2
        err = capsys.readouterr().err
        assert "cannot read" in err and "not a list of sweep rows" in err
    for timeout in ("0", "-5"):
        with pytest.raises(SystemExit):
            sweep.main(["--freqs", "45", "--timeout", timeout])
        assert "give a positive number of minutes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--configs", "ulx3s"])
    assert "give the clocks to build" in capsys.readouterr().err


# ---------------------------------------------------------------- program

def _fake_loader(tmp_path, detect_output, detect_rc=0):
    tool = tmp_path / "openFPGALoader"
    tool.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n"
                    f"case \"$*\" in *--detect*) echo '{detect_output}'; exit {detect_rc};; esac\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return tool


def test_program_no_board(tmp_path, monkeypatch, capsys):
    tool = _fake_loader(tmp_path, "unable to open ftdi device: -3 (device not found)", detect_rc=1)
    monkeypatch.setenv("OPENFPGALOADER", str(tool))
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\0")
    assert fp.main(["--board", "ulx3s", "--bit", str(bit)]) == 1
    assert "no ULX3S found on USB" in capsys.readouterr().err


def test_program_with_board(tmp_path, monkeypatch):
    tool = _fake_loader(tmp_path, "index 0:\n\tidcode 0x41113043\n\tmanufacturer lattice\n\tfamily ECP5")
    monkeypatch.setenv("OPENFPGALOADER", str(tool))
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\0")
    assert fp.main(["--board", "ulx3s", "--bit", str(bit)]) == 0
    assert (tmp_path / "calls").read_text().splitlines()[-1] == f"-b ulx3s -m {bit}"


def test_program_unknown_board(capsys):
    assert fp.main(["--board", "de10", "--bit", os.devnull]) == 1
    assert "unknown board 'de10'" in capsys.readouterr().err


# ---------------------------------------------------------------- real build (slow)

@pytest.mark.slow
def test_build_smallest_config(tmp_path):
    # the default clock: build() raises BuildError if timing is not met
    report = fb.build(fb.BuildOptions(config="small4x4", out=tmp_path, threads=1, timeout_min=120))
    saved = json.loads((tmp_path / "ulx3s-85F-small4x4" / "fpga_report.json").read_text())
    assert saved["array"] == "4x4" and saved == json.loads(json.dumps(report))
    assert (tmp_path / "ulx3s-85F-small4x4" / "top.bit").stat().st_size > 100_000
    res = report["resources"]
    assert 1000 < res["LUT4"]["used"] < res["LUT4"]["available"] == 83640
    assert 500 < res["TRELLIS_FF"]["used"] < res["TRELLIS_FF"]["available"]
    assert 0 < res["DP16KD"]["used"] <= 208
    assert 0 <= res["MULT18X18D"]["used"] <= 156
    clock = next(c for c in report["clocks"] if c["constraint_mhz"] == pytest.approx(DEFAULT_FREQ / 1e6))
    assert clock["met"] and clock["achieved_mhz"] >= DEFAULT_FREQ / 1e6


@pytest.mark.parametrize("mapper, classic", [("abc", True), ("abc9", False)])
def test_lut_mapper_choice_reaches_the_yosys_script(tmp_path, monkeypatch, mapper, classic):
    fake_tools(tmp_path, monkeypatch, "exit 1")
    with pytest.raises(fb.BuildError, match="yosys failed"):
        fb.build(fb.BuildOptions(config="small4x4", out=tmp_path, echo=True, lut_mapper=mapper))
    script = (tmp_path / "ulx3s-85F-echo" / "top.ys").read_text()
    assert ("-run begin:map_luts" in script and "abc -lut 4:7" in script and "-run map_cells:" in script) == classic
    with pytest.raises(fb.BuildError, match="unknown LUT mapper 'abc7'"):
        fb.build(fb.BuildOptions(config="small4x4", out=tmp_path, echo=True, lut_mapper="abc7"))


def test_placement_density_reaches_nextpnr_and_is_checked(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, "exit 1")
    with pytest.raises(fb.BuildError, match="yosys failed"):
        fb.build(fb.BuildOptions(config="small4x4", out=tmp_path, echo=True, density=0.7))
    script = (tmp_path / "ulx3s-85F-echo" / "build_top.sh").read_text()
    assert "--placer-heap-beta 0.7" in script
    with pytest.raises(fb.BuildError, match="--density 1.5 is outside 0.3 .. 1.0"):
        fb.build(fb.BuildOptions(config="small4x4", out=tmp_path, echo=True, density=1.5))


def test_build_leaves_the_tool_environment_as_it_was(tmp_path, monkeypatch):
    monkeypatch.delenv("YOSYS", raising=False)
    fake_tools(tmp_path, monkeypatch, "sleep 30")
    with pytest.raises(fb.BuildError):
        fb.build(fb.BuildOptions(config="small4x4", freq_mhz=50, out=tmp_path, echo=True, timeout_min=0.01))
    assert "YOSYS" not in os.environ


def test_block_report_covers_every_engine_and_ends_in_statistics():
    """fpga.blocks synthesizes each engine of the core (a new engine cannot be left out) with make bitstream's
    script, which there ends in yosys' statistics instead of a netlist."""
    assert {f"{engine.name.lower()}_engine" for engine in Engine} <= set(BLOCKS)
    script = stat_script("ulx3s", "85F")
    assert "write_verilog" not in script and "stat" in script and "synth_ecp5" in script
    text = table("small4x4", {"mac_array": {"cells": {"LUT4": 1200, "MULT18X18D": 16}, "seconds": 3.0},
                              "loss_engine": {"cells": {"LUT4": 2500, "DP16KD": 4}, "seconds": 9.0}})
    assert "| mac_array (in matmul_engine) | 1,200 | 0 | 0 | 0 | 16 | 0 | 3.0 |" in text
    assert "| sum of the blocks | 2,500 | 0 | 0 | 0 | 0 | 4 | |" in text


def test_block_table_shows_out_of_context_timing():
    text = table("small4x4", {"tensor_table": {"cells": {"LUT4": 450}, "seconds": 1.0,
                                               "timing": {"fmax": 235.24, "constraint": 100.0,
                                                          "path": ["slot_ff", "shapes_ram"], "seconds": 20.0}}})
    assert "Fmax MHz (out of context) | critical path |" in text
    assert "| tensor_table | 450 | 0 | 0 | 0 | 0 | 0 | 1.0 | 235.2 | `slot_ff` -> `shapes_ram` |" in text


@pytest.mark.parametrize("mhz", ["0", "-50"])
def test_block_timing_refuses_a_clock_that_is_not_positive(mhz, capsys):
    with pytest.raises(SystemExit) as exit_info:
        blocks_main(["--config", "small4x4", "--only", "tensor_table", "--timing", mhz])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--timing {mhz}: the clock to time the blocks at must be positive MHz" in err and "Traceback" not in err


def test_block_timing_refuses_a_seed_that_is_not_an_integer(capsys):
    with pytest.raises(SystemExit) as exit_info:
        blocks_main(["--config", "small4x4", "--only", "tensor_table", "--timing", "100", "--seed", "two"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--seed: invalid int value: 'two'" in err and "Traceback" not in err


def test_make_blocks_passes_the_timing_clock():
    def dry(*args):
        return subprocess.run(["make", "-n", "blocks", "BOARD=ulx3s", *args], cwd=Path(__file__).parents[1],
                              capture_output=True, text=True).stdout
    assert "--timing 100" in dry("TIMING=100") and "--timing" not in dry()
    assert "--seed 3" in dry("TIMING=100", "PNR_SEED=3") and "--seed" not in dry("TIMING=100", "SEED=3")


def test_make_bitstream_passes_the_placement_seed_and_a_time_limit():
    """PNR_SEED reaches nextpnr; the training SEED does not (fpga.build's own default seed applies); a tool
    step is stopped after 90 minutes unless TIMEOUT says otherwise."""
    def dry(*args):
        return subprocess.run(["make", "-n", "bitstream", "BOARD=ulx3s", *args], cwd=Path(__file__).parents[1],
                              capture_output=True, text=True).stdout
    assert "--seed 5" in dry("PNR_SEED=5") and "--seed" not in dry("SEED=5")
    assert fb.BuildOptions().seed == fb.DEFAULT_SEED
    assert "--timeout 90" in dry() and "--timeout 40" in dry("TIMEOUT=40")


def test_a_block_placed_and_routed_out_of_context_reports_its_fmax(tmp_path):
    """The smallest block through yosys and nextpnr --out-of-context (about 30 s): a real Fmax and path."""
    code = blocks_main(["--config", "small4x4", "--only", "tensor_table", "--out", str(tmp_path), "--timing", "100",
                        "--seed", "2"])
    assert code == 0
    report = json.loads((tmp_path / "ulx3s-85F-small4x4" / "blocks.json").read_text())
    timing = report["blocks"]["tensor_table"]["timing"]
    assert timing["fmax"] > 50 and timing["constraint"] == 100 and timing["seed"] == 2 and len(timing["path"]) == 2


def test_block_timing_places_with_the_seed_it_is_given(tmp_path, monkeypatch):
    """time_block hands its seed to nextpnr (a stand-in records the command and writes an empty report)."""
    import fpga.blocks as blocks
    commands = []

    def nextpnr(command, cwd, **kwargs):
        commands.append(command)
        (Path(cwd) / "timing.json").write_text("{}")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(blocks.subprocess, "run", nextpnr)
    result = blocks.time_block("tensor_table", tmp_path, "nextpnr-ecp5", blocks.get_platform("ulx3s", "85F")(), 100,
                               seed=7)
    assert commands[0][commands[0].index("--seed") + 1] == "7" and result["seed"] == 7


def test_board_reset_rides_the_global_network(tmp_path):
    """The UART echo design through the board flow (about 10 s): the sync reset leaves its synchronizer through
    a DCCA, every flip-flop's LSR that the reset reaches is driven by that DCCA, and nextpnr routes it on a
    global (as a fabric net, the core's 24,000-sink reset was the router's most congested net).  Built with
    --heatmap: fpga.congestion reads the heatmaps nextpnr wrote."""
    report = fb.build(fb.BuildOptions(echo=True, out=tmp_path, threads=1, timeout_min=10, heatmap=True))
    build_dir = tmp_path / "ulx3s-85F-echo"
    cells = json.loads((build_dir / "top.json").read_text())["modules"]["top"]["cells"]
    (dcca,) = [cell for cell in cells.values() if cell["type"] == "DCCA"]
    reset_bit, raw_bit = dcca["connections"]["CLKO"][0], dcca["connections"]["CLKI"][0]
    lsr = [cell["connections"]["LSR"][0] for cell in cells.values()
           if cell["type"] == "TRELLIS_FF" and "LSR" in cell["connections"]]
    assert lsr.count(reset_bit) > 50 and raw_bit not in lsr
    log = (build_dir / "top.tim").read_text()
    assert "promoting clock net rst to global network" in log and "routing clock net rst using global" in log
    assert report["timing_met"]
    last = congestion.iterations(build_dir)[-1]
    assert f"router iteration {last}: overuse 0 over 0 nets" in congestion.summary(build_dir)


def test_heatmap_needs_router2(tmp_path):
    with pytest.raises(fb.BuildError, match="router2"):
        fb.build(fb.BuildOptions(echo=True, out=tmp_path, router="router1", heatmap=True))
