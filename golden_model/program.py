"""The networks' training steps as core programs, and the host flow that runs them.

:class:`MlpLayout` places every tensor of network.ResMLP in the tensor table
and TMEM; :func:`forward_program` and :func:`backward_program` spell out its
step in golden_model.isa instructions (golden_model/cnn_program.py generates
the ResNet's from its description).  :class:`ProgramTrainer` drives any
device with the host flow (write x, run forward, read logits, host loss,
write error, run backward) for either network.  With a
golden_model.machine.Machine as device it reproduces the network's
train_step bit for bit (tests/test_machine.py, tests/test_cnn.py).
"""

from __future__ import annotations

import numpy as np

from . import isa
from .config import CoreConfig
from .cnn_program import CnnProgram
from .inference import freeze, inference_program
from .loss import check_labels
from .machine import TensorPlace, words_per_row
from .network import PARAM_IDS, ResMLP
from .prng import tensor_key, tensor_mix, update_key
from .quant import QTensor

PARAMS = ("fc1", "fc2", "fc3", "scale", "bias", "fc_out")
ACTIVATIONS = ("x", "a1", "z", "r", "sm", "s", "a2", "y")
ERRORS = ("e_y", "e_join", "e_r", "e_z", "e_branch", "e_a1")
SLOTS = {name: slot for slot, name in enumerate(PARAMS + ACTIVATIONS + ERRORS)}
#: the slot of the labels (B, 1) a program with the device's loss reads (after every other tensor)
LABELS_SLOT = len(SLOTS)


class MlpLayout:
    """Tensor table and TMEM placement of the residual MLP for one batch size."""

    def __init__(self, cfg: CoreConfig, batch: int, sizes: dict[str, tuple[int, int]], device_loss: bool = False):
        if not 1 <= batch <= cfg.max_batch:
            raise ValueError(f"batch {batch} outside [1, {cfg.max_batch}] of configuration {cfg.name}")
        hidden, inputs = sizes["fc1"]
        classes = sizes["fc_out"][0]
        shapes = {"fc1": sizes["fc1"], "fc2": sizes["fc2"], "fc3": sizes["fc3"], "fc_out": sizes["fc_out"],
                  "scale": (1, 1), "bias": (1, 1), "x": (batch, inputs), "y": (batch, classes),
                  "e_y": (batch, classes)}
        for name in ACTIVATIONS + ERRORS:
            shapes.setdefault(name, (batch, hidden))
        slots = dict(SLOTS)
        if device_loss:
            shapes["labels"], slots["labels"] = (batch, 1), LABELS_SLOT
        self.cfg, self.batch, self.shapes = cfg, batch, shapes
        self.places: dict[str, TensorPlace] = {}
        base = 0
        for name, slot in slots.items():
            rows, cols = shapes[name]
            self.places[name] = TensorPlace(slot, base, rows, cols)
            base += rows * words_per_row(cols, cfg.lanes)
        if base > cfg.tmem_words:
            raise ValueError(f"the network needs {base} TMEM words at batch {batch}; "
                             f"configuration {cfg.name} has {cfg.tmem_words}")
        if len(slots) > cfg.tensor_slots:
            raise ValueError(f"the network needs {len(slots)} tensor slots; configuration has {cfg.tensor_slots}")
        self.words_used = base

    def slot(self, name: str) -> int:
        return self.places[name].slot


def forward_program(cfg: CoreConfig) -> list[isa.Instruction]:
    """Forward pass: x -> logits y (the host reads y when it halts)."""
    s = SLOTS
    return [
        isa.matmul(s["x"], s["fc1"]), isa.quant(s["a1"], relu=True),
        isa.matmul(s["a1"], s["fc2"]), isa.quant(s["z"], relu=True),
        isa.matmul(s["z"], s["fc3"]), isa.quant(s["r"]),
        isa.scale(s["r"], s["scale"]), isa.quant(s["sm"]),
        isa.add(s["sm"], s["bias"]), isa.quant(s["s"]),
        isa.add(s["a1"], s["s"]), isa.quant(s["a2"], relu=True),
        isa.matmul(s["a2"], s["fc_out"]), isa.quant(s["y"]),
        isa.halt(),
    ]


