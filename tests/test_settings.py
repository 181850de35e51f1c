"""Whole runs on small projects: what a run reports about its data (natural order, dropped
classes, impossible cross-validation) and settings that cannot work, refused before
training with one line naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, csv_text, run_cli

RATE_HZ = 50.0

NUMERIC_TOML = """\
name = "numeric"

[data]
source = "csv"
path = "data"
sample_rate_hz = 50
timestamp_column = "t"
label_from_folder = true
group_pattern = '(?P<group>[0-9]+)_'
short_recordings = "{short}"

[window]
window_ms = 1000
stride_ms = 500

[[features]]
stage = "statistics"
statistics = ["mean", "std", "rms"]

[model]
kind = "decision_tree"
max_depth = 8

[evaluation]
test_groups = ["10"]
{folds}

[output]
dir = "out"
"""


def rows(label: int, group: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(100 * label + group)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    x = np.sin(2 * np.pi * 0.5 * label * t) + 0.05 * rng.standard_normal(len(t))
    return np.column_stack([t, x, label + 0.1 * rng.standard_normal(len(t)), x * x])


def numeric_project(root: Path, labels=range(1, 13), groups=(1, 2, 10), seconds=3.0,
                    short="error", folds: int | None = 2) -> Path:
    for label in labels:
        for group in groups:
            path = root / "data" / str(label) / f"{group}_rec.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(csv_text(rows(label, group, seconds)))
    toml = root / "kiloml.toml"
    toml.write_text(NUMERIC_TOML.format(short=short,
                                        folds="" if folds is None else f"cv_folds = {folds}"))
    return toml


def strict_json(path: Path) -> dict:
    """metrics.json as a strict JSON reader sees it: NaN or Infinity is an error."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_numeric_labels_in_natural_order_everywhere(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code in (0, 1), result.stderr
    names = [str(c) for c in range(1, 13)]
    metrics = strict_json(tmp_path / "out" / "metrics.json")
    assert metrics["data"]["class_names"] == names
    assert metrics["evaluation"]["class_names"] == names
    assert metrics["data"]["groups"] == ["1", "2", "10"]
    assert metrics["evaluation"]["train_groups"] == ["1", "2"]
    c_code = (tmp_path / "out" / "firmware" / "kiloml_model.c").read_text()
    table = c_code[c_code.index("kml_class_names[KML_CLASSES]"):].split(";")[0]
    assert table.split("{")[1].split("}")[0] == ", ".join(f'"{n}"' for n in names)
    # the report draws its confusion matrix from these class_names (a PNG: not read here)
    assert list(metrics["evaluation"]["per_group_accuracy"]) == ["10"]


def line_of(toml: Path, text: str) -> int:
    return toml.read_text().splitlines().index(text) + 1


def shorten(root: Path, label: int, group: int, seconds: float = 0.5) -> None:
    (root / "data" / str(label) / f"{group}_rec.csv").write_text(
        csv_text(rows(label, group, seconds)))


# --- data a run does not use: said on the console, refused when a class is lost -----


def test_skipped_short_recordings_are_named_per_class(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path, labels=range(1, 5), short="skip")
    shorten(tmp_path, 3, 1)
    shorten(tmp_path, 4, 2)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code in (0, 1), result.stderr
    assert "skipped 2 recordings shorter than a window (50 samples): '3' 1 of 3, '4' 1 of 3" \
        in result.stdout
    metrics = strict_json(tmp_path / "out" / "metrics.json")
    assert metrics["data"]["class_names"] == ["1", "2", "3", "4"]
    assert len(metrics["evaluation"]["recordings_skipped_short"]) == 2


def test_skip_that_drops_every_recording_of_a_class_is_refused(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path, labels=range(1, 5), short="skip")
    for group in (1, 2, 10):
        shorten(tmp_path, 3, group)
    line = line_of(toml, 'short_recordings = "skip"')
    assert_user_error(run_cli("run", str(toml), "--no-emulator"),
                      f"kiloml.toml:{line}: [data] short_recordings:",
                      "leaves class '3' (3 of 3) without a recording",
                      "window of 50 samples")
    assert not (tmp_path / "out").exists()


# --- cross-validation that cannot happen: said, never NaN --------------------------


