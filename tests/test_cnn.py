"""The convolutional Fixup ResNet (golden_model/cnn.py): its description, the int8 model, the float32
reference, the programs generated from the description (golden_model/cnn_program.py) on the golden
machine, and the conv layer functions (golden_model/conv.py)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from golden_model.arithmetic import Arithmetic
from golden_model.cnn import FloatResCNN, ResCNN, ResNetSpec, fixup_float_init, input_rows, padded_weights
from golden_model.cnn_program import CnnProgram
from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.machine import Machine
from golden_model.network import weight_exponent
from golden_model.program import ProgramTrainer
from golden_model.quant import direct_quantize
from golden_model.train import FloatTarget, GoldenTarget, run_training

CFG = get_config("default")
SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))
SPECS = {
    "default": ResNetSpec(),
    "three stages, global pooling": ResNetSpec(stem=8, stages=((8, 1, 1), (16, 2, 2), (16, 1, 2)), head_pool=2),
    "no head pooling": ResNetSpec(stages=((8, 1, 1), (16, 1, 2)), head_pool=1),
    "1-D signal": ResNetSpec(height=1, width=16, in_channels=2, stem=4, stages=((4, 1, 1), (8, 1, 2)), classes=3),
}


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def test_default_description_is_a_resnet():
    """A stem conv, three residual blocks of two 3x3 convs, a stride-2 stage with a projection, and the
    head: 2x2 average pooling of the last 4x4 map, then a 2x2 convolution without padding over the pooled
    map, one output pixel per image."""
    spec = ResNetSpec()
    assert [layer.kernel for layer in spec.convs] == [(3, 3)] * 5 + [(1, 1), (3, 3), (3, 3), (2, 2)]
    head = spec.head_layer.geometry(16)
    assert (head.height, head.pad_h, head.pad_w, head.out_rows) == (2, 0, 0, 16)
    assert spec.head_pool_geometry(16).kh == 2 and spec.final_size == (4, 4)
    assert len(spec.blocks) == 3 and spec.blocks[0].proj is None and spec.blocks[2].proj is None
    assert spec.blocks[1].conv1.stride == 2 and spec.blocks[1].proj.stride == 2
    assert spec.param_names == ["stem", "s1b1.conv1", "s1b1.conv2", "s1b1.scale", "s1b1.bias", "s2b1.conv1",
                                "s2b1.conv2", "s2b1.scale", "s2b1.bias", "s2b1.proj", "s2b2.conv1", "s2b2.conv2",
                                "s2b2.scale", "s2b2.bias", "fc"]
    one_d = SPECS["1-D signal"]
    assert {layer.kernel for layer in one_d.convs} == {(1, 3), (1, 1), (1, 4)} and one_d.final_size == (1, 8)
    assert one_d.pool_window == (1, 2)


@pytest.mark.parametrize("fields, message", [
    (dict(stages=()), "at least one stage"),
    (dict(stages=((8, 1, 3),)), "stride 1 or 2"),
    (dict(stem=0), "positive"),
    (dict(head_pool=3), "head_pool 3 must tile the last 4x4 map"),
    (dict(head_pool=0), "head_pool 0 must tile"),
])
def test_bad_descriptions_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ResNetSpec(**fields)


def test_a_network_too_large_for_the_configuration_names_the_limit():
    small = ResCNN(CFG.replace(acc_elements=6144), 0, 2)          # 768 words: batches of at most 12 images
    assert small.batch_limit == 12
    with pytest.raises(ValueError, match=r"stem needs 1024 accumulator words at batch 16.*acc_elements >= 8192"):
        small.forward(input_rows(np.zeros((16, 64), dtype=np.int64), small.spec, small.cfg))
    with pytest.raises(ValueError, match=r"stem needs 4096 pixel rows.*max_dim >= 4096"):
        CnnProgram(CFG, ResNetSpec(height=16, width=16), 16)         # 16 images x 16 x 16 pixels
    with pytest.raises(ValueError, match=r"stem needs 4096 pixel rows .* at batch 1.*max_dim >= 4096"):
        ResCNN(CFG, 0, 2, ResNetSpec(height=64, width=64))          # not even one image
    with pytest.raises(ValueError, match="power-of-two area"):
        ResNetSpec(height=6, width=6, head_pool=3)
    ResNetSpec(height=6, width=6, head_pool=1).check(CFG, 1)     # without pooling the head takes any map


def test_int_and_float_models_share_the_fixup_init():
    spec = ResNetSpec()
    imodel, fmodel = ResCNN(CFG, 7, 2), FloatResCNN(7, 2)
    init = fixup_float_init(spec, 7)
    assert not init["s1b1.conv2"].any() and not init["fc"].any() and init["s1b1.scale"][0] == 1
    for layer in spec.convs:
        stored = imodel.params[layer.name]
        assert stored.exp == weight_exponent(layer.fan_in)
        padded = -(-layer.in_channels // 8) * 8                  # each tap's channels in whole 8-lane words
        assert stored.q.shape == (layer.out_channels, layer.kernel[0] * layer.kernel[1] * padded)
        np.testing.assert_array_equal(stored.q, direct_quantize(padded_weights(init[layer.name], 8), stored.exp, CFG).q)
        assert fmodel.params[layer.name].shape == (layer.out_channels, layer.fan_in)
    # the stem's input has 1 channel: 7 of the 8 weights of every tap are the zero padding
    assert not imodel.params["stem"].q.reshape(8, 9, 8)[:, :, 1:].any()


def test_float_gradients_match_finite_differences(digits):
    rng = np.random.default_rng(SEED)
    model = FloatResCNN(3, 2)
    model.params = {k: v.astype(np.float64) for k, v in model.params.items()}
    for name in model.params:          # leave the zero init so every path carries gradient; biases off zero so
        if name.endswith("conv2") or name == "fc":               # no ReLU input sits exactly on its kink
            model.params[name] = rng.normal(0.0, 0.3, size=model.params[name].shape)
        elif name.endswith("bias"):
            model.params[name] = np.array([rng.uniform(0.02, 0.08)])
    model.params["s1b1.scale"] = np.array([0.8])
    x = model.input(digits.train_x[:3]).astype(np.float64) + rng.normal(0.0, 0.01, size=(3 * 64, 1))
    labels = digits.train_y[:3]
    _, grads = model.loss_and_grads(x, labels)
    eps = 1e-6

    def relu_pattern():
        return {k: v > 0 for k, v in model.forward(x).items() if k.endswith((".z", ".out")) or k == "a0"}

    base, probed = relu_pattern(), 0
    for name, value in model.params.items():
        assert grads[name].shape == value.shape
        flat = value.reshape(-1)
        for index in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            saved = flat[index]
            flat[index] = saved + eps
            plus, plus_pattern = model.loss_and_grads(x, labels)[0], relu_pattern()
            flat[index] = saved - eps
            minus, minus_pattern = model.loss_and_grads(x, labels)[0], relu_pattern()
            flat[index] = saved
            if any((plus_pattern[k] != base[k]).any() or (minus_pattern[k] != base[k]).any() for k in base):
                print(f"seed {SEED}: {name}[{index}] moves a ReLU across its kink; not a derivative there")
                continue
            probed += 1
            numeric = (plus - minus) / (2 * eps)
            assert abs(numeric - grads[name].reshape(-1)[index]) <= 1e-6 + 1e-5 * abs(numeric), (SEED, name, index)
    assert probed >= 0.9 * sum(min(4, v.size) for v in model.params.values()), f"seed {SEED}: too few probes"


def signal_batch(spec: ResNetSpec, batch: int, rng) -> tuple:
    pixels = rng.integers(0, 17, size=(batch, spec.in_channels * spec.height * spec.width))
    return input_rows(pixels, spec, CFG), rng.integers(0, spec.classes, size=batch)


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("loss", ["float", "int"])
def test_programs_on_the_machine_train_like_the_model(name, loss):
    """The generated programs, run on the golden machine by the host flow, equal ResCNN.train_step bit
    for bit over steps of different batch sizes (programs regenerated), for several descriptions; with
    the integer loss the device's LOSS makes the error."""
    spec = SPECS[name]
    rng = np.random.default_rng(SEED)
    arithmetic = Arithmetic(loss=loss)
    model = ResCNN(CFG, 11, 2, spec, arithmetic=arithmetic)
    trainer = ProgramTrainer(Machine(CFG), ResCNN(CFG, 11, 2, spec, arithmetic=arithmetic), 4)
    for batch in (4, 4, 3, 1):
        x, labels = signal_batch(spec, batch, rng)
        assert trainer.train_step(x, labels) == model.train_step(x, labels)
        np.testing.assert_array_equal(trainer.last_logits, model.last_logits)
    got = trainer.params()
    for param, want in model.params.items():
        np.testing.assert_array_equal(got[param].q, want.q, err_msg=f"{param} (EOQ_SEED={SEED})")
        assert got[param].exp == want.exp
    x, _ = signal_batch(spec, 5, rng)
    np.testing.assert_array_equal(trainer.predict(x), model.predict(x))


