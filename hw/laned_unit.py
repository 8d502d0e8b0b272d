"""LanedStreamUnit: what ShiftQuantizer and UpdateUnit share.

Both take one command per tensor (with a generator ``key``), then stream
beats of ``lanes`` elements on ``i`` (``last`` on the final beat and, with
``counted=True``, ``count``, the beat's number of valid elements) and give
results on ``o``; element i draws generator word i of the key (``word``
maps a generator counter to its word, as in :class:`RandomLanes`).
"""

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .prng import RandomLanes, random_word


class LanedStreamUnit(wiring.Component):
    """Base of the per-tensor streaming units: signature and generator lanes."""

    def __init__(self, cfg: CoreConfig, lanes: int, counted: bool, command: data.Layout, inputs: dict,
                 outputs: dict, *, word=random_word):
        if lanes < 1:
            raise ValueError(f"lanes must be positive, got {lanes}")
        self.cfg = cfg
        self.lanes = lanes
        self.counted = counted
        self.word = word
        count = {"count": range(lanes + 1)} if counted else {}
        super().__init__({
            "cmd": In(stream.Signature(command)),
            "i": In(stream.Signature(data.StructLayout({**inputs, "last": 1, **count}))),
            "o": Out(stream.Signature(data.StructLayout(outputs))),
        })

    def random_lanes(self, m: Module) -> RandomLanes:
        """The unit's generator, keyed by the command and advanced by each beat's count."""
        m.submodules.prng = prng = RandomLanes(self.lanes, self.counted, word=self.word)
        if self.counted:
            m.d.comb += prng.count.eq(self.i.payload.count)
        m.d.comb += prng.key.eq(self.cmd.payload.key)
        return prng
