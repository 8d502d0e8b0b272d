"""LOAD, the data cursor, LOOP and the autonomous trainer on the golden machine.

References: golden_model.shuffle.epoch_order for the training stream (each epoch's order, the
epochs one after the other), plain indexing for the evaluation stream, and network.ResMLP's
train_step on the same batches for a whole autonomous run.
"""

import numpy as np
import pytest

from golden_model import isa
from golden_model.arithmetic import Arithmetic
from golden_model.autonomous import AutonomousTrainer, plan_sets, set_words
from golden_model.config import CONFIGS
from golden_model.data import load_digits_split
from golden_model.int_loss import softmax_grid
from golden_model.machine import Cursor, Machine, MachineError, NO_LABEL
from golden_model.network import ResMLP, quantize_input
from golden_model.quant import QTensor
from golden_model.shuffle import epoch_order
from host.device import GoldenDevice

CFG = CONFIGS["small4x4"]
INT_LOSS = Arithmetic(loss="int")


def _machine(rng, cols=10, rows=16):
    """A machine with random data and labels, features in slot 0 (rows x cols), labels in slot 1."""
    m = Machine(CFG)
    m.write_data(0, rng.integers(-128, 128, (CFG.data_words, CFG.lanes)))
    m.write_labels(0, rng.integers(0, 10, CFG.data_samples))
    m.set_tensor(0, 0, rows, cols, -7)
    m.set_tensor(1, 500, rows, 1, 0)
    m.set_keys(int(rng.integers(2**32)), int(rng.integers(2**32)))
    return m


