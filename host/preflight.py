"""Bad input to eoq-train, found before any work starts: output paths and the run's configuration.

Every check raises :class:`InputError` with one line naming the path or the
limit; eoq-train prints it and exits without a traceback, having trained
nothing and written nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from golden_model.config import CoreConfig
from golden_model.data import DIGITS_FORMAT, DataError, Dataset, InputFormat, load_digits_split, load_npz
from golden_model.train import check_fits


class InputError(ValueError):
    """A command line eoq-train cannot carry out."""


def check_writable_directory(directory: Path, what: str) -> None:
    """Create ``directory`` if need be and prove a file can be created in it."""
    if directory.exists() and not directory.is_dir():
        raise InputError(f"cannot write the {what} in {directory}: it is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".eoq-write-test-"):
            pass
    except OSError as error:
        raise InputError(f"cannot write the {what} in {directory}: {error.strerror or error}") from None


def check_writable_file(path: Path, what: str) -> None:
    """``path`` can be written: its directory can take a new file and the path is not a directory
    or a read-only file."""
    if path.is_dir():
        raise InputError(f"cannot write the {what} {path}: it is a directory")
    check_writable_directory(path.parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"cannot write the {what} {path}: the file is read-only")


def fit_configuration(cfg: CoreConfig, *, target: str, arch: str, batch: int,
                      fmt: InputFormat = DIGITS_FORMAT) -> CoreConfig:
    """The configuration the run uses (golden targets widen max_batch to the batch), or InputError
    naming the limit the batch or the network for the data exceeds (and a configuration that holds it)."""
    if target == "fp32":
        return cfg
    if batch > cfg.max_batch:
        if target != "golden":
            raise InputError(f"--batch {batch} exceeds max_batch {cfg.max_batch} of configuration {cfg.name}, "
                             f"which the {target} core is built for")
        try:
            cfg = cfg.replace(max_batch=batch)
        except ValueError as error:
            raise InputError(f"--batch {batch} does not fit configuration {cfg.name}: {error}") from None
    try:
        check_fits(arch, fmt, cfg, batch)
    except DataError as error:
        raise InputError(f"--arch {arch} --batch {batch} on configuration {cfg.name}: {error}") from None
    return cfg


def load_data(path: str | None) -> Dataset:
    """The bundled digits, or the user's .npz (golden_model.data.load_npz); InputError naming the problem."""
    if path is None:
        return load_digits_split()
    try:
        return load_npz(path)
    except DataError as error:
        raise InputError(str(error)) from None
