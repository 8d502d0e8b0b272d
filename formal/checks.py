"""The checks ``make formal`` runs: what each proves, on which design, in which sby mode and to what depth.

Every equivalence check has a cover twin that shows its output is reached
within the depth (a proof over a design whose output never fires would be
vacuous).  ``quick`` checks run in CI through tests/test_formal.py; the rest
run with ``make formal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from amaranth import Elaboratable

from golden_model.config import CoreConfig, get_config
from hw.shift_quantizer import ShiftQuantizer
from hw.update_unit import UpdateUnit

from .lanes import GeneratorWordCheck, RoundingLaneCheck, ShiftQuantizerCheck, UpdateUnitCheck
from .link_crc import LinkCrcCheck

#: The rounding units depend on data_bits, acc_bits, max_shift and exp_bits only (equal in every
#: configuration); the link check uses the small board's configuration (4-byte TMEM words: short frames).
UNIT_CONFIG = "default"
LINK_CONFIG = "small4x4"
#: The link check's depth.  What happens within it is shown by simulation (tests/test_formal.py::
#: test_link_depth_reaches_commits: table, TMEM and program writes, and a run after a frame with a wrong CRC);
#: an sby cover at this depth would have to prove every earlier step unreachable, without the lemmas' help.
LINK_DEPTH = 40


@dataclass(frozen=True)
class Check:
    name: str
    proves: str
    design: Callable[[CoreConfig], Elaboratable]
    config: str
    mode: str
    depth: int
    quick: bool

#: Depths that reach the units' outputs with handshakes held high: the command, the setup, the max
#: pass (ShiftQuantizer), then the pipeline.
SQ_DEPTH = 5 + ShiftQuantizer.LATENCY
UU_DEPTH = 3 + UpdateUnit.LATENCY


CHECKS: tuple[Check, ...] = (
    Check("generator_word", "hw.prng.random_word(x) == xs32(xs32(x)) for every 32-bit x (the masked shifts "
          "against the nested xorshift)", GeneratorWordCheck, UNIT_CONFIG, "bmc", 1, True),
    Check("rounding_lane", "round_shift_saturate == saturate(round_shift(x, s, mode)) for every x, s, mode, r",
          RoundingLaneCheck, UNIT_CONFIG, "bmc", 1, True),
    Check("shift_quantizer_fixed", "ShiftQuantizer lane == shift_quantize, every relu/explicit/shift/mode/key/x, "
          "handshakes held high", lambda cfg: ShiftQuantizerCheck(cfg, free_timing=False), UNIT_CONFIG, "bmc",
          SQ_DEPTH, True),
    Check("shift_quantizer_fixed_cover", "its output is reached",
          lambda cfg: ShiftQuantizerCheck(cfg, free_timing=False), UNIT_CONFIG, "cover", SQ_DEPTH, True),
    Check("update_unit_fixed", "UpdateUnit lane == update_weights, every shift/mode/key/w/g, handshakes held high",
          lambda cfg: UpdateUnitCheck(cfg, free_timing=False), UNIT_CONFIG, "bmc", UU_DEPTH, True),
    Check("update_unit_fixed_cover", "its output is reached", lambda cfg: UpdateUnitCheck(cfg, free_timing=False),
          UNIT_CONFIG, "cover", UU_DEPTH, True),
    Check("shift_quantizer", "as shift_quantizer_fixed, every handshake timing up to the depth, the generator "
          "word abstracted to its counter (every r)",
          ShiftQuantizerCheck, UNIT_CONFIG, "bmc", SQ_DEPTH + 1, False),
    Check("shift_quantizer_cover", "its output is reached", ShiftQuantizerCheck, UNIT_CONFIG, "cover",
          SQ_DEPTH + 1, False),
    Check("update_unit", "as update_unit_fixed, every handshake timing up to the depth, the generator word "
          "abstracted to its counter (every r)",
          UpdateUnitCheck, UNIT_CONFIG, "bmc", UU_DEPTH + 2, False),
    Check("update_unit_cover", "its output is reached", UpdateUnitCheck, UNIT_CONFIG, "cover", UU_DEPTH + 2, False),
    Check("link_crc_quick", "HostLink commits nothing unless the last frame's CRC was right: every input "
          "sequence of 14 cycles from reset", LinkCrcCheck, LINK_CONFIG, "bmc", 14, True),
    Check("link_crc_quick_cover", "a run start (a whole RUN frame) is reached within 14 cycles",
          lambda cfg: LinkCrcCheck(cfg, covers=("run",)), LINK_CONFIG, "cover", 14, True),
    Check("link_crc", f"as link_crc_quick, every input sequence of {LINK_DEPTH} cycles", LinkCrcCheck, LINK_CONFIG,
          "bmc", LINK_DEPTH, False),
)


def get_check(name: str) -> Check:
    for check in CHECKS:
        if check.name == name:
            return check
    raise ValueError(f"unknown check {name!r}; known: {', '.join(c.name for c in CHECKS)}")


def build_design(check: Check) -> Elaboratable:
    return check.design(get_config(check.config))


__all__ = ["UNIT_CONFIG", "LINK_CONFIG", "LINK_DEPTH", "Check", "CHECKS", "get_check", "build_design"]
