"""LoadEngine: the LOAD instruction, the next batch of the resident data set into a TMEM tensor.

Per row of dst the engine picks a sample of the set (base, count) in the
command's key (golden ``Machine.batch_samples``):

- the training stream (f1) takes the train cursor's position in the epoch's
  order from a :class:`~hw.shuffler.Shuffler` keyed with the epoch's key
  (golden ``shuffle.epoch_key``: a :class:`~hw.step_keys.StepKeys` of the
  seed and the epoch), and a row that finds the position at the end starts
  the next epoch;
- the evaluation stream takes the eval cursor's position in order and
  writes a padding row (zeros, label -1) past the end.

A feature LOAD copies the sample's words from DMEM, zeroing the lanes past
dst's columns, and commits the cursor when done; a label LOAD (f0) writes
the sample's label into lane 0 of the row's word and leaves the cursor.
One read per cycle along a row: the reads travel through DMEM's pipeline
(:data:`~hw.data_memory.DataMemory.READ_LATENCY` cycles) with their TMEM
address, lane count and padding flag beside them, so the next row's sample
is picked while the last words of a row are still on their way; the write is
registered on its way to the memories, and ``done`` waits until the last one
lands in its cycle.
"""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from golden_model.machine import CURSOR_BITS, NO_LABEL
from golden_model.prng import tensor_mix
from golden_model.shuffle import SHUFFLE_TENSOR_ID

from .data_memory import DataMemory
from .interfaces import (EngineSignature, ReadPortSignature, cursor_layout, data_addr_shape, dim_shape,
                         label_addr_shape, tmem_addr_shape, tmem_word_layout)
from .prng import xs32
from .shuffler import Shuffler
from .step_keys import StepKeys

SHUFFLE_MIX = tensor_mix(SHUFFLE_TENSOR_ID)
EVAL_LAST = (1 << CURSOR_BITS["eval"]) - 1


