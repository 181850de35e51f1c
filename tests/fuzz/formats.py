"""The fuzzed formats: their seeds (fixture models, small generated recordings and project
files) and the workspace each worker runs a mutant in.

Recording formats run a small project (2 classes x 3 subjects, CSV/WAV/NPY/NPZ written
with tests/conftest.py's signal generator); the mutant replaces one recording, or the
kiloml.toml for the "toml" format (with several valid project files as seeds).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import PROJECT_TOML, csv_text, signal
from mutate import Semantic
from scipy.io import wavfile
from semantic import onnx_semantic, tflite_semantic
from structure import (
    Field,
    flatbuffer_fields,
    npy_fields,
    npz_fields,
    protobuf_fields,
    text_fields,
    wav_fields,
)

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "nn" / "fixtures"
LABELS = ("idle", "shake")
SUBJECTS = ("s1", "s2", "s3")
TARGET_RECORDING = ("shake", "s2")  # the recording a mutant replaces


@dataclass
class Seed:
    name: str
    data: bytes
    fields: list[Field]


@dataclass
class Format:
    name: str
    suffix: str
    text: bool
    seeds: Callable[[], list[Seed]]
    # writes the pristine workspace into a folder; returns (mutant path, project toml)
    workspace: Callable[[Path], tuple[Path, Path | None]]
    semantic: Semantic | None = None


# ---- models ---------------------------------------------------------------------------

# The converter-made fixtures (tests/nn/fixtures), named so that new fixtures do not change
# a campaign; recurrent models are used when present.
MODEL_SEEDS = {
    ".tflite": ("cnn1d_dynamic_batch_int8", "cnn1d_float", "cnn1d_int8",
                "cnn1d_litert_torch_int8", "dscnn_float", "dscnn_int8", "dynamic_range",
                "float16_quant", "int16x8", "mlp_float", "mlp_int8", "multi_subgraph",
                "ops_mix_int8", "lstm_int8", "gru_int8"),
    ".onnx": ("cnn1d_keras", "cnn1d_torch", "mlp_sklearn"),
}


def _fixture_seeds(suffix: str, finder: Callable[[bytes], list[Field]]) -> list[Seed]:
    seeds = []
    for name in MODEL_SEEDS[suffix]:
        path = FIXTURES / f"{name}{suffix}"
        if path.is_file():
            data = path.read_bytes()
            seeds.append(Seed(path.name, data, finder(data)))
    return seeds


def _model_workspace(suffix: str) -> Callable[[Path], tuple[Path, Path | None]]:
    def make(folder: Path) -> tuple[Path, Path | None]:
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"model{suffix}", None

    return make


# ---- recordings -----------------------------------------------------------------------

RECORDING_TOML = """\
name = "fuzz"

[data]
source = "{source}"
path = "data"
{rate}label_from_folder = true
group_pattern = '(?P<group>s\\d+)_'

[window]
window_ms = {window_ms}
stride_ms = {stride_ms}

[[features]]
stage = "statistics"

[model]
kind = "decision_tree"

[evaluation]
test_groups = ["s3"]
cv_folds = 2

[output]
dir = "out"
"""


def _csv(label: str, subject: str, seed: int) -> bytes:
    return csv_text(signal(label, 2.0, seed)).encode()


def _wav(label: str, subject: str, seed: int) -> bytes:
    rows = signal(label, 0.4 * 8000 / 50, seed)[:3200, 1:3]  # 2 channels
    pcm = np.clip(rows / 4.0 * 32767, -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    wavfile.write(buf, 8000, pcm)
    return buf.getvalue()


def _npy(label: str, subject: str, seed: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, signal(label, 2.0, seed)[:, 1:].astype(np.float32), allow_pickle=False)
    return buf.getvalue()


def _npz(label: str, subject: str, seed: int) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, samples=signal(label, 2.0, seed)[:, 1:].astype(np.float32),
             sample_rate_hz=np.float64(50.0))
    return buf.getvalue()


RECORDINGS: dict[str, tuple[str, Callable[[str, str, int], bytes], str]] = {
    # format: (suffix, writer, [data] source + rate lines and window)
    "csv": (".csv", _csv, "csv"),
    "wav": (".wav", _wav, "wav"),
    "npy": (".npy", _npy, "npy"),
    "npz": (".npz", _npz, "npy"),
}


def _project_toml(fmt: str) -> str:
    source = RECORDINGS[fmt][2]
    rate = {"csv": 'sample_rate_hz = 50\ntimestamp_column = "t"\n', "npy": "sample_rate_hz = 50\n",
            "npz": "", "wav": ""}[fmt]
    window = (100, 50) if fmt == "wav" else (1000, 500)
    return RECORDING_TOML.format(source=source, rate=rate, window_ms=window[0],
                                 stride_ms=window[1])


def write_recording_project(folder: Path, fmt: str) -> tuple[Path, Path]:
    """The pristine project of ``fmt``; returns (the target recording, kiloml.toml)."""
    suffix, writer, _ = RECORDINGS[fmt]
    seed = 0
    for label in LABELS:
        for subject in SUBJECTS:
            path = folder / "data" / label / f"{subject}_rec{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(writer(label, subject, seed))
            seed += 1
    toml = folder / "kiloml.toml"
    toml.write_text(_project_toml(fmt))
    label, subject = TARGET_RECORDING
    return folder / "data" / label / f"{subject}_rec{suffix}", toml


def _recording_seeds(fmt: str, finder: Callable[[bytes], list[Field]]) -> Callable[[],
                                                                                  list[Seed]]:
    def seeds() -> list[Seed]:
        suffix, writer, _ = RECORDINGS[fmt]
        label, subject = TARGET_RECORDING
        index = LABELS.index(label) * len(SUBJECTS) + SUBJECTS.index(subject)
        data = writer(label, subject, index)
        return [Seed(f"{label}/{subject}_rec{suffix}", data, finder(data))]

    return seeds


def _recording_workspace(fmt: str) -> Callable[[Path], tuple[Path, Path | None]]:
    def make(folder: Path) -> tuple[Path, Path | None]:
        if folder.exists():
            shutil.rmtree(folder)
        return write_recording_project(folder, fmt)

    return make


# ---- project files --------------------------------------------------------------------

RICH_TOML = """\
name = "fuzz-rich"

