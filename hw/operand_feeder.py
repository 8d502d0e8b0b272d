"""OperandFeeder: one MATMUL or CONV operand as the W-element vectors the MAC array takes, one per k.

A :class:`~hw.feed_addresses.FeedAddresses` walks the operand and asks for
one word per bank word (through a small FIFO); this component reads them (or writes zeros for a
word of padding), registers each word where it arrives and writes it into two banks of W words, and
emits the vectors: while one bank fills, ``o`` emits lane ``beat`` of the other's words (registered).  A plain
operand's fill holds a block of W rows at one K block of L columns and emits
L vectors (fewer for the last K block); a transposed operand's fill is one
word per k, whose segment of W lanes is the vector.  The banks are
:class:`~hw.skewed_banks.SkewedBanks` (LUT RAM, skewed so that a word's write
and a vector's read touch each RAM once); the emit zeros the words past a
plain fill's last.  A ``hit``
request re-arms a bank that still holds the fill.  Parameters are sampled
continuously: hold them from ``PARAMS_LEAD`` cycles before ``start`` until
the last vector has left.
"""

from amaranth import Array, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .feed_addresses import FeedAddresses, feed_params_layout
from .interfaces import ReadPortSignature, tmem_addr_shape, tmem_word_layout
from .rounding import data_shape
from .skewed_banks import SkewedBanks


