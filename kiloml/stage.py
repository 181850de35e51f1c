"""The stage contract every link of the pipeline follows.

``fit`` learns parameters in Python, ``transform`` is the reference
computation in the device's number format, ``emit_c`` returns the C for the
same computation, ``cost`` estimates what it takes on a target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from kiloml.targets.profiles import TargetProfile


@dataclass(frozen=True)
class StageCost:
    """A stage's own rough, uncalibrated figure of what it takes on a target. The
    calibrated whole-pipeline estimate is kiloml.targets.estimate's."""

    flash_bytes: int
    ram_bytes: int
    instructions: int


@dataclass
class CStage:
    """What one stage adds to the generated library.

    ``runtime``: runtime modules (``kiloml/runtime/<name>.c/.h``) it calls.
    ``config``: lines for ``kml_config.h`` (type and size choices for the runtime).
    ``constants``: C definitions for ``kiloml_model.c`` (``static const`` = flash).
    ``call``: C statements that compute the stage's output.
    """

    runtime: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    constants: str = ""
    call: str = ""
    state: str = ""  # static mutable state (RAM), sample stages
    reset: str = ""  # statements that clear the state
    scratch_floats: int = 0  # floats of the shared scratch buffer the call needs


@dataclass(frozen=True)
class EmitContext:
    """Names the generated code uses for a stage's input and output.

    Window stages read ``window`` (a ring of ``window_rows`` rows whose oldest
    row is ``start_row``); vector stages read ``input``. ``prefix`` keeps each
    stage's constants apart (``kml_s0_...``).
    """

    prefix: str
    window: str
    start_row: str
    input: str
    output: str
    window_rows: int
    channels: int
    n_inputs: int
    scratch: str = "kml_scratch"


class FeatureStage(ABC):
    """A stage that makes features. "window" stages read the window [N, T, C] and append
    their features; "vector" stages transform every feature made before them [N, F]."""

    kind: ClassVar[str]
    reads: ClassVar[str] = "window"
    #: the shape of this stage's output per channel when it is an image (frames, values)
    output_shape: tuple[int, ...] | None = None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> FeatureStage:
        return self

    @abstractmethod
    def transform(self, x: np.ndarray) -> np.ndarray:
        """The reference computation: float32 in, float32 [N, F] out."""

    @abstractmethod
    def feature_names(self, input_names: list[str]) -> list[str]:
        """Names of the output features given the input channel or feature names."""

    @abstractmethod
    def emit_c(self, ctx: EmitContext) -> CStage: ...

    @abstractmethod
    def cost(self, profile: TargetProfile, window_rows: int, channels: int) -> StageCost: ...


class SampleStage(ABC):
    """Preprocessing of the sample stream before windowing, with state that carries
    across samples (filters, pre-emphasis, decimation)."""

    kind: ClassVar[str]
    decimation: int = 1  # output samples are input samples / decimation

    @abstractmethod
    def process(self, x: np.ndarray) -> np.ndarray:
        """The reference: recordings x [B, T, C] float32 from a zero state ->
        [B, ceil(T / decimation), C]."""

    @abstractmethod
    def emit_c(self, ctx: EmitContext) -> CStage:
        """``call`` is a statement that reads ``ctx.input`` and writes ``ctx.output``
        (KML_CHANNELS floats each) and may ``return 0`` when no sample comes out."""

    @abstractmethod
    def cost(self, profile: TargetProfile, channels: int) -> StageCost: ...
