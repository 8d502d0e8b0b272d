"""The convolutional ResNet's training step as core programs, generated from its description.

:class:`CnnProgram` walks a :class:`~golden_model.cnn.ResNetSpec` and emits
the forward program (x -> logits y) and the backward program (output error
e_y -> every error and gradient, every parameter updated in place), in the
order of ``ResCNN.forward`` / ``ResCNN.backward``: each layer's error product
uses its old weights, so it comes before the layer's QUPDATE, and gradients
never reach TMEM.  Tensors are named; every tensor gets a slot, and TMEM is
allocated by lifetime over the forward-then-backward sequence (first fit), so
errors reuse the words of tensors no longer needed.  Change the channels, the
stages or the image size in the description and the programs follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import isa
from .cnn import ResNetSpec
from .config import CoreConfig
from .conv import padded_channels
from .machine import TensorPlace, words_per_row
from .prng import tensor_mix


@dataclass
class _Op:
    """An instruction with tensor names in place of slots (resolved by the layout)."""

    make: object
    names: dict[str, str]
    fields: dict = field(default_factory=dict)


class CnnProgram:
    """Slots, TMEM placement and the two programs of one ResNet at one batch size.

    ``inference=True``: the forward program only, every tensor in a slot of its
    own (a frozen-exponent QUANT reads its destination's exponent from the
    table, golden_model/inference.py), words still reused by lifetime.
    ``device_loss=True``: the backward program starts with LOSS of the logits
    and the host-written ``labels`` (B, 1) and its QUANT into e_y, instead of
    the host writing e_y.
    """

    def __init__(self, cfg: CoreConfig, spec: ResNetSpec, batch: int, *, reuse: bool = True,
                 inference: bool = False, device_loss: bool = False):
        if not 1 <= batch <= cfg.max_batch:
            raise ValueError(f"batch {batch} outside [1, {cfg.max_batch}] of configuration {cfg.name}")
        spec.check(cfg, batch)
        self.cfg, self.spec, self.batch, self.reuse, self.inference = cfg, spec, batch, reuse, inference
        self.device_loss = device_loss and not inference
        self.shapes: dict[str, tuple[int, int]] = {}
        self.params = spec.param_names
        self._param_shapes()
        self.forward_ops = self._forward()
        self.backward_ops = [] if inference else self._backward()
        self.places = self._allocate()
        self.words_used = max((p.base + p.rows * words_per_row(p.cols, cfg.lanes) for p in self.places.values()),
                              default=0)

    # ---- tensors ------------------------------------------------------------------------------
    def _param_shapes(self) -> None:
        lanes = self.cfg.lanes
        for layer in self.spec.convs:
            kh, kw = layer.kernel
            self.shapes[layer.name] = (layer.out_channels, kh * kw * padded_channels(layer.in_channels, lanes))
        for block in self.spec.blocks:
            self.shapes[f"{block.name}.scale"] = self.shapes[f"{block.name}.bias"] = (1, 1)

    def _image(self, name: str, layer, output: bool = True) -> str:
        g = layer.geometry(self.batch)
        self.shapes[name] = (g.out_rows if output else g.in_rows, layer.out_channels if output else layer.in_channels)
        return name

    def slot(self, name: str) -> int:
        return self.places[name].slot

    # ---- programs -----------------------------------------------------------------------------
    def _forward(self) -> list[_Op]:
        s, batch, code = self.spec, self.batch, []
        self._image("x", s.stem_layer, output=False)
        code += self._conv("x", "stem", s.stem_layer)
        code.append(_Op(isa.quant, {"dst": self._image("a0", s.stem_layer)}, {"relu": True}))
        a = "a0"
        for b in s.blocks:
            n = b.name
            code += self._conv(a, f"{n}.conv1", b.conv1)
            code.append(_Op(isa.quant, {"dst": self._image(f"{n}.z", b.conv1)}, {"relu": True}))
            code += self._conv(f"{n}.z", f"{n}.conv2", b.conv2)
            code.append(_Op(isa.quant, {"dst": self._image(f"{n}.r", b.conv2)}))
            code.append(_Op(isa.scale, {"a": f"{n}.r", "m": f"{n}.scale"}))
            code.append(_Op(isa.quant, {"dst": self._image(f"{n}.sm", b.conv2)}))
            code.append(_Op(isa.add, {"a": f"{n}.sm", "b": f"{n}.bias"}))
            code.append(_Op(isa.quant, {"dst": self._image(f"{n}.s", b.conv2)}))
            shortcut = a
            if b.proj:
                code += self._conv(a, f"{n}.proj", b.proj)
                code.append(_Op(isa.quant, {"dst": self._image(f"{n}.p", b.proj)}))
                shortcut = f"{n}.p"
            code.append(_Op(isa.add, {"a": shortcut, "b": f"{n}.s"}))
            code.append(_Op(isa.quant, {"dst": self._image(f"{n}.out", b.conv2)}, {"relu": True}))
            a = f"{n}.out"
        pool = s.head_pool_geometry(batch)
        if pool is not None:
            self.shapes["g"] = (s.head_layer.geometry(batch).in_rows, s.channels)
            code.append(_Op(isa.pool, {"a": a}, {"geometry": pool}))
            code.append(_Op(isa.quant, {"dst": "g"}))
        self.shapes["y"] = (batch, s.classes)
        code += self._conv("g" if pool else a, "fc", s.head_layer)
        code.append(_Op(isa.quant, {"dst": "y"}))
        return code

    def _conv(self, x: str, w: str, layer, mode: str = "forward", dst: str | None = None) -> list[_Op]:
        names = {"a": x, "b": w} if dst is None else {"a": x, "b": w, "dst": dst}
        return [_Op(isa.conv, names, {"geometry": layer.geometry(self.batch), "mode": mode})]

    def _update(self, name: str) -> _Op:
        return _Op(isa.qupdate, {"w": name}, {"param": name})

    def _backward(self) -> list[_Op]:
        s, batch, code = self.spec, self.batch, []
        self.shapes["e_y"] = (batch, s.classes)
        if self.device_loss:
            self.shapes["labels"] = (batch, 1)
            code += [_Op(isa.loss, {"logits": "y", "labels": "labels"}), _Op(isa.quant, {"dst": "e_y"})]
        last, out = s.blocks[-1], f"{s.blocks[-1].name}.out"
        pool = s.head_pool_geometry(batch)
        # the classifier's error product (old weights), then its gradient and update
        if pool is None:                          # the error lands on the last join: QUANT masks by its ReLU
            code += self._conv("e_y", "fc", s.head_layer, "error", dst=out)
            code.append(_Op(isa.quant, {"dst": self._image(f"{last.name}.e_join", last.conv2), "mask": out}))
            code += self._conv("e_y", out, s.head_layer, "gradient") + [self._update("fc")]
        else:                                     # through the pooling: UNPOOL, then the ReLU's MASK
            self.shapes["e_g"] = self.shapes["g"]
            code += self._conv("e_y", "fc", s.head_layer, "error", dst="g")
            code.append(_Op(isa.quant, {"dst": "e_g"}))
            code += self._conv("e_y", "g", s.head_layer, "gradient") + [self._update("fc")]
            unpooled = self._image(f"{last.name}.e_out", last.conv2)
            code.append(_Op(isa.unpool, {"dst": unpooled, "a": "e_g"}, {"geometry": pool}))
            join = self._image(f"{last.name}.e_join", last.conv2)
            code.append(_Op(isa.mask, {"dst": join, "a": unpooled, "b": out}))
        for index in range(len(s.blocks) - 1, -1, -1):
            b, n = s.blocks[index], s.blocks[index].name
            a = "a0" if index == 0 else f"{s.blocks[index - 1].name}.out"
            join = f"{n}.e_join"
            code += [_Op(isa.total, {"a": join}), self._update(f"{n}.bias"),
                     _Op(isa.scale, {"a": join, "m": f"{n}.scale"}),
                     _Op(isa.quant, {"dst": self._image(f"{n}.e_r", b.conv2)}),
                     _Op(isa.dot, {"a": join, "b": f"{n}.r"}), self._update(f"{n}.scale")]
            code += self._conv(f"{n}.e_r", f"{n}.conv2", b.conv2, "error", dst=f"{n}.z")
            code.append(_Op(isa.quant, {"dst": self._image(f"{n}.e_z", b.conv1), "mask": f"{n}.z"}))
            code += self._conv(f"{n}.e_r", f"{n}.z", b.conv2, "gradient") + [self._update(f"{n}.conv2")]
            code += self._conv(f"{n}.e_z", f"{n}.conv1", b.conv1, "error", dst=a)
            code.append(_Op(isa.quant, {"dst": self._image(f"{n}.e_branch", b.conv1, output=False)}))
            code += self._conv(f"{n}.e_z", a, b.conv1, "gradient") + [self._update(f"{n}.conv1")]
            shortcut = join
            if b.proj:
                code += self._conv(join, f"{n}.proj", b.proj, "error", dst=a)
                code.append(_Op(isa.quant, {"dst": self._image(f"{n}.e_short", b.proj, output=False)}))
                code += self._conv(join, a, b.proj, "gradient") + [self._update(f"{n}.proj")]
                shortcut = f"{n}.e_short"
            below = f"{s.blocks[index - 1].name}.e_join" if index else "e_a0"
            code.append(_Op(isa.add, {"a": shortcut, "b": f"{n}.e_branch"}))
            code.append(_Op(isa.quant, {"dst": self._image(below, b.conv1, output=False), "mask": a}))
        code += self._conv("e_a0", "x", s.stem_layer, "gradient") + [self._update("stem")]
        return code

    # ---- placement ----------------------------------------------------------------------------
    def _allocate(self) -> dict[str, TensorPlace]:
        """TMEM words by lifetime (first fit): parameters, the input (and with ``device_loss`` the labels)
        live throughout, e_y from the host's write on (or from its QUANT), everything else from its first
        to its last use (``reuse=False``: every tensor keeps its words, so all of a step can be read back
        after it).  A tensor placed in the words and
        shape of a dead one takes over its tensor-table slot (the slot's exponent is its own from its
        first write on)."""
        cfg = self.cfg
        host = [] if self.inference or self.device_loss else [_Op(None, {"host": "e_y"})]
        sequence = self.forward_ops + host + self.backward_ops
        first, last = {}, {}
        for index, op in enumerate(sequence):
            for name in op.names.values():
                first.setdefault(name, index)
                last[name] = index
        for name in list(self.params) + ["x"] + ([] if self.reuse else list(self.shapes)):
            first[name], last[name] = -1, len(sequence)
        if self.device_loss:        # written with x, placed after the parameters (their words stay put)
            first["labels"], last["labels"] = 0, len(sequence)
        names = sorted(self.shapes, key=lambda n: (first.get(n, 0), n))
        places, live, slots = {}, [], []           # live: (end, base, words); slots: [end, base, rows, cols]
        for name in names:
            rows, cols = self.shapes[name]
            words = rows * words_per_row(cols, cfg.lanes)
            start, end = first.get(name, 0), last.get(name, len(sequence))
            live = [item for item in live if item[0] >= start]
            base = 0
            for _, lo, size in sorted(live, key=lambda item: item[1]):
                if base + words <= lo:
                    break
                base = max(base, lo + size)
            if base + words > cfg.tmem_words:
                raise ValueError(f"the network needs more than the {cfg.tmem_words} TMEM words of configuration "
                                 f"{cfg.name} at batch {self.batch} (placing {name}, {rows}x{cols}): lower the "
                                 f"batch or the channels, or raise tmem_bytes")
            live.append((end, base, words))
            # a tensor in the same words and shape as one no longer needed takes over its slot
            slot = None if self.inference else next((index for index, (done, b, r, c) in enumerate(slots)
                                                     if done < start and (b, r, c) == (base, rows, cols)), None)
            if slot is None:
                slot = len(slots)
                slots.append(None)
                if slot >= cfg.tensor_slots:
                    raise ValueError(f"the network needs more than the {cfg.tensor_slots} tensor slots of "
                                     f"configuration {cfg.name}: fewer layers, or raise tensor_slots")
            slots[slot] = [end, base, rows, cols]
            places[name] = TensorPlace(slot, base, rows, cols)
        return places

    # ---- instructions -------------------------------------------------------------------------
    def _resolve(self, op: _Op, keys: dict[str, int], lr_shift: int, step_key: bool = False) -> isa.Instruction:
        slots = {role: self.slot(name) for role, name in op.names.items()}
        fields = dict(op.fields)
        if op.make is isa.qupdate:
            param = fields.pop("param")
            grad_sr, upd_sr = self.cfg.grad_rounding == "stochastic", self.cfg.update_rounding == "stochastic"
            return isa.qupdate(slots["w"], lr_shift, stochastic_grad=grad_sr, stochastic_update=upd_sr,
                               key=keys[param], step_key=step_key)
        return op.make(**slots, **fields)

    def forward_program(self) -> list[isa.Instruction]:
        return [self._resolve(op, {}, 0) for op in self.forward_ops] + [isa.halt()]

    def backward_program(self, keys: dict[str, int], lr_shift: int, step_key: bool = False) -> list[isa.Instruction]:
        """QUPDATE carries ``keys[param]``: the gradient key, or with ``step_key`` the tensor's mix."""
        return [self._resolve(op, keys, lr_shift, step_key) for op in self.backward_ops] + [isa.halt()]

    def mixes(self) -> dict[str, int]:
        """Every parameter's prng.tensor_mix: the keys of a step-key backward program."""
        ids = self.spec.param_ids()
        return {name: tensor_mix(ids[name]) for name in self.params}
