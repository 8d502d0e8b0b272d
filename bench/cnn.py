"""Bench section ``cnn``: the convolutional ResNet's training step on the simulated core.

Runs training steps of golden_model.cnn.ResCNN (the default description, batch
max_batch) on the Verilator-simulated core (bench/core.py's harness) and
reports cycles per step by phase and opcode and the MAC utilization, as the
``core`` section does for the MLP; and, per convolution, the TMEM words its
input, weights and output take against the words an im2col copy of its input
would take: the core gathers the taps in its operand feeders and stores no
copy, no flipped kernel and no transposed weights.
"""

from __future__ import annotations

from golden_model.cnn import ResNetSpec
from golden_model.cnn_program import CnnProgram
from golden_model.config import get_config
from golden_model.conv import padded_channels

from . import core


def tensor_words(config: str = "default") -> dict:
    """Per convolution: the TMEM words of its input, weights and output, and of an im2col copy."""
    cfg = get_config(config)
    spec = ResNetSpec()
    program = CnnProgram(cfg, spec, cfg.max_batch)

    def words(rows, cols):
        return rows * -(-cols // cfg.lanes)

    layers = {}
    for layer in spec.convs:
        g = layer.geometry(cfg.max_batch)
        weights = program.places[layer.name]
        layers[layer.name] = {
            "input_words": words(g.in_rows, layer.in_channels),
            "weight_words": words(weights.rows, weights.cols),
            "output_words": words(g.out_rows, layer.out_channels),
            "im2col_copy_words": words(g.out_rows, g.taps * padded_channels(layer.in_channels, cfg.lanes)),
        }
    return {"layers": layers, "tmem_words_used": program.words_used, "tmem_words": cfg.tmem_words,
            "tensors": len(program.places)}


def run(quick: bool = False, config: str = "default") -> dict:
    result = core.summarize(core.simulate(config, "cnn", 1 if quick else 2))
    result["tmem"] = tensor_words(config)
    return result