class OperandFeeder(wiring.Component):
    #: the request FIFO between the address walk and the banks: the walk's stall is then its level, not
    #: the array taking a vector in the same cycle (three entries keep one request per cycle flowing)
    REQUEST_DEPTH = 3
    #: cycles from a request leaving FeedAddresses to the feeder's taking it (the FIFO's write and output)
    REQUEST_LATENCY = 2
    #: cycles the parameters must settle before ``start``
    PARAMS_LEAD = FeedAddresses.PARAMS_LEAD

    def __init__(self, cfg: CoreConfig, *, width: int, outer_step: int, rep_step: int):
        self.cfg, self.width = cfg, width
        self.addresses = FeedAddresses(cfg, width=width, outer_step=outer_step, rep_step=rep_step)
        super().__init__({
            "start": In(1),
            "params": In(feed_params_layout(cfg)),
            "mem": Out(ReadPortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
            "o": Out(stream.Signature(data.ArrayLayout(data_shape(cfg), width))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, width = self.cfg, self.width
        lanes, bits = cfg.lanes, cfg.data_bits
        segments = lanes // width
        m.submodules.addresses = addresses = self.addresses
        m.d.comb += [addresses.start.eq(self.start), addresses.params.eq(self.params)]
        layout = addresses.o.payload.shape()
        m.submodules.requests = requests = ResetInserter(self.start)(
            SyncFIFOBuffered(width=layout.size, depth=self.REQUEST_DEPTH))
        m.d.comb += [requests.w_data.eq(addresses.o.payload), requests.w_en.eq(addresses.o.valid),
                     addresses.o.ready.eq(requests.w_rdy)]
        request = data.View(layout, requests.r_data)

        wsel, rsel = Signal(), Signal()
        full = [Signal(name=f"full{b}") for b in range(2)]
        steps = [Signal(range(lanes), name=f"steps{b}") for b in range(2)]   # vectors in the bank - 1
        m.submodules.banks = banks = SkewedBanks(lanes=lanes, words=width, bits=bits)
        beat = Signal(range(lanes))
        emitting = Array(full)[rsel]
        taken = ~self.o.valid | self.o.ready                 # the output register is free or taken
        pop = emitting & taken
        freeing = pop & (beat == Array(steps)[rsel])
        writable = ~Array(full)[wsel] | (freeing & (rsel == wsel))
        take = requests.r_rdy & writable & ~self.start
        # the read is enabled by the request FIFO's head alone, not by ``take``: the array's stall then
        # never reaches the TMEM address (a read that is not taken is read again, and its word not kept)
        m.d.comb += [requests.r_en.eq(take), self.mem.addr.eq(request.addr),
                     self.mem.en.eq(requests.r_rdy & ~request.hit & ~request.zero)]
        with m.If(take & request.last):
            m.d.sync += wsel.eq(~wsel)

        # capture: the read word (data valid the cycle after the read) is registered where it arrives (``w``:
        # the route from TMEM's block RAM and the banks' write rotation each get a cycle) and goes into its
        # bank word the cycle after (a transposed fill is word 0).  The bank is announced full when its last
        # word arrives, a cycle before that word is in the bank, so a fill is as early as without the
        # register: in that cycle the emit takes the last word from ``w`` (below)
        d = Signal(data.StructLayout({"valid": 1, "bank": 1, "word": range(width), "last": 1, "zero": 1,
                                      "steps": range(lanes), "segment": range(max(segments, 2))}))
        m.d.sync += [d.valid.eq(take & ~request.hit), d.bank.eq(wsel), d.word.eq(request.word),
                     d.last.eq(request.last), d.zero.eq(request.zero), d.steps.eq(request.steps),
                     d.segment.eq(request.segment)]
        w = Signal(data.StructLayout({"valid": 1, "bank": 1, "word": range(width),
                                      "data": data.ArrayLayout(bits, lanes)}))
        m.d.sync += [w.valid.eq(d.valid), w.bank.eq(d.bank), w.word.eq(d.word),
                     w.data.eq(Mux(d.zero, 0, self.mem.data.as_value()))]
        m.d.comb += [banks.w_en.eq(w.valid), banks.w_bank.eq(w.bank), banks.w_word.eq(w.word),
                     banks.w_data.eq(w.data)]
        top = [Signal(range(width), name=f"top{b}") for b in range(2)]
        segment = [Signal(range(max(segments, 2)), name=f"segment{b}") for b in range(2)]
        with m.If(d.valid):
            for b in range(2):
                with m.If(d.bank == b):
                    with m.If(d.last):
                        m.d.sync += [full[b].eq(1), steps[b].eq(d.steps), top[b].eq(d.word),
                                     segment[b].eq(d.segment)]

        # emit, through an output register (the lane multiplexer and the route to the array's multipliers
        # each get a clock period): plain, lane ``beat`` of the words of bank ``rsel``, 0 past the fill's
        # last word; transposed, the fill's segment of W lanes of its word.  A word of bank ``rsel`` still
        # in ``w`` is its fill's last (no other word of a full bank is in flight) and is taken from there
        tr = self.params.transposed
        fill_top, fill_segment = Array(top)[rsel], Array(segment)[rsel]
        first_lane = (fill_segment * width)[:len(beat)] if segments > 1 else 0
        m.d.comb += [banks.r_bank.eq(rsel), banks.r_transposed.eq(tr), banks.r_lane.eq(Mux(tr, first_lane, beat))]
        in_flight = w.valid & (w.bank == rsel)
        plain_lane = Array(w.data[lane] for lane in range(lanes))[beat]
        with m.If(taken):
            m.d.sync += self.o.valid.eq(emitting)
            for i in range(width):
                transposed_lane = Array(w.data[s * width + i] for s in range(segments))[fill_segment]
                kept = Mux(in_flight & (tr | (w.word == i)), Mux(tr, transposed_lane, plain_lane), banks.r_data[i])
                if i:                                                   # a fill has word 0
                    kept = Mux(tr | (fill_top >= i), kept, 0)
                m.d.sync += self.o.payload[i].eq(kept)
        with m.If(pop):
            with m.If(freeing):
                m.d.sync += [beat.eq(0), rsel.eq(~rsel)]
                for b in range(2):
                    with m.If(rsel == b):
                        m.d.sync += full[b].eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        # a hit re-arms the bank at once (after the clear above when it is freed this cycle)
        with m.If(take & request.hit):
            for b in range(2):
                with m.If(wsel == b):
                    m.d.sync += full[b].eq(1)
        with m.If(self.start):
            m.d.sync += [rsel.eq(0), wsel.eq(0), beat.eq(0), d.valid.eq(0), w.valid.eq(0), self.o.valid.eq(0)]
            m.d.sync += [f.eq(0) for f in full]
        return m
