"""The .npy files `kiloml model run` and `model verify` write: checked before any work
(never over the model or the inputs, in a folder that exists), written whole or not at all
and never pickled."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiloml.atomic import write_atomically
from kiloml.errors import KilomlError
from kiloml.outputs import Protected, check_output_file


def check_output_npy(output: Path, model: Path, inputs: Path) -> None:
    """The .npy a model command writes: never the model or the inputs, in a folder that
    exists (checked before any work)."""
    check_output_file(output, [Protected("the model file", Path(model), folder=False),
                               Protected("the inputs file", Path(inputs), folder=False)],
                      name="--output")
    if not Path(output).absolute().parent.is_dir():
        raise KilomlError("output folder does not exist", file=Path(output).absolute().parent)


def write_npy(path: Path, array: np.ndarray) -> None:
    """An .npy written whole or not at all (never pickled)."""
    write_atomically(Path(path), lambda f: np.save(f, array, allow_pickle=False))
