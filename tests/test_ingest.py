"""Reading recordings: CSV variants, WAV formats, NPY/NPZ and the public data sets."""

from __future__ import annotations

import builtins
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from kiloml.data.public import load_basic_motions, load_watch
from kiloml.data.sources import load_recordings
from kiloml.errors import KilomlError
from kiloml.project import load_project


def project(tmp_path: Path, data: str, name: str = "p") -> Path:
    path = tmp_path / "kiloml.toml"
    path.write_text(f'name = "{name}"\n[data]\n{data}\n[window]\nwindow_ms = 100\n'
                    f'stride_ms = 100\n[model]\nkind = "decision_tree"\n')
    return path


def load(tmp_path: Path, data: str):
    return load_recordings(load_project(project(tmp_path, data)))


# --- CSV -------------------------------------------------------------------------


def test_csv_semicolons_ms_timestamps_channel_subset(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    rows = ["time;x;y;z;note"] + [f"{i * 10};{i};{-i};{i * 0.5};n" for i in range(20)]
    (d / "walk_s01_a.csv").write_text("\n".join(rows) + "\n")
    recs = load(tmp_path, 'source = "csv"\npath = "d"\nchannels = ["z", "x"]\n'
                          'timestamp_column = "time"\ntimestamp_unit = "ms"\n'
                          'label_pattern = "(?P<label>[a-z]+)_"\n'
                          'group_pattern = "_(?P<group>s\\\\d+)_"')
    (r,) = recs
    assert r.channels == ["z", "x"] and r.sample_rate_hz == pytest.approx(100.0)
    assert r.label == "walk" and r.group == "s01"
    np.testing.assert_array_equal(r.samples[:3], np.float32([[0, 0], [0.5, 1], [1, 2]]))


def test_csv_per_sample_labels_and_group_column(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    rows = ["a,label,subject"] + [f"{i},{'run' if i < 5 else ''},7" for i in range(10)]
    (d / "x.csv").write_text("\n".join(rows) + "\n")
    (r,) = load(tmp_path, 'source = "csv"\npath = "d"\nsample_rate_hz = 10\n'
                          'label_column = "label"\ngroup_column = "subject"')
    assert r.label is None and list(r.sample_labels) == ["run"] * 5 + [""] * 5
    assert r.group == "7" and r.channels == ["a"]


def test_csv_group_changing_within_file(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.csv").write_text("a,subject\n1,7\n2,7\n3,8\n")
    with pytest.raises(KilomlError, match=r"x.csv:4: column 'subject': group changes"):
        load(tmp_path, 'source = "csv"\npath = "d"\nsample_rate_hz = 10\n'
                       'label_from_folder = true\ngroup_column = "subject"')


def test_csv_rate_derived_without_declaration(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    (d / "x.csv").write_text("t,a\n" + "".join(f"{i * 0.04:.2f},{i}\n" for i in range(50)))
    (r,) = load(tmp_path, 'source = "csv"\npath = "walk"\ntimestamp_column = "t"\n'
                          'label_from_folder = true')
    assert r.sample_rate_hz == pytest.approx(25.0) and r.label == "walk"
    assert r.group == "x.csv"  # without a group setting, each file is its own group


def test_csv_no_rate_at_all(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    (d / "x.csv").write_text("a\n1\n2\n")
    with pytest.raises(KilomlError, match="sample_rate_hz is not set"):
        load(tmp_path, 'source = "csv"\npath = "walk"\nlabel_from_folder = true')


def test_csv_rates_must_agree_across_files(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    (d / "a.csv").write_text("t,a\n" + "".join(f"{i * 0.02},{i}\n" for i in range(50)))
    (d / "b.csv").write_text("t,a\n" + "".join(f"{i * 0.025},{i}\n" for i in range(50)))
    (d / "c.csv").write_text("t,a\n" + "".join(f"{i * 0.02},{i}\n" for i in range(50)))
    with pytest.raises(KilomlError, match=r"b.csv: sample rate 40 Hz is 20% off"):
        load(tmp_path, 'source = "csv"\npath = "walk"\ntimestamp_column = "t"\n'
                       'label_from_folder = true')


def test_csv_channel_not_in_header(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    (d / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(KilomlError, match=r"x.csv:1: channel 'c' is not in the header"):
        load(tmp_path, 'source = "csv"\npath = "walk"\nsample_rate_hz = 5\n'
                       'channels = ["a", "c"]\nlabel_from_folder = true')


def test_label_pattern_must_match(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "123.csv").write_text("a\n1\n")
    with pytest.raises(KilomlError, match=r"123\.csv: file name does not match label_pattern"):
        load(tmp_path, 'source = "csv"\npath = "d"\nsample_rate_hz = 5\n'
                       'label_pattern = "^(?P<label>[a-z]+)_"')


def test_no_files_match(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(KilomlError, match=r"no files match '\*\*/\*.csv'"):
        load(tmp_path, 'source = "csv"\npath = "d"\nsample_rate_hz = 5\nlabel_from_folder = true')


# --- WAV -------------------------------------------------------------------------


def write_pcm24(path: Path, frames: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(3)
        w.setframerate(rate)
        w.writeframes(b"".join(int(v).to_bytes(3, "little", signed=True)
                               for v in frames.ravel()))


@pytest.mark.parametrize("kind", ["u8", "i16", "i24", "i32", "f32", "f64"])
@pytest.mark.parametrize("channels", [1, 3])
def test_wav_formats_scale_to_unit_range(tmp_path: Path, kind: str, channels: int) -> None:
    d = tmp_path / "yes"
    d.mkdir()
    full = np.array([-1.0, -0.5, 0.0, 0.25, 0.5])
    ref = np.tile(full[:, None], (1, channels))
    path = d / "a.wav"
    if kind == "u8":
        wavfile.write(path, 8000, (ref * 128 + 128).astype(np.uint8))
    elif kind == "i16":
        wavfile.write(path, 8000, (ref * 32768).astype(np.int16))
    elif kind == "i24":
        write_pcm24(path, (ref * 2**23).astype(np.int64), 8000)
    elif kind == "i32":
        wavfile.write(path, 8000, (ref * 2**31).astype(np.int32))
    else:
        wavfile.write(path, 8000, ref.astype(np.float32 if kind == "f32" else np.float64))
    (r,) = load(tmp_path, 'source = "wav"\npath = "yes"\nlabel_from_folder = true')
    assert r.sample_rate_hz == 8000 and r.samples.shape == (5, channels)
    assert r.channels == [f"ch{i}" for i in range(channels)]
    np.testing.assert_allclose(r.samples, ref, atol=1e-7)


def test_wav_broken_file(tmp_path: Path) -> None:
    d = tmp_path / "yes"
    d.mkdir()
    (d / "a.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(KilomlError, match=r"a\.wav: not a readable WAV file"):
        load(tmp_path, 'source = "wav"\npath = "yes"\nlabel_from_folder = true')


def test_wav_rate_against_declared(tmp_path: Path) -> None:
    d = tmp_path / "yes"
    d.mkdir()
    wavfile.write(d / "a.wav", 8000, np.zeros(10, np.int16))
    with pytest.raises(KilomlError, match="8000 Hz, 50% off the declared"):
        load(tmp_path, 'source = "wav"\npath = "yes"\nsample_rate_hz = 16000\n'
                       'label_from_folder = true')


# --- NPY / NPZ ---------------------------------------------------------------------


def test_npy_and_npz(tmp_path: Path) -> None:
    d = tmp_path / "tap"
    d.mkdir()
    np.save(d / "a.npy", np.arange(12, dtype=np.int16).reshape(6, 2))
    np.savez(d / "b.npz", samples=np.ones((6, 2)), sample_rate_hz=20.0)
    recs = load(tmp_path, 'source = "npy"\npath = "tap"\nsample_rate_hz = 20\n'
                          'channels = ["x", "y"]\nlabel_from_folder = true')
    assert all(r.source.endswith(n) for r, n in zip(recs, ["a.npy", "b.npz"], strict=True))
    assert recs[0].samples.dtype == np.float32 and recs[0].samples[5, 1] == 11
    assert all(r.label == "tap" and r.sample_rate_hz == 20 for r in recs)


def test_npz_per_sample_labels(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    np.savez(d / "b.npz", samples=np.ones(6), labels=np.array(["a"] * 3 + ["b"] * 3))
    (r,) = load(tmp_path, 'source = "npy"\npath = "d"\nsample_rate_hz = 20\n'
                          'label_column = "labels"')
    assert list(r.sample_labels) == ["a"] * 3 + ["b"] * 3


@pytest.mark.parametrize(("array", "message"), [
    (np.array([[1.0, np.nan]]), "not finite"),
    (np.zeros((0, 2)), "no samples"),
    (np.zeros((2, 2, 2)), r"\[T\] or \[T, C\]"),
])
def test_npy_bad_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    d = tmp_path / "tap"
    d.mkdir()
    np.save(d / "a.npy", array)
    with pytest.raises(KilomlError, match=message):
        load(tmp_path, 'source = "npy"\npath = "tap"\nsample_rate_hz = 20\n'
                       'label_from_folder = true')


# --- public data sets -----------------------------------------------------------------


def test_watch_data_set() -> None:
    recs = load_watch()
    assert len(recs) == 140
    assert recs[0].channels == ["ax", "ay", "az", "wx", "wy", "wz"]
    assert {r.sample_rate_hz for r in recs} == {50.0}
    assert len({r.group for r in recs}) == 10 and len({r.label for r in recs}) == 7
    assert all(r.samples.dtype == np.float32 and r.samples.shape[1] == 6 for r in recs)


def test_basic_motions_data_set() -> None:
    recs = load_basic_motions()
    assert len(recs) == 80
    assert {r.label for r in recs} == {"standing", "walking", "running", "badminton"}
    assert all(r.samples.shape == (100, 6) for r in recs)


def test_public_data_set_names_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_seglearn(name, *args, **kwargs):
        if name.startswith("seglearn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_seglearn)
    with pytest.raises(KilomlError, match="needs the Python package seglearn: pip install"):
        load_watch()


def test_channel_subset_of_public_data(tmp_path: Path) -> None:
    recs = load(tmp_path, 'source = "watch"\nchannels = ["az", "wx"]')
    assert recs[0].channels == ["az", "wx"] and recs[0].samples.shape[1] == 2
    with pytest.raises(KilomlError, match="channel 'q' is not in the 'watch' data set"):
        load(tmp_path, 'source = "watch"\nchannels = ["q"]')


# --- CSV dialects seen in the wild --------------------------------------------------


def test_timestamp_column_found_by_name(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    (d / "x.csv").write_text("# logger v2.1, device 42\nTime_ms,accX,accY\n"
                             + "".join(f"{1000 + 20 * i},{i},{-i}\n" for i in range(30)))
    (r,) = load(tmp_path, 'source = "csv"\npath = "walk"\nlabel_from_folder = true')
    assert r.channels == ["accX", "accY"]  # the time column is not a feature
    assert r.sample_rate_hz == pytest.approx(50.0)


def test_iso_datetime_timestamps(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    stamps = np.datetime64("2024-03-01T12:00:00") + np.arange(40) * np.timedelta64(40, "ms")
    (d / "x.csv").write_text("timestamp,a\n" + "".join(f"{s},{i}\n" for i, s in
                                                        enumerate(stamps)))
    (r,) = load(tmp_path, 'source = "csv"\npath = "walk"\nsample_rate_hz = 25\n'
                          'label_from_folder = true')
    assert r.channels == ["a"] and r.n_samples == 40


def test_semicolons_with_decimal_commas(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    (d / "x.csv").write_text("a;b\n1,5;-2,25\n3,0;4\n")
    (r,) = load(tmp_path, 'source = "csv"\npath = "walk"\nsample_rate_hz = 5\n'
                          'label_from_folder = true')
    np.testing.assert_array_equal(r.samples, np.float32([[1.5, -2.25], [3.0, 4.0]]))


def test_gap_in_timestamps_is_named(tmp_path: Path) -> None:
    d = tmp_path / "walk"
    d.mkdir()
    t = np.arange(100) * 0.02
    t[60:] += 0.5  # half a second lost
    (d / "x.csv").write_text("t,a\n" + "".join(f"{v:.3f},{i}\n" for i, v in enumerate(t)))
    with pytest.raises(KilomlError, match=r"x\.csv: column 't'.*gaps \(the longest, 0\.52 s, "
                                          r"ends on line 62\)"):
        load(tmp_path, 'source = "csv"\npath = "walk"\nsample_rate_hz = 50\n'
                       'label_from_folder = true')