def test_padding_weights_stay_zero_and_trained_weights_move(digits):
    model = ResCNN(CFG, 5, 2)
    x = input_rows(digits.train_x[:16], model.spec, CFG)
    for _ in range(3):
        model.train_step(x, digits.train_y[:16])
    assert not model.params["stem"].q.reshape(8, 9, 8)[:, :, 1:].any()
    assert model.params["s1b1.conv2"].q.any() and model.params["fc"].q.any()


def test_lifetime_allocation_reuses_words_and_keeps_live_tensors_apart():
    program = CnnProgram(CFG, ResNetSpec(), 16)
    separate = CnnProgram(CFG, ResNetSpec(), 4, reuse=False)
    def words(place):
        return place.rows * -(-place.cols // CFG.lanes)

    sizes = {name: words(p) for name, p in program.places.items()}
    assert program.words_used < sum(sizes.values())                # words are reused ...
    spans = {name: (p.base, p.base + words(p)) for name, p in separate.places.items()}
    ordered = sorted(spans.values())
    assert all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:]))  # ... and without reuse nothing overlaps
    for name in ("x", "a0", "s1b1.out", "stem"):                      # what the backward pass reads survives
        lo, hi = program.places[name].base, program.places[name].base + sizes[name]
        for other, place in program.places.items():
            if other != name and other in ("s1b1.z", "s2b1.z", "a0", "x", "stem", "s1b1.out"):
                assert place.base >= hi or place.base + sizes[other] <= lo, (name, other)
    assert len(program.forward_program()) == 39 and program.forward_program()[-1].op.name == "HALT"


def test_int_and_float_cnn_train(digits):
    """One epoch lifts both from chance (10%) past 50% (the zero-initialized Fixup branches start slowly)."""
    for target in (GoldenTarget(CFG, 0, 3, arch="cnn"), FloatTarget(0, 3, arch="cnn")):
        history, _ = run_training(target, epochs=1, batch=16, seed=0, data=digits, progress=False, log=None)
        assert history[-1].test_accuracy >= 0.5, (type(target.model).__name__, history)