def _sample_rows(m, samples, cols):
    stride = -(-cols // CFG.lanes)
    return np.array([m.data[s * stride:(s + 1) * stride].reshape(-1)[:cols] for s in samples])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_training_stream_is_the_epochs_orders(seed):
    rng = np.random.default_rng(seed)
    print("seed", seed)
    base, count, cols = int(rng.integers(0, 100)), int(rng.integers(1, 40)), int(rng.integers(1, 20))
    m = _machine(rng, cols)
    m.load_program(encode([isa.load(1, base, count, labels=True, shuffle=True),
                           isa.load(0, base, count, shuffle=True), isa.halt()]))
    stream = np.concatenate([base + epoch_order(count, m.seed, e) for e in range(100)])
    for step in range(5):
        m.run()
        want = stream[step * 16:(step + 1) * 16]
        assert np.array_equal(m.read_tensor(0).q, _sample_rows(m, want, cols))
        assert np.array_equal(m.read_tensor(1).q[:, 0], m.labels[want])
    done = 5 * 16
    epoch, train = divmod(done, count)
    if train == 0:                      # the wrap waits for the next row
        epoch, train = epoch - 1, count
    assert m.cursor == Cursor(epoch, train, 0)


def test_evaluation_stream_pads_past_the_end():
    rng = np.random.default_rng(4)
    m = _machine(rng, cols=7)
    m.load_program(encode([isa.load(1, 30, 20, labels=True), isa.load(0, 30, 20), isa.halt()]))
    m.loop(0, 2, advance=False)
    labels = m.read_tensor(1).q[:, 0]
    assert np.array_equal(labels[:4], m.labels[46:50])
    assert np.all(labels[4:] == NO_LABEL)
    assert np.array_equal(m.read_tensor(0).q[:4], _sample_rows(m, range(46, 50), 7))
    assert not m.read_tensor(0).q[4:].any()
    assert m.cursor == Cursor(0, 0, 32)


def test_label_load_leaves_the_cursor_and_loop_counts_steps():
    rng = np.random.default_rng(5)
    m = _machine(rng)
    m.set_cursor(7, 3, 9)
    step = m.step
    m.load_program(encode([isa.load(1, 0, 50, labels=True, shuffle=True), isa.load(1, 0, 50, labels=True),
                           isa.halt()]))
    m.loop(0, 3, advance=True)
    assert m.cursor == Cursor(7, 3, 9) and m.step == (step + 3) % 2**32 and m.passes == 0


SMALL_DATA = CFG.replace(data_bytes=CFG.lanes * 1024, data_samples=1024)


@pytest.mark.parametrize("key, slot, status", [
    (isa.data_set(0, 1) & 0xFFFF, 0, isa.Status.DATA_RANGE),                  # no samples
    (isa.data_set(1024 - 3, 4), 0, isa.Status.DATA_RANGE),                    # past the label memory
    (isa.data_set(0, 5), 2, isa.Status.DATA_RANGE),                           # past the data memory
    (isa.data_set(0, 4), 2, isa.Status.OK),
])
def test_load_refuses_a_set_beyond_the_memories(key, slot, status):
    m = _machine(np.random.default_rng(6))
    m.set_tensor(2, 0, 1, CFG.max_dim, 0)           # rows of max_dim features: 256 words, 4 samples fit
    m.cfg = SMALL_DATA
    m.load_program(encode([isa.Instruction(isa.Op.LOAD, dst=slot, key=key), isa.halt()]))
    if status == isa.Status.OK:
        m.loop(0, 4, advance=True)
        assert m.passes == 0
        return
    with pytest.raises(MachineError) as error:
        m.loop(0, 4, advance=True)
    assert error.value.status == status and m.passes == 4


def test_label_load_needs_one_column():
    m = _machine(np.random.default_rng(7))
    m.load_program(encode([isa.load(0, 0, 10, labels=True), isa.halt()]))
    with pytest.raises(MachineError) as error:
        m.run()
    assert error.value.status == isa.Status.SHAPE_MISMATCH


def test_plan_sets_names_the_limit():
    with pytest.raises(ValueError, match="data_samples"):
        plan_sets(CFG, 64, CFG.data_samples, 1)
    with pytest.raises(ValueError, match="data words"):
        plan_sets(CFG.replace(data_bytes=64 * 100, data_samples=1000), 64, 90, 20)
    assert plan_sets(CFG, 64, 1437, 360)[1].base == 1437


def encode(program):
    return [inst.encode() for inst in program]


@pytest.mark.parametrize("batch", [16, 1])
def test_autonomous_run_equals_train_steps(batch):
    """Two short LOOPs (across an epoch's end) and an evaluation on the golden machine equal ResMLP's
    train_step on the stream's batches and its forward pass on the padded test batches."""
    data = load_digits_split()
    train_x, train_y = quantize_input(data.train_x[:37], CFG), data.train_y[:37]
    test_x, test_y = quantize_input(data.test_x[:21], CFG), data.test_y[:21]
    model = ResMLP(CFG, 3, 6, arithmetic=INT_LOSS)
    reference = ResMLP(CFG, 3, 6, arithmetic=INT_LOSS)
    trainer = AutonomousTrainer(GoldenDevice(CFG), model, batch, train_x, train_y, test_x, test_y)
    steps = trainer.epoch_steps()
    assert steps == -(-37 // batch)
    trainer.train_epoch()
    trainer.train_epoch(3)
    stream = np.concatenate([epoch_order(37, model.stream_seed, e) for e in range(4)])
    for step in range(steps + 3):
        idx = stream[step * batch:(step + 1) * batch]
        reference.train_step(QTensor(train_x.q[idx], train_x.exp), train_y[idx])
    params = trainer.params()
    for name, want in reference.params.items():
        assert np.array_equal(params[name].q, want.q) and params[name].exp == want.exp, name
    counters = trainer.evaluate()
    correct = bits = 0
    for start in range(0, 21, batch):
        rows = np.zeros((batch, 64), dtype=np.int8)
        labels = np.full(batch, NO_LABEL)
        n = min(batch, 21 - start)
        rows[:n], labels[:n] = test_x.q[start:start + n], test_y[start:start + n]
        logits = reference.forward(QTensor(rows, test_x.exp))["y"]
        correct += int((np.argmax(logits.q, axis=1)[:n] == labels[:n]).sum())
        bits += int(softmax_grid(logits, labels, CFG)[1][:n].sum())
    assert (counters.samples, counters.correct, counters.loss_bits) == (21, correct, bits)
    progress = trainer.device.progress()
    assert (progress.step, progress.eval) == (steps + 3, -(-21 // batch) * batch)


def test_autonomous_trainer_refuses_the_float_loss_and_oversized_sets():
    data = load_digits_split()
    x = quantize_input(data.train_x[:20], CFG)
    with pytest.raises(ValueError, match="integer loss"):
        AutonomousTrainer(GoldenDevice(CFG), ResMLP(CFG, 0, 6), 16, x, data.train_y[:20], x, data.train_y[:20])
    small = CFG.replace(data_samples=30)
    with pytest.raises(ValueError, match="data_samples 30"):
        AutonomousTrainer(GoldenDevice(small), ResMLP(small, 0, 6, arithmetic=INT_LOSS), 16, x, data.train_y[:20],
                          x, data.train_y[:20])


def test_set_words_pads_rows():
    x = np.arange(1, 11, dtype=np.int8).reshape(2, 5)
    words = set_words(x, CFG)
    assert words.shape == (4, CFG.lanes)
    assert np.array_equal(words.reshape(2, -1)[:, :5], x) and not words.reshape(2, -1)[:, 5:].any()