class LoadEngine(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            **EngineSignature(cfg).members,
            "data_r": Out(ReadPortSignature(data_addr_shape(cfg), tmem_word_layout(cfg))),
            "labels_r": Out(ReadPortSignature(label_addr_shape(cfg), signed(8))),
            "seed": In(32),
            "cursor": Out(cursor_layout()),
            "cursor_w": In(wiring.Signature({"en": Out(1), "value": Out(cursor_layout())})),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lanes = self.cfg, self.cfg.lanes
        m.submodules.shuffler = shuffler = Shuffler(max_count=cfg.data_samples)
        m.submodules.epoch_keys = epoch_keys = StepKeys()
        cmd = Signal.like(self.cmd.payload)
        base, count = cmd.key[:16], cmd.key[16:]
        at = Signal(cursor_layout())                  # the cursor as the rows advance it
        row, word = Signal(dim_shape(cfg)), Signal(dim_shape(cfg))
        remaining = Signal(dim_shape(cfg))            # dst's columns from this word on
        addr = Signal(tmem_addr_shape(cfg))
        sample, pad = Signal(17), Signal()
        sample_word = Signal(data_addr_shape(cfg).width + 1)
        wait = Signal(range(StepKeys.LATENCY + 1))

        m.d.comb += [epoch_keys.write.en.eq(1), epoch_keys.write.seed.eq(self.seed),
                     epoch_keys.write.step.eq(at.epoch),
                     shuffler.cmd.payload.count.eq(count),
                     shuffler.cmd.payload.key.eq(xs32(epoch_keys.base ^ SHUFFLE_MIX)),
                     shuffler.i.payload.eq(at.train),
                     self.data_r.addr.eq(sample_word + word), self.labels_r.addr.eq(sample)]
        # the cursor's end test, registered: the cursor moves at least two cycles before ROW reads it
        epoch_over = Signal()
        m.d.sync += epoch_over.eq(at.train >= count)
        # a read's TMEM word, lanes and padding travel beside it through DMEM's pipeline
        read = data.StructLayout({"valid": 1, "pad": 1, "remaining": dim_shape(cfg), "addr": tmem_addr_shape(cfg)})
        issued = Signal(read)
        stages = [issued]
        for stage in range(DataMemory.READ_LATENCY):
            stages.append(Signal(read, name=f"read_{stage + 1}"))
            m.d.sync += stages[-1].eq(stages[-2])
        arriving = stages[-1]
        in_flight = Cat(stage.valid for stage in stages[1:]).any()
        with m.If(self.cursor_w.en):
            m.d.sync += self.cursor.eq(self.cursor_w.value)
        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), at.eq(self.cursor), row.eq(0),
                                 addr.eq(self.cmd.payload.dst.base), wait.eq(StepKeys.LATENCY)]
                    m.next = "KEY"
            with m.State("KEY"):                     # the epoch's key into the Shuffler (training stream)
                with m.If(~cmd.f1):
                    m.next = "ROW"
                with m.Elif(wait == 0):
                    m.d.comb += shuffler.cmd.valid.eq(1)
                    with m.If(shuffler.cmd.ready):
                        m.next = "ROW"
            with m.State("ROW"):
                m.d.sync += [word.eq(0), remaining.eq(cmd.dst.cols)]
                with m.If(row == cmd.dst.rows):
                    with m.If(~in_flight):
                        m.d.comb += self.done.eq(1)
                        with m.If(~cmd.f0):
                            m.d.sync += self.cursor.eq(at)
                        m.next = "IDLE"
                with m.Elif(cmd.f1 & epoch_over):                    # the epoch is over: the next one's key
                    m.d.sync += [at.train.eq(0), at.epoch.eq(at.epoch + 1), wait.eq(StepKeys.LATENCY)]
                    m.next = "KEY"
                with m.Elif(cmd.f1):
                    m.d.comb += shuffler.i.valid.eq(1)
                    with m.If(shuffler.i.ready):
                        m.next = "PERMUTE"
                with m.Else():
                    m.d.sync += [sample.eq(base + at.eval), pad.eq(at.eval >= count),
                                 at.eval.eq(Mux(at.eval == EVAL_LAST, EVAL_LAST, at.eval + 1))]
                    m.next = "ADDRESS"
            with m.State("PERMUTE"):
                m.d.comb += shuffler.o.ready.eq(1)
                with m.If(shuffler.o.valid):
                    m.d.sync += [sample.eq(base + shuffler.o.payload), pad.eq(0), at.train.eq(at.train + 1)]
                    m.next = "ADDRESS"
            with m.State("ADDRESS"):
                m.d.sync += sample_word.eq(sample * cmd.dst.stride)
                m.next = "READ"
            with m.State("READ"):                    # one word of the row per cycle into DMEM's pipeline
                m.d.comb += [self.data_r.en.eq(~pad & ~cmd.f0), self.labels_r.en.eq(~pad & cmd.f0),
                             issued.valid.eq(1), issued.pad.eq(pad), issued.remaining.eq(remaining),
                             issued.addr.eq(addr + word)]
                m.d.sync += [word.eq(word + 1), remaining.eq(remaining - lanes)]
                with m.If(word == cmd.dst.stride - 1):
                    m.d.sync += [row.eq(row + 1), addr.eq(addr + cmd.dst.stride)]
                    m.next = "ROW"

        # the words as DMEM and LMEM return them, into TMEM
        m.d.sync += [self.tmem_w.en.eq(arriving.valid), self.tmem_w.addr.eq(arriving.addr)]
        with m.If(cmd.f0):
            m.d.sync += [self.tmem_w.data[0].eq(Mux(arriving.pad, NO_LABEL, self.labels_r.data))]
            m.d.sync += [self.tmem_w.data[lane].eq(0) for lane in range(1, lanes)]
        with m.Else():
            for lane in range(lanes):
                m.d.sync += self.tmem_w.data[lane].eq(
                    Mux(arriving.pad | (arriving.remaining <= lane), 0, self.data_r.data[lane]))
        return m
