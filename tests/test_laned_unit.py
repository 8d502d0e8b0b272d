"""hw.laned_unit: the signature ShiftQuantizer and UpdateUnit share, and its bad input."""

import gc

import pytest
from amaranth.hdl import Fragment

from golden_model.config import CONFIGS
from hw.shift_quantizer import ShiftQuantizer
from hw.update_unit import UpdateUnit


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # the half-built unit
@pytest.mark.parametrize("unit", [ShiftQuantizer, UpdateUnit])
def test_lanes_must_be_positive(unit):
    with pytest.raises(ValueError, match="lanes must be positive, got 0"):
        unit(CONFIGS["small4x4"], 0)
    gc.collect()                   # its warning is raised, and ignored, here


@pytest.mark.parametrize("unit, inputs", [(ShiftQuantizer, ["data"]), (UpdateUnit, ["w", "g"])])
@pytest.mark.parametrize("counted", [False, True])
def test_beat_fields(unit, inputs, counted):
    cfg = CONFIGS["default"]
    u = unit(cfg, cfg.lanes, counted=counted)
    fields = list(u.i.payload.shape().members)
    assert fields == inputs + ["last"] + (["count"] if counted else [])
    if counted:   # 0..lanes valid elements per beat
        assert u.i.payload.count.shape().width == cfg.lanes.bit_length()
    assert "key" in u.cmd.payload.shape().members
    Fragment.get(u, None)          # and it elaborates