def step_keys(stream_seed: int, step: int) -> dict[str, tuple[int, int]]:
    """(gradient key, update key) per parameter, as ResMLP.key computes them.

    Only the gradient key travels in the program (QUPDATE's key); the update
    key is prng.update_key of it, derived by the core.
    """
    keys = {name: tensor_key(stream_seed, step, PARAM_IDS[name]) for name in PARAMS}
    return {name: (key, update_key(key)) for name, key in keys.items()}


def backward_program(cfg: CoreConfig, keys: dict[str, tuple[int, int]], lr_shift: int,
                     device_loss: bool = False, step_key: bool = False) -> list[isa.Instruction]:
    """Backward pass and in-place updates, from the host-written output error e_y (``device_loss``: from
    the LOSS of the logits and the host-written labels, quantized into e_y).  QUPDATE carries each
    parameter's gradient key ``keys[name][0]``; with ``step_key`` that is the parameter's prng.tensor_mix
    and the core derives the key from its seed and step (the program then serves every step).

    Per layer: the error product with the old weights, its QUANT (masked by
    the ReLU derivative where one follows), the gradient product, then QUPDATE
    (gradient SQ and weight update in one pass over ACC and W).  The order
    lets the core run each QUANT beside the next gradient product and each
    QUPDATE beside the next product (docs/architecture.md).
    """
    s = SLOTS
    grad_sr = cfg.grad_rounding == "stochastic"
    upd_sr = cfg.update_rounding == "stochastic"

    def qupdate(name: str) -> isa.Instruction:
        return isa.qupdate(s[name], lr_shift, stochastic_grad=grad_sr, stochastic_update=upd_sr, key=keys[name][0],
                           step_key=step_key)

    def gradient(e: str, x: str) -> isa.Instruction:
        return isa.matmul(s[e], s[x], transpose_a=True, transpose_b=True)

    def error(e: str, w: str) -> isa.Instruction:
        return isa.matmul(s[e], s[w], transpose_b=True)

    loss = [isa.loss(s["y"], LABELS_SLOT), isa.quant(s["e_y"])] if device_loss else []
    return loss + [
        # output layer; e_join = relu'(a2) * SQ(e_y . W_out)
        error("e_y", "fc_out"), isa.quant(s["e_join"], mask=s["a2"]),
        gradient("e_y", "a2"), qupdate("fc_out"),
        # Fixup scalar bias and multiplier
        isa.total(s["e_join"]), qupdate("bias"),
        isa.scale(s["e_join"], s["scale"]), isa.quant(s["e_r"]),
        isa.dot(s["e_join"], s["r"]), qupdate("scale"),
        # branch end fc3; e_z = relu'(z) * SQ(e_r . W3)
        error("e_r", "fc3"), isa.quant(s["e_z"], mask=s["z"]),
        gradient("e_r", "z"), qupdate("fc3"),
        # branch start fc2, then the residual join: e_a1 = relu'(a1) * SQ(e_join + e_branch)
        error("e_z", "fc2"), isa.quant(s["e_branch"]),
        isa.add(s["e_join"], s["e_branch"]), isa.quant(s["e_a1"], mask=s["a1"]),
        # gradients of fc2 and fc1: each QUPDATE runs beside the next product
        gradient("e_z", "a1"), qupdate("fc2"),
        gradient("e_a1", "x"), qupdate("fc1"),
        isa.halt(),
    ]


def encode(program: list[isa.Instruction]) -> list[int]:
    return [inst.encode() for inst in program]