def test_one_training_group_says_no_cross_validation_and_writes_no_nan(tmp_path: Path) -> None:
    """Default cv_folds, one training group: the run goes on and says why there is no
    cross-validation, on the console, in metrics.json (strict JSON) and in the report."""
    toml = numeric_project(tmp_path, labels=range(1, 4), groups=(1, 10), folds=None)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code in (0, 1), result.stderr
    assert "no cross-validation: the training set is one group (1)" in result.stdout
    metrics = strict_json(tmp_path / "out" / "metrics.json")
    cv = metrics["evaluation"]["cross_validation"]
    assert cv["folds"] == 0 and "the training set is one group (1)" in cv["note"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Cross-validation: no cross-validation: the training set is one group" in report


def test_default_folds_shrink_to_the_training_groups_with_a_note(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path, labels=range(1, 4), groups=(1, 2, 3, 10), folds=None)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code in (0, 1), result.stderr
    assert "3-fold instead of the default 5: 3 training groups (1, 2, 3)" in result.stdout
    cv = strict_json(tmp_path / "out" / "metrics.json")["evaluation"]["cross_validation"]
    assert cv["folds"] == 3 and len(cv["accuracy_per_fold"]) == 3 and "3-fold" in cv["note"]


def test_network_without_validation_groups_writes_no_nan(tmp_path: Path) -> None:
    """One training group: no validation groups for early stopping (the history had NaN
    validation accuracies)."""
    toml = numeric_project(tmp_path, labels=range(1, 4), groups=(1, 10), folds=None)
    text = toml.read_text().replace('kind = "decision_tree"\nmax_depth = 8',
                                    'kind = "mlp"\nhidden = [8]\nepochs = 3')
    toml.write_text(text)
    result = run_cli("run", str(toml), "--no-emulator")
    assert result.exit_code in (0, 1), result.stderr
    training = strict_json(tmp_path / "out" / "metrics.json")["neural"]["training"]
    assert training["val_accuracy"] is None and "no validation groups" in training["note"]
    assert len(training["train_loss"]) == 3


# --- settings that cannot work: refused before training, with the key and line ------


def test_more_cv_folds_than_training_groups_is_refused(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path, labels=range(1, 4), groups=(1, 2, 10), folds=4)
    assert_user_error(run_cli("run", str(toml), "--no-emulator"),
                      f"kiloml.toml:{line_of(toml, 'cv_folds = 4')}: [evaluation] cv_folds:",
                      "cv_folds = 4 needs 4 training groups", "has 2 (1, 2)",
                      "set cv_folds = 2 or 0")
    assert not (tmp_path / "out").exists()


def test_one_class_is_refused(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path, labels=[7], groups=(1, 2, 10), folds=None)
    assert_user_error(run_cli("run", str(toml), "--no-emulator"), "kiloml.toml",
                      "[data]", "one class ('7')", "at least two")


def test_holding_out_every_group_of_a_class_names_test_fraction(tmp_path: Path) -> None:
    toml = numeric_project(tmp_path, labels=range(1, 4), groups=(1, 2, 3, 10), folds=None)
    for group in (1, 2, 3):  # class 3 is recorded in group 10 only, class 1 in group 1:
        (tmp_path / "data" / "3" / f"{group}_rec.csv").unlink()  # no single training
        (tmp_path / "data" / "1" / f"{(2, 3, 10)[group - 1]}_rec.csv").unlink()  # group has both
    text = toml.read_text().replace('test_groups = ["10"]', "test_fraction = 0.9")
    toml.write_text(text)
    assert_user_error(run_cli("run", str(toml), "--no-emulator"),
                      f"kiloml.toml:{line_of(toml, 'test_fraction = 0.9')}: "
                      "[evaluation] test_fraction:", "class '3' has no training windows")


STATS = 'stage = "statistics"\nstatistics = ["mean", "std", "rms"]'
NO_FEATURES = ('[[features]]\n' + STATS + '\n', '')
TREE = 'kind = "decision_tree"\nmax_depth = 8'


@pytest.mark.parametrize(("edits", "key_line", "where", "fragment"), [
    ([("stride_ms = 500", "stride_ms = 4000")], "stride_ms = 4000", "[window] stride_ms",
     "longer than the longest recording (150 samples)"),
    ([("window_ms = 1000", "window_ms = 15")], "window_ms = 15", "[window] window_ms",
     "less than one sample at 50 Hz"),
    ([("[[features]]", '[[preprocess]]\nstage = "decimate"\nfactor = 16\n\n[[features]]'),
      ("window_ms = 1000", "window_ms = 200")], "window_ms = 200", "[window] window_ms",
     "less than one sample at 3.125 Hz"),
    ([NO_FEATURES, (TREE, 'kind = "cnn1d"\nkernel_size = 64')], "kernel_size = 64",
     "[model] kernel_size", "longer than the window (window 50 samples"),
    ([NO_FEATURES, (TREE, 'kind = "cnn1d"\nstride = 8\nfilters = [4, 4]'),
      ("window_ms = 1000", "window_ms = 200")], "[model]", "[model] kernel_size",
     "longer than the 2 samples entering convolution 2"),
    ([NO_FEATURES, (TREE, 'kind = "cnn1d"\nkernel_size = 1\npool = true\n'
                          'filters = [4, 4, 4, 4, 4, 4]')], "filters = [4, 4, 4, 4, 4, 4]",
     "[model] filters", "5 convolutions with these strides and pools leave no sample"),
    ([(TREE, 'kind = "cnn1d"\ninput = "features"')], 'input = "features"', "[model] input",
     "cnn1d convolves over time"),
    ([NO_FEATURES, (TREE, 'kind = "mlp"\ninput = "window"')], 'input = "window"',
     "[model] input", "an mlp reads the feature vector"),
    ([(STATS, 'stage = "mfe"\nframe_ms = 1000\nframe_stride_ms = 500\nfft_length = 64\n'
              'n_filters = 1'), (TREE, 'kind = "dscnn"')], "[model]",
     "[model] kernel_size", "larger than its input [3 frames, 1 coefficients]"),
    ([(STATS, 'stage = "mfe"\nframe_ms = 500\nframe_stride_ms = 500\nfft_length = 32\n'
              'n_filters = 4'), (TREE, 'kind = "dscnn"\nstride = 4\nfilters = [4, 4]')],
     "stride = 4", "[model] stride", "leaves [2, 1] for the 3x3 depthwise kernels"),
    ([(TREE, 'kind = "mlp"\nvalidation_groups = 3')], "validation_groups = 3",
     "[model] validation_groups", "holds out every training group"),
    ([("max_depth = 8", "max_depth = 8\nmin_samples_leaf = 100")], "min_samples_leaf = 100",
     "[model] min_samples_leaf", "the training set has 45"),
    ([("max_depth = 8", "max_depth = 8\nmax_features = 10")], "max_features = 10",
     "[model] max_features", "more features than the pipeline makes (9)"),
    ([(STATS, 'stage = "spectral"\nfft_length = 16\nn_bands = 12')], "n_bands = 12",
     "[features.0] n_bands", "12 bands share 9 FFT bins"),
    ([(STATS, 'stage = "spectral"\nfft_length = 16\nn_peaks = 5')], "n_peaks = 5",
     "[features.0] n_peaks", "at most 4 peaks"),
    ([('short_recordings = "error"', 'short_recordings = "error"\npad_to_ms = 1e12')],
     "pad_to_ms = 1e12", "[data] pad_to_ms", "less than or equal to 86400000"),
    ([("[window]", "[augment]\ncopies = 1\ntime_shift_ms = 3000\n\n[window]")],
     "time_shift_ms = 3000", "[augment] time_shift_ms", "longest training recording (3000 ms)"),
    ([('test_groups = ["10"]', "test_fraction = 0.99")], "cv_folds = 2",
     "[evaluation] cv_folds", "hold out fewer test groups"),
], ids=["stride>recordings", "window<1 sample", "window<1 sample after decimation",
        "cnn1d kernel>window", "cnn1d kernel>strided input", "cnn1d pools past the window",
        "cnn1d on features", "mlp on windows", "dscnn kernel>input", "dscnn stride",
        "validation_groups", "min_samples_leaf", "max_features", "n_bands", "n_peaks",
        "pad_to_ms", "time_shift_ms", "test_fraction"])
def test_settings_that_cannot_work_are_refused_before_training(
        tmp_path: Path, edits: list[tuple[str, str]], key_line: str, where: str,
        fragment: str) -> None:
    toml = numeric_project(tmp_path, labels=range(1, 4), groups=(1, 2, 3, 10))
    text = toml.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    toml.write_text(text)
    assert_user_error(run_cli("run", str(toml), "--no-emulator"),
                      f"kiloml.toml:{line_of(toml, key_line)}: {where}:", fragment)
    assert not (tmp_path / "out").exists()


def test_augmented_copies_beyond_memory_are_refused() -> None:
    from kiloml.data.augment import augment
    from kiloml.data.recording import MAX_AUGMENTED_VALUES, Recording
    from kiloml.errors import KilomlError
    from kiloml.project import AugmentConfig

    n = MAX_AUGMENTED_VALUES // 1000 + 1  # 1000 copies of this recording are one too many
    rec = Recording(np.zeros((n, 1), np.float32), 50.0, ["x"], "g", "r", label="a")
    with pytest.raises(KilomlError, match=r"copies = 1000 of the training recordings would "
                                          r"hold 4\.0 GiB") as err:
        augment([rec], AugmentConfig(copies=1000))
    assert err.value.where == "[augment] copies"
    assert len(augment([rec], AugmentConfig(copies=1))) == 1
