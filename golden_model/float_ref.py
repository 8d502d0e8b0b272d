"""float32 reference of the same network and training loop, without quantization.

Same Fixup initialization (network.fixup_float_init, same seed), same data
order, plain SGD with the same learning rate 2**-lr_shift, same mean
softmax cross-entropy.  Gradients are written out by hand (checked against
finite differences in tests/test_float_ref.py).
"""

from __future__ import annotations

import numpy as np

from .data import DIGITS_FORMAT, InputFormat
from .loss import check_labels, cross_entropy, softmax
from .network import fixup_float_init, mlp_sizes
from .ops import MacCounter


class FloatNetwork:
    """Plain SGD step and prediction shared by the float references; subclasses
    define ``forward`` and ``loss_and_grads`` and hold ``params`` and ``lr_shift``."""

    def train_step(self, x: np.ndarray, labels) -> float:
        loss, grads = self.loss_and_grads(x, labels)
        for name, grad in grads.items():
            lr = np.float32(2.0 ** -self.lr_shift)
            self.params[name] = (self.params[name] - lr * grad).astype(np.float32)
        return loss

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.forward(x)["y"], axis=1)


class FloatResMLP(FloatNetwork):
    def __init__(self, seed: int, lr_shift: int, sizes=None):
        self.sizes = sizes or mlp_sizes()
        self.lr_shift = lr_shift
        self.params = {k: v.astype(np.float32) for k, v in fixup_float_init(self.sizes, seed).items()}
        self.macs = MacCounter()

    @staticmethod
    def input(pixels: np.ndarray, fmt: InputFormat = DIGITS_FORMAT) -> np.ndarray:
        """Samples (B, features) as floats: the format's value pixels * scale (digits: pixels / 16)."""
        return (np.asarray(pixels) * fmt.scale).astype(np.float32)

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        p = self.params
        t = {"a0": x}
        t["a1"] = np.maximum(x @ p["fc1"].T, 0)
        t["z"] = np.maximum(t["a1"] @ p["fc2"].T, 0)
        t["r"] = t["z"] @ p["fc3"].T
        t["s"] = p["scale"][0] * t["r"] + p["bias"][0]
        t["a2"] = np.maximum(t["a1"] + t["s"], 0)
        t["y"] = t["a2"] @ p["fc_out"].T
        return t

    def loss_and_grads(self, x: np.ndarray, labels) -> tuple[float, dict[str, np.ndarray]]:
        p = self.params
        t = self.forward(x)
        self.last_logits = t["y"]         # the step's logits (running train accuracy)
        batch = x.shape[0]
        labels = check_labels(labels, batch, t["y"].shape[1])
        probs = softmax(t["y"].astype(np.float64))
        e_y = probs.copy()
        e_y[np.arange(batch), labels] -= 1.0
        e_y = (e_y / batch).astype(np.float32)
        g = {"fc_out": e_y.T @ t["a2"]}
        e_join = (e_y @ p["fc_out"]) * (t["a2"] > 0)
        g["bias"] = np.array([e_join.sum()], dtype=np.float32)
        g["scale"] = np.array([(e_join * t["r"]).sum()], dtype=np.float32)
        e_r = e_join * p["scale"][0]
        g["fc3"] = e_r.T @ t["z"]
        e_z = (e_r @ p["fc3"]) * (t["z"] > 0)
        g["fc2"] = e_z.T @ t["a1"]
        e_a1 = (e_join + e_z @ p["fc2"]) * (t["a1"] > 0)
        g["fc1"] = e_a1.T @ x
        return cross_entropy(probs, labels), g