class MlpProgram:
    """The residual MLP's layout and programs behind the interface of cnn_program.CnnProgram."""

    params = PARAMS

    def __init__(self, cfg: CoreConfig, sizes: dict[str, tuple[int, int]], batch: int, device_loss: bool = False):
        """Every tensor has a slot of its own, so the layout serves inference too."""
        self.cfg, self.batch, self.device_loss = cfg, batch, device_loss
        self.layout = MlpLayout(cfg, batch, sizes, device_loss)
        self.places, self.shapes = self.layout.places, self.layout.shapes
        self.words_used = self.layout.words_used

    def slot(self, name: str) -> int:
        return self.layout.slot(name)

    def forward_program(self) -> list[isa.Instruction]:
        return forward_program(self.cfg)

    def backward_program(self, keys: dict[str, int], lr_shift: int, step_key: bool = False) -> list[isa.Instruction]:
        return backward_program(self.cfg, {name: (key, update_key(key)) for name, key in keys.items()}, lr_shift,
                                self.device_loss, step_key)

    def mixes(self) -> dict[str, int]:
        """Every parameter's prng.tensor_mix: the keys of a step-key backward program."""
        return {name: tensor_mix(PARAM_IDS[name]) for name in PARAMS}


def network_program(model, batch: int, *, reuse: bool = True, inference: bool = False):
    """The layout and programs of ``model`` (a ResMLP or a cnn.ResCNN) at ``batch``; ``reuse=False``
    keeps every CNN tensor in words of its own (the MLP's layout never reuses words); ``inference``
    gives the forward program's layout with a slot per tensor (golden_model/inference.py).  A model
    whose arithmetic has the integer loss gets programs with the device's LOSS."""
    device_loss = model.arithmetic.loss == "int"
    if isinstance(model, ResMLP):
        return MlpProgram(model.cfg, model.sizes, batch, device_loss)
    return CnnProgram(model.cfg, model.spec, batch, reuse=reuse, inference=inference, device_loss=device_loss)


def largest_batch(model, *, most: int | None = None, reuse: bool = True) -> int:
    """The largest batch, up to ``most`` (default the model's batch_limit), whose training layout (words
    shared by lifetime unless ``reuse`` is False) and inference layout fit TMEM (the chunk inference runs
    in on a device; a configuration with fewer, wider words holds fewer images)."""
    for batch in range(min(most or model.batch_limit, model.batch_limit), 0, -1):
        try:
            network_program(model, batch, reuse=reuse)
            network_program(model, batch, inference=True)
        except ValueError:
            continue
        return batch
    raise ValueError(f"{type(model).__name__} does not fit configuration {model.cfg.name} even at batch 1")