[data]
source = "csv"
path = "data"
sample_rate_hz = 50
timestamp_column = "t"
channels = ["ax", "ay", "az"]
label_from_folder = true
group_pattern = '(?P<group>s\\d+)_'
min_label_coverage = 0.8
short_recordings = "error"

[[preprocess]]
stage = "filter"
type = "lowpass"
cutoff_hz = 10.0
order = 2

[[preprocess]]
stage = "pre_emphasis"
coefficient = 0.5

[window]
window_ms = 640
stride_ms = 320

[[features]]
stage = "statistics"
statistics = ["mean", "std", "rms"]

[[features]]
stage = "spectral"
fft_length = 32
n_bands = 4
band_spacing = "log"
f_min_hz = 1.0
f_max_hz = 20.0
n_peaks = 2

[[features]]
stage = "scale"
method = "minmax"

[augment]
copies = 1
noise_snr_db = [20.0, 30.0]
time_shift_ms = 40

[model]
kind = "random_forest"
n_estimators = 3
max_depth = 4

[evaluation]
test_groups = ["s3"]
cv_folds = 2
seed = 1

[decision]
smoothing = "average"
smoothing_windows = 2
min_score = 0.1

[target]
name = "cortex-m4f"

[output]
dir = "out"
"""

MFCC_TOML = PROJECT_TOML.format(name="fuzz-mfcc").replace(
    '[[features]]\nstage = "statistics"\n',
    '[[preprocess]]\nstage = "decimate"\nfactor = 2\n\n'
    '[[features]]\nstage = "mfe"\nframe_ms = 200\nframe_stride_ms = 100\nfft_length = 16\n'
    'n_filters = 4\n').replace('test_groups = ["s4"]', 'test_groups = ["s3"]').replace(
    "cv_folds = 3", "cv_folds = 2")


def _toml_seeds() -> list[Seed]:
    basic = _project_toml("csv")
    seeds = []
    for name, text in (("basic", basic), ("rich", RICH_TOML), ("mfe", MFCC_TOML)):
        data = text.encode()
        seeds.append(Seed(f"{name}.toml", data, text_fields(data)))
    return seeds


def _toml_workspace(folder: Path) -> tuple[Path, Path | None]:
    if folder.exists():
        shutil.rmtree(folder)
    _, toml = write_recording_project(folder, "csv")
    return toml, toml


FORMATS: dict[str, Format] = {
    "tflite": Format("tflite", ".tflite", False, lambda: _fixture_seeds(".tflite",
                                                                        flatbuffer_fields),
                     _model_workspace(".tflite"), tflite_semantic),
    "onnx": Format("onnx", ".onnx", False, lambda: _fixture_seeds(".onnx", protobuf_fields),
                   _model_workspace(".onnx"), onnx_semantic),
    "csv": Format("csv", ".csv", True, _recording_seeds("csv", text_fields),
                  _recording_workspace("csv")),
    "wav": Format("wav", ".wav", False, _recording_seeds("wav", wav_fields),
                  _recording_workspace("wav")),
    "npy": Format("npy", ".npy", False, _recording_seeds("npy", npy_fields),
                  _recording_workspace("npy")),
    "npz": Format("npz", ".npz", False, _recording_seeds("npz", npz_fields),
                  _recording_workspace("npz")),
    "toml": Format("toml", ".toml", True, _toml_seeds, _toml_workspace),
}
