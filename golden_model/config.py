"""The one configuration object of the project.

The golden model, rtl_gen, the cocotb testbenches and the host driver all read
a :class:`CoreConfig`; no width, depth or rounding choice is written anywhere
else.  Named configurations are in :data:`CONFIGS`; ``default`` is the 8x8 core.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

from .isa import field_width
from .shuffle import MAX_SAMPLES

ROUNDING_MODES = ("nearest", "stochastic")


@dataclass(frozen=True)
class CoreConfig:
    """Hardware and arithmetic parameters of one EOQ training core.

    Arithmetic (see docs/eoq_arithmetic.md):
      data_bits       width of every stored tensor (W, A, E, G, U): 8.
      acc_bits        width of the MAC accumulators: 32.
      max_shift       right shifts larger than this flush the result to zero.
      act_rounding    rounding of activations when requantized (SQ): nearest.
      err_rounding    rounding of back-propagated errors (SQ): nearest.
      grad_rounding   rounding of weight gradients (SQ).
      update_rounding rounding of the weight update lr * G into weight units.
      seed            base seed of the stochastic-rounding generator.
      loss_fixed_exp  grid 2**loss_fixed_exp on which the host writes the
                      float softmax error before the integer SQ (host side).

    Hardware:
      array_rows, array_cols   MAC array shape (R x C processing elements).
      logic_product_area  size and address products (the sequencer's, the walks'; not the
                      array's) whose operand widths multiply to at most this are built in
                      LUTs instead of a MULT18X18D (0: none): the DSP budget of a wide array.
      unit_lanes      elements per cycle of the QUANT, UPDATE/QUPDATE and vector engines'
                      lanes (0: ``lanes``, a word per cycle); a divisor of ``lanes``: a
                      word then takes ``unit_beats`` cycles there, and those lanes' logic
                      (and the vector engine's lane products) shrinks by that factor
                      (docs/fpga.md).
      max_features    largest layer width (in or out) of a dense layer.
      max_batch       largest batch the activation buffers hold.
      max_dim         largest tensor dimension (rows or columns) the core handles: an
                      image batch is the tensor (B*H*W, C) and a convolution's weights
                      (O, KH*KW*C) (golden_model/geometry.py).
      tmem_bytes      tensor memory (weights, activations, errors, gradients),
                      int8, organized as words of ``lanes`` bytes.
      acc_elements    accumulator memory: int32 elements (the ACC tensor).
      tensor_slots    entries of the tensor table (docs/isa.md).
      program_depth   64-bit instructions the program memory holds.
      data_bytes      resident data memory (DMEM): the training and test samples LOAD
                      draws batches from, int8 in words of ``lanes`` bytes.
      data_samples    entries of the label memory (one int8 class per sample); also the
                      most samples a data set may have.
      exp_bits        width of the signed per-tensor exponents.

    Host link (docs/protocol.md):
      max_payload     largest frame payload in bytes (the device's frame buffer).
      frame_timeout_cycles  a request frame stalled mid-way for this many clock
                      cycles is discarded and answered with TIMEOUT.
    """

    #: Arithmetic choices the core builds and golden_model/arithmetic.py varies (class constants, not
    #: fields: a variant is a golden-model experiment, never a hardware configuration).
    scale_rounding: ClassVar[str] = "up"        # R(x): 2**ceil(log2 max|x|), docs/eoq_arithmetic.md
    error_format: ClassVar[str] = "sq"          # errors: int8 SQ, one exponent per tensor

    name: str = "default"
    data_bits: int = 8
    acc_bits: int = 32
    max_shift: int = 31
    act_rounding: str = "nearest"
    err_rounding: str = "nearest"
    grad_rounding: str = "stochastic"
    update_rounding: str = "stochastic"
    seed: int = 0x2105_1389
    loss_fixed_exp: int = -24
    array_rows: int = 8
    array_cols: int = 8
    unit_lanes: int = 0
    logic_product_area: int = 0
    max_features: int = 64
    max_batch: int = 16
    max_dim: int = 1024
    tmem_bytes: int = 131072
    acc_elements: int = 8192
    tensor_slots: int = 64
    program_depth: int = 256
    data_bytes: int = 131072
    data_samples: int = 2048
    exp_bits: int = 16
    max_payload: int = 1024
    frame_timeout_cycles: int = 1 << 20

    def __post_init__(self):
        if self.data_bits != 8:
            raise ValueError(f"data_bits must be 8 (EOQ is an 8-bit scheme), got {self.data_bits}")
        if self.acc_bits not in (24, 32):
            raise ValueError(f"acc_bits must be 24 or 32, got {self.acc_bits}")
        for field in ("act_rounding", "err_rounding", "grad_rounding", "update_rounding"):
            mode = getattr(self, field)
            if mode not in ROUNDING_MODES:
                raise ValueError(f"{field} must be one of {ROUNDING_MODES}, got {mode!r}")
        for field in ("act_rounding", "err_rounding"):
            if getattr(self, field) != "nearest":
                raise ValueError(f"{field} must be 'nearest': stochastic rounding is for gradients and "
                                 f"updates only (docs/eoq_arithmetic.md)")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be a 32-bit unsigned integer, got {self.seed}")
        for field in ("array_rows", "array_cols", "max_features", "max_batch", "max_dim"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.max_dim < max(self.max_features, self.max_batch):
            raise ValueError(f"max_dim {self.max_dim} must hold max_features ({self.max_features}) and "
                             f"max_batch ({self.max_batch})")
        # Worst case |acc|, 128 * 128 per term: the longest inner product of a MATMUL or CONV is max_dim
        # terms, a DOT sums at most tmem_bytes / 2 products (both operands live in TMEM), and a CONV's
        # error sums KH*KW*O <= tmem_bytes / lanes products (its weights live in TMEM).
        longest = max(self.max_dim, self.tmem_bytes // 2)
        if longest * 2**14 >= 2 ** (self.acc_bits - 1):
            raise ValueError(
                f"a sum of {longest} int8 products can overflow {self.acc_bits}-bit accumulators; "
                f"lower max_dim or tmem_bytes, or widen acc_bits")
        if self.max_features * self.max_features > self.acc_elements:
            raise ValueError(
                f"acc_elements {self.acc_elements} cannot hold one {self.max_features}x{self.max_features} gradient")
        if self.max_features * self.max_features > self.tmem_bytes:
            raise ValueError(
                f"tmem_bytes {self.tmem_bytes} cannot hold one {self.max_features}x{self.max_features} layer")
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"lanes = max(array_rows, array_cols) must be a power of two, got {self.lanes}")
        if self.array_cols % self.array_rows:
            raise ValueError(
                f"array_cols ({self.array_cols}) must be a multiple of array_rows ({self.array_rows}): the MATMUL "
                f"engine maps one array row to one accumulator word and needs array_rows to divide the lanes")
        if self.unit_lanes < 0 or (self.unit_lanes and self.lanes % self.unit_lanes):
            raise ValueError(f"unit_lanes must divide lanes ({self.lanes}), or be 0 for lanes, "
                             f"got {self.unit_lanes}")
        if self.tmem_bytes % self.lanes or self.acc_elements % self.lanes:
            raise ValueError(f"tmem_bytes and acc_elements must be multiples of lanes ({self.lanes})")
        if self.data_bytes % self.lanes or not self.lanes <= self.data_bytes <= self.lanes * 65536:
            raise ValueError(f"data_bytes must be a multiple of lanes ({self.lanes}) holding 1..65536 words "
                             f"(the host link's 16-bit address), got {self.data_bytes}")
        if not 1 <= self.data_samples <= min(MAX_SAMPLES, self.data_words):
            raise ValueError(f"data_samples must be in [1, {min(MAX_SAMPLES, self.data_words)}] (the Shuffler's "
                             f"largest set, the data memory's words), got {self.data_samples}")
        if not 2 + max(self.lanes, 8) <= self.max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must hold an address and one TMEM word or instruction "
                             f"({2 + max(self.lanes, 8)} bytes) and fit 16 bits, got {self.max_payload}")
        slot_limit = 1 << field_width("dst")
        if not 1 <= self.tensor_slots <= slot_limit:
            raise ValueError(f"tensor_slots must be in [1, {slot_limit}] (the instruction's slot fields), "
                             f"got {self.tensor_slots}")
        if not 1 <= self.frame_timeout_cycles < 2**32:
            raise ValueError(f"frame_timeout_cycles must be in [1, 2**32), got {self.frame_timeout_cycles}")

    @property
    def qmax(self) -> int:
        """Largest stored magnitude: the range is symmetric, [-qmax, qmax] = [-127, 127]."""
        return 2 ** (self.data_bits - 1) - 1

    @property
    def qmin(self) -> int:
        return -self.qmax

    @property
    def acc_min(self) -> int:
        return -(2 ** (self.acc_bits - 1))

    @property
    def acc_max(self) -> int:
        return 2 ** (self.acc_bits - 1) - 1

    @property
    def lanes(self) -> int:
        """Elements per memory word: max(array_rows, array_cols)."""
        return max(self.array_rows, self.array_cols)

    def product_in_logic(self, a_bits: int, b_bits: int) -> bool:
        """Whether a size or address product of these operand widths is built in LUTs."""
        return a_bits * b_bits <= self.logic_product_area

    @property
    def unit_width(self) -> int:
        """Elements per cycle of the quantize and update units: ``unit_lanes``, or ``lanes``."""
        return self.unit_lanes or self.lanes

    @property
    def unit_beats(self) -> int:
        """Cycles those units take per memory word."""
        return self.lanes // self.unit_width

    @property
    def tmem_words(self) -> int:
        return self.tmem_bytes // self.lanes

    @property
    def data_words(self) -> int:
        return self.data_bytes // self.lanes

    @property
    def acc_words(self) -> int:
        return self.acc_elements // self.lanes

    @property
    def num_pes(self) -> int:
        return self.array_rows * self.array_cols

    def replace(self, **changes) -> "CoreConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "CoreConfig":
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        return cls(**data)


#: TMEM of a core that builds on the ULX3S's ECP5-85F (208 DP16KD): yosys gives TMEM one block-RAM copy
#: per read port (three: the products' A and B and the QUANT/UPDATE operand that runs beside them), so
#: 128 KiB of TMEM alone is 192 DP16KD; 64 KiB is 96 (docs/fpga.md).
BOARD_TMEM_BYTES = 65536
#: DMEM of the board cores: the digits set (1,797 samples of 64 features) in 29 x 512 words of 8 bytes,
#: 58 DP16KD (docs/fpga.md)
BOARD_DATA_BYTES = 118784

CONFIGS: dict[str, CoreConfig] = {
    "small4x4": CoreConfig(name="small4x4", array_rows=4, array_cols=4, tmem_bytes=BOARD_TMEM_BYTES,
                           data_bytes=BOARD_DATA_BYTES),
    "default": CoreConfig(name="default"),
    "ulx3s": CoreConfig(name="ulx3s", tmem_bytes=BOARD_TMEM_BYTES, data_bytes=BOARD_DATA_BYTES),     # the default core as the 85F holds it
    # the 128-MAC candidate: 8 lanes in the per-lane engines, the size and address products up to 12 x 12
    # bits in LUTs (the array takes 128 of the 85F's 156 MULT18X18D; docs/fpga.md)
    "wide8x16": CoreConfig(name="wide8x16", array_rows=8, array_cols=16, acc_elements=16384, unit_lanes=8,
                           logic_product_area=144),
    # wide8x16 with the 85F's memory sizes (the board's TMEM, DMEM and 8,192 ACC elements, as ulx3s)
    "ulx3s_wide": CoreConfig(name="ulx3s_wide", array_rows=8, array_cols=16, tmem_bytes=BOARD_TMEM_BYTES,
                             data_bytes=BOARD_DATA_BYTES, unit_lanes=8, logic_product_area=144),
    "big16x16": CoreConfig(name="big16x16", array_rows=16, array_cols=16),      # FPGA size exploration (docs/fpga.md)
    "default_nearest": CoreConfig(name="default_nearest", grad_rounding="nearest", update_rounding="nearest"),
}


def get_config(name: str) -> CoreConfig:
    """Return the named configuration, or raise ValueError listing the known names."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown configuration {name!r}; known: {', '.join(sorted(CONFIGS))}") from None