class ProgramTrainer:
    """Host flow of a training step over a device exposing the Machine API, for either network.

    The device needs: set_tensor, write_tensor, read_tensor, load_program, set_keys, run.
    Programs and the tensor table follow the batch size (a CNN's programs carry
    the batch in their geometry, so they are reloaded when it changes); the
    backward program has step keys (isa f4), so a step writes only the seed and
    step for its stochastic rounding, and the program is loaded again only when
    the batch or the learning rate changes.
    """

    def __init__(self, device, model, batch: int, *, reuse: bool = True):
        self.device, self.cfg, self.model, self.reuse = device, model.cfg, model, reuse
        self.stream_seed = model.stream_seed
        self.lr_shift = model.lr_shift
        self.step = model.step
        self.batch = None
        self.reload = False
        self.backward_lr = None
        self.configure(batch)
        write_params(self.device, self.program, model)

    def configure(self, batch: int) -> None:
        """Write the tensor table and the forward program for a batch size (weights keep their words)."""
        if batch == self.batch and not self.reload:
            return
        program = network_program(self.model, batch, reuse=self.reuse)
        exps = self.param_exponents() if self.batch else {}
        for name, place in program.places.items():
            self.device.set_tensor(place.slot, place.base, place.rows, place.cols, exps.get(name, 0))
        forward = encode(program.forward_program())
        self.device.load_program(forward, 0)
        self.backward_pc = len(forward)
        self.program, self.batch, self.reload, self.backward_lr = program, batch, False, None

    def param_exponents(self) -> dict[str, int]:
        """The parameters' exponents in the device's table."""
        # A device may offer read_exponent (only the table entry: no TMEM words over the link).
        read_exp = getattr(self.device, "read_exponent", None) or (lambda slot: self.device.read_tensor(slot).exp)
        return {name: read_exp(self.program.slot(name)) for name in self.program.params}

    def forward(self, x: QTensor) -> QTensor:
        self.configure(self.model.batch_of(x))
        self.device.write_tensor(self.program.slot("x"), x)
        self.device.run(0)
        return self.device.read_tensor(self.program.slot("y"))

    def train_step(self, x: QTensor, labels) -> float:
        """One step: forward, then the output error (the host's, or with the integer loss the device's own
        LOSS from the labels written beside x), then backward."""
        device_loss = "labels" in self.program.places
        if device_loss:
            batch = self.model.batch_of(x)
            labels = check_labels(labels, batch, self.program.shapes["y"][1])
            self.configure(batch)
            self.device.write_tensor(self.program.slot("labels"), QTensor(labels.reshape(-1, 1).astype(np.int8), 0))
        logits = self.forward(x)
        self.last_logits = logits.q       # the step's logits (running train accuracy)
        error, loss = self.model.arithmetic.output_error(logits, labels, self.cfg)
        if not device_loss:
            self.device.write_tensor(self.program.slot("e_y"), error)
        if self.backward_lr != self.lr_shift:
            program = self.program.backward_program(self.program.mixes(), self.lr_shift, step_key=True)
            self.device.load_program(encode(program), self.backward_pc)
            self.backward_lr = self.lr_shift
        self.device.set_keys(self.stream_seed, self.step)
        self.device.run(self.backward_pc)
        self.step += 1
        return loss

    def predict(self, x: QTensor, calibrated: dict[str, int] | None = None) -> np.ndarray:
        """Class predictions (the argmax of :meth:`logits`)."""
        return np.argmax(self.logits(x, calibrated), axis=1)

    def logits(self, x: QTensor, calibrated: dict[str, int] | None = None) -> np.ndarray:
        """Logit mantissas in chunks of :func:`largest_batch`: with ``calibrated`` exponents
        (inference.calibrate) by frozen-exponent inference, else by the training forward pass."""
        rows = x.q.shape[0] // self.model.batch_of(x) if x.q.shape[0] else 1
        step = largest_batch(self.model) * rows
        chunks = [QTensor(x.q[i:i + step], x.exp) for i in range(0, x.q.shape[0], step)]
        if calibrated is None:
            logits = [self.forward(chunk).q for chunk in chunks]
        else:
            logits = [self.infer(chunk, calibrated).q for chunk in chunks]
        return np.concatenate(logits)

    def infer(self, x: QTensor, calibrated: dict[str, int]) -> QTensor:
        """Logits of one batch by frozen-exponent inference (golden_model/inference.py).

        The inference layout keeps the parameters in their training words and
        slots; the other tensors get the frozen exponents.  The training
        tables and forward program are written again before the next step.
        """
        batch = self.model.batch_of(x)
        self.configure(batch)
        program = network_program(self.model, batch, inference=True)
        moved = [name for name in program.params if program.places[name] != self.program.places[name]]
        if moved:
            raise RuntimeError(f"the inference layout moves parameters {moved}: they must keep their words")
        table = self.param_exponents()
        table["x"] = x.exp
        frozen = freeze(program, calibrated, table)
        for name, place in program.places.items():
            if name not in program.params:
                self.device.set_tensor(place.slot, place.base, place.rows, place.cols, frozen.get(name, 0))
        self.device.write_tensor(program.slot("x"), x)
        self.device.load_program(encode(inference_program(program)), 0)
        self.reload = True
        self.device.run(0)
        return self.device.read_tensor(program.slot("y"))

    def params(self) -> dict[str, QTensor]:
        """Parameters read back, in the model's shapes (scalars as (1,))."""
        return read_params(self.device, self.program, self.model)


def write_params(device, program, model) -> None:
    """The model's parameters into their slots, in the layout's shapes."""
    for name in program.params:
        param = model.params[name]
        device.write_tensor(program.slot(name), QTensor(param.q.reshape(program.shapes[name]), param.exp))


def read_params(device, program, model) -> dict[str, QTensor]:
    """The parameters read back from their slots, in the model's shapes (scalars as (1,))."""
    params = {}
    for name in program.params:
        t = device.read_tensor(program.slot(name))
        params[name] = QTensor(t.q.reshape(model.params[name].q.shape), t.exp)
    return params
