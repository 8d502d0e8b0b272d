"""Checkpoints of an eoq-train run: ``--checkpoint DIR`` writes them, ``--resume DIR`` continues one.

DIR holds one file, ``state.npz``.  It is written whole to a temporary file in
DIR, flushed to disk and renamed over the previous one (os.replace), so a run
killed at any moment leaves either the previous checkpoint or the new one.
An uncompressed NumPy archive (zip; every member carries a CRC-32):

  meta             JSON: format and version; the run (target, arch, the
                   configuration and its definition, seed, batch, epochs,
                   lr_shift, steps per epoch); the golden_model.train.Position
                   (epoch, step, the data-order generator's state at the epoch
                   start, the epoch's losses and counts, seconds, history); the
                   model's step counter (it keys stochastic rounding) and
                   exponents; on device targets the device's exponents and the
                   trainer's counters and statistics
  model/<name>     the host model's parameters: int8 mantissas, float32 for fp32
  device/<name>    the parameters read back from the device (device targets)

The same file is what ``--save FILE`` writes at the end of a run and what
``--load FILE`` and eoq-predict read (trained weights, the data format and
the frozen inference exponents, golden_model/inference.py, in meta).

:func:`load` refuses a missing, corrupted, truncated or foreign file with a
:class:`CheckpointError` naming the file and what is wrong; it never writes.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from golden_model.quant import QTensor
from golden_model.train import EpochRecord, Position

FORMAT = "eoq-train checkpoint"
VERSION = 1
STATE_FILE = "state.npz"
#: Settings that define a run: a checkpoint continues only the run it was written by.  The target may
#: change between device targets (sim, serial, golden hold the same state); ``model`` (int8 or fp32) not.
RUN_SETTINGS = ("model", "arch", "config", "seed", "batch", "epochs", "lr_shift", "steps", "data")


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, corrupted, truncated, foreign, or of another run."""


@dataclass
class Checkpoint:
    """The full state of a run at ``position``."""

    run: dict
    position: Position
    model: dict[str, QTensor | np.ndarray]
    model_step: int | None = None
    device: dict[str, QTensor] | None = None
    counters: dict = field(default_factory=dict)
    inference: dict[str, int] | None = None      # the frozen inference exponents (int8 models)

    @property
    def where(self) -> str:
        if self.position.epoch > self.run["epochs"]:
            return f"the end of the run ({self.run['epochs']} epochs)"
        return f"epoch {self.position.epoch}, step {self.position.step}"


def state_path(directory) -> Path:
    return Path(directory) / STATE_FILE


# ---- writing ------------------------------------------------------------------------------------

def _split(params: dict, prefix: str, arrays: dict) -> dict:
    """Store parameters as arrays; return their exponents (None for float parameters)."""
    exps = {}
    for name, value in params.items():
        if isinstance(value, QTensor):
            arrays[f"{prefix}/{name}"] = np.asarray(value.q)
            exps[name] = int(value.exp)
        else:
            arrays[f"{prefix}/{name}"] = np.asarray(value)
            exps[name] = None
    return exps


def save(directory, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to DIR/state.npz atomically; returns the path."""
    return save_file(state_path(directory), checkpoint)


def save_file(path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to the file ``path`` atomically; returns the path."""
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "format": FORMAT, "version": VERSION, "run": checkpoint.run,
        "position": {**asdict(checkpoint.position), "history": [asdict(r) for r in checkpoint.position.history]},
        "model": {"step": checkpoint.model_step, "exps": _split(checkpoint.model, "model", arrays)},
        "device": None if checkpoint.device is None else {"exps": _split(checkpoint.device, "device", arrays)},
        "counters": checkpoint.counters,
        "inference": checkpoint.inference,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=".state-", suffix=".npz.tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# ---- reading ------------------------------------------------------------------------------------

def _join(arrays, prefix: str, exps: dict, path: Path) -> dict:
    params = {}
    for name, exp in exps.items():
        key = f"{prefix}/{name}"
        if key not in arrays:
            raise CheckpointError(f"{path}: the checkpoint lacks the array {key}")
        params[name] = arrays[key] if exp is None else QTensor(arrays[key], int(exp))
    return params


def _read(path: Path, missing: str) -> tuple[dict, dict]:
    """(meta, arrays) of a checkpoint file; every member is read, so its CRC-32 is checked."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise CheckpointError(missing) from None
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as error:
        raise CheckpointError(f"{path} is corrupted or truncated: {error}") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path} is not an eoq-train checkpoint (a NumPy archive without its meta record)")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} is corrupted: its meta record is not JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path} is not an eoq-train checkpoint (its format is {found!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is a version {meta.get('version')} checkpoint; this eoq-train reads "
                              f"version {VERSION}")
    return meta, arrays


def load(directory) -> Checkpoint:
    """The checkpoint in ``directory``; CheckpointError if it cannot be used."""
    path = state_path(directory)
    return load_file(path, missing=f"no checkpoint at {path} (the directory holds no {STATE_FILE})")


def load_file(path, missing: str | None = None) -> Checkpoint:
    """The checkpoint (or saved weights) in the file ``path``; CheckpointError if it cannot be used."""
    path = Path(path)
    meta, arrays = _read(path, missing or f"no saved weights at {path} (write them with eoq-train --save)")
    try:
        raw = dict(meta["position"])
        raw["history"] = [EpochRecord(**r) for r in raw["history"]]
        position = Position(**raw)
        model = _join(arrays, "model", meta["model"]["exps"], path)
        device = None if meta["device"] is None else _join(arrays, "device", meta["device"]["exps"], path)
        return Checkpoint(meta["run"], position, model, meta["model"]["step"], device, meta["counters"],
                          meta.get("inference"))
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is corrupted: a record is missing or malformed ({error!r})") from None


def check_run(checkpoint: Checkpoint, run: dict, directory) -> None:
    """CheckpointError unless ``checkpoint`` was written by the run ``run`` describes."""
    differing = [f"{key} {checkpoint.run.get(key)!r} (this command line: {run[key]!r})"
                 for key in RUN_SETTINGS if checkpoint.run.get(key) != run[key]]
    if checkpoint.run.get("config_json") != run["config_json"] and not differing:
        differing.append(f"the definition of configuration {run['config']!r} changed since")
    if differing:
        raise CheckpointError(f"{state_path(directory)} belongs to another run: " + "; ".join(differing))
