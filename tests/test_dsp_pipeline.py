"""DSP stages in whole pipelines: configuration errors, and host + MCU parity end to end
for filters, decimation, pre-emphasis, spectral, MFCC and scaling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CsvProject, assert_user_error, run_cli
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parents[1]


def check(project: CsvProject, *fragments: str) -> str:
    line = assert_user_error(run_cli("run", str(project.toml)), *fragments)
    assert not project.out.exists()
    return line


def add_features(project: CsvProject, text: str) -> None:
    project.set_toml('[[features]]\nstage = "statistics"\n',
                     '[[features]]\nstage = "statistics"\n\n' + text)


def test_fft_length_not_a_power_of_two(csv_project: CsvProject) -> None:
    add_features(csv_project, '[[features]]\nstage = "spectral"\nfft_length = 48\n')
    check(csv_project, "kiloml.toml:20:", "[features.1] fft_length",
          "FFT length 48 is not a power of two")


def test_band_edges_above_nyquist(csv_project: CsvProject) -> None:
    add_features(csv_project, '[[features]]\nstage = "spectral"\nfft_length = 32\n'
                              'f_max_hz = 30.0\n')
    check(csv_project, "kiloml.toml:21:", "[features.1] f_max_hz",
          "30 Hz are above the Nyquist frequency (25 Hz at 50 Hz)")


def test_window_shorter_than_the_fft(csv_project: CsvProject) -> None:
    add_features(csv_project, '[[features]]\nstage = "spectral"\nfft_length = 64\n')
    check(csv_project, "kiloml.toml:20:", "the window has 50 samples, shorter than the FFT "
                                         "(fft_length = 64)")


def test_filter_cutoff_at_nyquist(csv_project: CsvProject) -> None:
    csv_project.set_toml("[window]", '[[preprocess]]\nstage = "filter"\ntype = "lowpass"\n'
                                     'cutoff_hz = 25.0\n\n[window]')
    check(csv_project, "kiloml.toml:14:", "[preprocess.0] cutoff_hz",
          "cutoff 25 Hz is at or above the Nyquist frequency (25 Hz at 50 Hz)")


def test_more_mfccs_than_filters(csv_project: CsvProject) -> None:
    add_features(csv_project, '[[features]]\nstage = "mfcc"\nframe_ms = 200\n'
                              'frame_stride_ms = 100\nfft_length = 16\nn_filters = 8\n'
                              'n_coefficients = 13\n')
    check(csv_project, "kiloml.toml:", "[features.1]",
          "n_coefficients = 13 is more MFCCs than mel filters (n_filters = 8)")


def write_wavs(root: Path, rates: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for label, f in (("low", 300.0), ("high", 1500.0)):
        for subject in range(4):
            rate = rates.get(f"u{subject}", 8000)
            t = np.arange(int(0.5 * rate)) / rate
            tone = 0.4 * np.sin(2 * np.pi * f * t + subject) + 0.05 * rng.standard_normal(len(t))
            d = root / "data" / label
            d.mkdir(parents=True, exist_ok=True)
            wavfile.write(d / f"u{subject}.wav", rate, (tone * 32767).astype(np.int16))


WAV_TOML = """name = "tones"
[data]
source = "wav"
path = "data"
label_from_folder = true
group_pattern = "(?P<group>u\\\\d)"
sample_rate_hz = 8000
{resample}
[[preprocess]]
stage = "pre_emphasis"
[[preprocess]]
stage = "decimate"
factor = 2
[window]
window_ms = 250
stride_ms = 125
[[features]]
stage = "mfcc"
frame_ms = 32
frame_stride_ms = 16
fft_length = 128
n_filters = 16
n_coefficients = 8
[[features]]
stage = "mfe"
frame_ms = 64
frame_stride_ms = 64
fft_length = 256
n_filters = 10
[[features]]
stage = "scale"
[model]
kind = "random_forest"
n_estimators = 5
max_depth = 5
[evaluation]
test_groups = ["u3"]
cv_folds = 3
[output]
dir = "out"
"""


def test_wav_rate_differs_from_the_project(tmp_path: Path) -> None:
    write_wavs(tmp_path, {"u2": 16000})
    (tmp_path / "kiloml.toml").write_text(WAV_TOML.format(resample=""))
    assert_user_error(run_cli("run", str(tmp_path / "kiloml.toml")), "u2.wav",
                      "the file says 16000 Hz, 100% off the declared sample_rate_hz = 8000")
    assert not (tmp_path / "out").exists()


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_parity(m: dict, where: str) -> None:
    p = m["parity"][where]
    assert p["n"] > 0 and p["all_decisions_equal"] and p["features_bit_exact"], (where, p)
    assert p["streaming"]["windows_equal"] and p["streaming"]["all_decisions_equal"], where


def test_audio_pipeline_resampled_decimated_mfcc_on_host_and_mcu(tmp_path: Path) -> None:
    """One voice at 16 kHz resampled to 8 kHz; pre-emphasis and decimation in the stream;
    MFCC, MFE and scaling: bit-exact on the host and on the emulated Cortex-M4F."""
    write_wavs(tmp_path, {"u2": 16000})
    (tmp_path / "kiloml.toml").write_text(WAV_TOML.format(resample="resample = true"))
    result = run_cli("run", str(tmp_path / "kiloml.toml"))
    assert result.exit_code == 0, result.stderr
    m = metrics(tmp_path / "out")
    assert m["data"]["sample_rate_hz"] == 4000.0  # after decimation by 2
    assert_parity(m, "host")
    assert_parity(m, "cortex-m4f")
    header = (tmp_path / "out" / "firmware" / "kiloml_model.h").read_text()
    assert "#define KML_DECIMATION 2" in header and "KML_SAMPLE_RATE_HZ 8000.0f" in header
    stages = [s["stage"] for s in m["resources"]["cortex-m4f"]["stages"]]
    assert any("mfcc" in s for s in stages) and any("scale" in s for s in stages)
    assert m["resources"]["cortex-m4f"]["push_sample_instructions_mean"] > 0


def test_filters_and_spectral_on_host_and_mcu(csv_project: CsvProject) -> None:
    csv_project.set_toml("[window]", '[[preprocess]]\nstage = "filter"\ntype = "bandpass"\n'
                                     'cutoff_hz = [0.5, 10.0]\norder = 2\n\n'
                                     '[[preprocess]]\nstage = "filter"\ntype = "highpass"\n'
                                     'cutoff_hz = 0.2\n\n[window]')
    add_features(csv_project, '[[features]]\nstage = "spectral"\nfft_length = 32\n'
                              'n_bands = 4\nband_spacing = "log"\nf_min_hz = 1.0\n\n'
                              '[[features]]\nstage = "scale"\nmethod = "minmax"\n')
    result = run_cli("run", str(csv_project.toml))
    assert result.exit_code == 0, result.stderr
    m = metrics(csv_project.out)
    assert_parity(m, "host")
    assert_parity(m, "cortex-m4f")
    assert m["features"]["stages"] == ["statistics", "spectral", "scale"]


@pytest.mark.slow
def test_spoken_digits_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", str(ROOT / "examples" / "spoken-digits" / "kiloml.toml"))
    assert result.exit_code == 0, result.stderr
    m = metrics(tmp_path / "build" / "spoken-digits")
    assert m["data"]["n_recordings"] == 60 and len(m["data"]["class_names"]) == 10
    assert m["evaluation"]["test_groups"] == ["it_IT_m_Carlo"]
    assert m["evaluation"]["n_test_windows"] == 10
    assert m["evaluation"]["n_augmented_train_windows"] == 50 * 30
    assert_parity(m, "host")
    assert_parity(m, "cortex-m4f")


@pytest.mark.slow
def test_watch_spectral_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("run", str(ROOT / "examples" / "watch" / "spectral.toml"))
    assert result.exit_code == 0, result.stderr
    m = metrics(tmp_path / "build" / "watch-spectral")
    assert_parity(m, "host")
    assert_parity(m, "cortex-m4f")
    assert m["evaluation"]["accuracy"] > 0.7
