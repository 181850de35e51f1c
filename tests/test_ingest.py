"""Reading recordings: CSV variants, WAV formats, NPY/NPZ and the public data sets."""

from __future__ import annotations

import io
import struct
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, run_cli
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


def test_csv_float32_extremes(tmp_path: Path) -> None:
    """FLT_MAX written as its shortest text (3.4028235e+38, above FLT_MAX as a double) reads
    back as FLT_MAX; a value that rounds to infinity in float32 is one line naming it."""
    d = tmp_path / "d"
    d.mkdir()
    fmax = np.finfo(np.float32).max
    rows = ["x,y"] + [f"{fmax!s},{-fmax!s}"] + [f"{i},{i}" for i in range(20)]
    assert rows[1] == "3.4028235e+38,-3.4028235e+38"
    (d / "walk_a.csv").write_text("\n".join(rows) + "\n")
    data = 'source = "csv"\npath = "d"\nsample_rate_hz = 100\nlabel_pattern = "(?P<label>[a-z]+)_"'
    (r,) = load(tmp_path, data)
    assert r.samples[0, 0] == fmax and r.samples[0, 1] == -fmax
    (d / "walk_a.csv").write_text("x,y\n1,2\n3.4028236e+38,0\n" + "1,1\n" * 20)
    with pytest.raises(KilomlError) as info:
        load(tmp_path, data)
    assert "3.40282e+38 does not fit in float32" in str(info.value)
    assert info.value.line == 3


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
    (tmp_path / "d" / "notes.txt").write_text("not a recording")
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
    with pytest.raises(KilomlError, match=r"a\.wav: the RIFF header says the file has "
                                          r"808,464,440 bytes, it has 16 \(truncated\?\)"):
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
    # None in sys.modules: Python's own "not importable" (ModuleNotFoundError, name seglearn)
    monkeypatch.setitem(sys.modules, "seglearn", None)
    monkeypatch.delitem(sys.modules, "seglearn.datasets", raising=False)
    with pytest.raises(KilomlError, match=r"^\[data\] source: the 'watch' data set needs "
                                          r"seglearn, .*: pip install 'kiloml\[data\]'$"):
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


# --- malformed recordings through the command line: one line each ---------------------


def refused(tmp_path: Path, source: str, name: str, content: bytes, *fragments: str,
            data: str = "", named: str | None = None) -> str:
    """A project whose folder 'yes' holds ``name`` = ``content`` (next to a good recording)
    run by `kiloml run`: exit 2, one line naming the file and every fragment."""
    d = tmp_path / "yes"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(content)
    rate = {"csv": 'sample_rate_hz = 50\n', "wav": "", "npy": 'sample_rate_hz = 50\n'}[source]
    toml = tmp_path / "kiloml.toml"
    toml.write_text(f'name = "p"\n[data]\nsource = "{source}"\npath = "yes"\n{rate}'
                    f'label_from_folder = true\n{data}[window]\nwindow_ms = 100\n'
                    f'stride_ms = 100\n[model]\nkind = "decision_tree"\n[output]\n'
                    f'dir = "out"\n')
    line = assert_user_error(run_cli("run", str(toml), "--no-emulator"), named or name,
                             *fragments)
    assert not (tmp_path / "out").exists()
    return line


def wav(*, form: bytes = b"RIFF", riff_size: int | None = None, tag: int = 1,
        channels: int = 1, rate: int = 8000, byte_rate: int | None = None,
        block_align: int | None = None, bits: int = 16, fmt_size: int = 16,
        data: bytes = b"\x00\x01" * 10, data_size: int | None = None, order: str = "<",
        chunks: list[bytes] | None = None) -> bytes:
    """A WAV file from its header fields (each may be made wrong on purpose)."""
    block = block_align if block_align is not None else channels * (-(-bits // 8))
    fmt = struct.pack(order + "HHIIHH", tag, channels, rate,
                      byte_rate if byte_rate is not None else rate * block, block, bits)
    fmt = (fmt + b"\x00" * max(0, fmt_size - 16))[:fmt_size]
    parts = {"fmt": b"fmt " + struct.pack(order + "I", fmt_size) + fmt,
             "data": b"data" + struct.pack(order + "I", len(data) if data_size is None
                                           else data_size) + data}
    body = b"".join(parts[c.decode()] if c in (b"fmt", b"data") else c
                    for c in (chunks if chunks is not None else [b"fmt", b"data"]))
    size = len(body) + 4 if riff_size is None else riff_size
    return form + struct.pack(order + "I", size) + b"WAVE" + body


LIST = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # an odd-sized chunk and its pad


@pytest.mark.parametrize(("content", "fragment"), [
    (b"RIFF", "too short for a WAV header"),
    (b"OggS" + bytes(40), "not a WAV file: it starts with b'OggS'"),
    (wav(bits=0), "0-bit integer PCM is not supported"),
    (wav(bits=40, block_align=5), "40-bit integer PCM is not supported"),
    (wav(tag=3, bits=16), "16-bit floating point is not a WAV float format"),
    (wav(tag=7, bits=8), "WAV format 0x0007 (mu-law) is not supported"),
    (wav(channels=0, block_align=2), "the header says 0 channels"),
    (wav(channels=5000), "5,000 channels"),
    (wav(rate=0), "sample rate of 0 Hz"),
    (wav(channels=2, block_align=2), "block align) 2 bytes does not hold 2 channel(s) of "
                                     "16-bit samples"),
    (wav(bits=8, block_align=2), "2-byte samples for 8-bit PCM are not supported"),
    (wav(byte_rate=1), "the byte rate 1 is not rate x frame size"),
    (wav(fmt_size=10), "the 'fmt ' chunk has 10 bytes"),
    (wav(data_size=10**6), "chunk 'data' at byte 36 declares 1,000,000 bytes, only 20 follow"),
    (wav(riff_size=10**6), "the RIFF header says the file has 1,000,008 bytes, it has 64"),
    (wav(riff_size=40), "chunk 'data' at byte 36 ends at byte 64, past the 48 bytes the RIFF "
                        "header declares"),
    (wav(data=b"\x00" * 21), "data chunk of 21 bytes is not a whole number of 2-byte frames"),
    (wav(data=b""), "no samples (empty data chunk)"),
    (wav(chunks=[b"fmt"]), "no data chunk"),
    (wav(chunks=[LIST]), "no 'fmt ' chunk"),
    (wav(chunks=[b"data", b"fmt"]), "the data chunk comes before the 'fmt ' chunk"),
    (wav(tag=0xFFFE, fmt_size=18), "an extensible 'fmt ' chunk needs 40 bytes"),
], ids=["short", "not-riff", "bits0", "bits40", "float16", "mu-law", "channels0",
        "channels5000", "rate0", "block-align", "8bit-container", "byte-rate", "fmt-short",
        "data-beyond-file", "riff-beyond-file", "riff-too-small", "partial-frame",
        "empty-data", "no-data", "no-fmt", "data-first", "extensible-short"])
def test_malformed_wav_headers(tmp_path: Path, content: bytes, fragment: str) -> None:
    refused(tmp_path, "wav", "a.wav", content, fragment)


def test_wav_header_variants_that_are_fine(tmp_path: Path) -> None:
    """Big-endian RIFX, a LIST chunk (odd size, padded) before fmt, 12-bit PCM in a
    16-bit container, an extensible header: the same samples as the plain file."""
    d = tmp_path / "yes"
    d.mkdir()
    values = np.array([0, 256, -512, 1024, 32767, -32768], dtype=np.int16)
    plain = wav(data=values.astype("<i2").tobytes())
    (d / "a.wav").write_bytes(plain)
    (d / "b.wav").write_bytes(wav(form=b"RIFX", order=">", data=values.astype(">i2").tobytes()))
    (d / "c.wav").write_bytes(wav(data=values.astype("<i2").tobytes(), chunks=[LIST, b"fmt",
                                                                              b"data"]))
    (d / "d.wav").write_bytes(wav(bits=12, block_align=2, data=values.astype("<i2").tobytes()))
    ext = struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", 1) + \
        b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 8000, 16000, 2, 16) + ext
    (d / "e.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + 40 + 8 + 12) + b"WAVE"
                              + b"fmt " + struct.pack("<I", 40) + fmt + b"data"
                              + struct.pack("<I", 12) + values.astype("<i2").tobytes())
    recs = load(tmp_path, 'source = "wav"\npath = "yes"\nlabel_from_folder = true')
    assert len(recs) == 5
    for r in recs:
        np.testing.assert_array_equal(r.samples[:, 0], values / np.float32(32768), r.source)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_with_header(shape: tuple, descr: str = "<f4", data: bytes = b"\x00" * 16) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def npz_bytes(**arrays: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in arrays.items():
            z.writestr(f"{name}.npy", content)
    return buf.getvalue()


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("a.npy", npy_bytes(np.array([1, "x", None], dtype=object), allow_pickle=True),
     "holds Python objects (dtype object), which only pickle can load"),
    ("a.npy", npy_bytes(np.zeros(4, dtype=[("x", "<f4"), ("y", "<i2")])),
     "has a structured dtype"),
    ("a.npy", npy_bytes(np.zeros(4, dtype=np.complex64)), "dtype complex64; a numeric array"),
    ("a.npy", npy_bytes(np.array(["1.5", "2"])), "dtype <U3; a numeric array"),
    ("a.npy", npy_bytes(np.float32(3.0)), "has shape (); [T] or [T, C]"),
    ("a.npy", npy_bytes(np.zeros((2, 2, 2))), "has shape (2, 2, 2)"),
    ("a.npy", npy_bytes(np.zeros((0, 3))), "holds no samples (shape (0, 3))"),
    ("a.npy", npy_bytes(np.zeros((4, 0))), "holds no samples (shape (4, 0))"),
    ("a.npy", npy_with_header((10**12,)), "declares shape (1000000000000,) (4,000,000,000,000 "
                                          "bytes), more than kiloml holds"),
    ("a.npy", npy_with_header((1000, 3)), "declares shape (1000, 3) of float32 (12,000 bytes), "
                                          "the file holds 16 after the header (truncated?)"),
    ("a.npy", npy_with_header((-4,)), "a negative dimension"),
    ("a.npy", npy_bytes(np.zeros(3))[:9], "not a valid .npy file"),
    ("a.npy", b"\x93NUMPY\x09\x00" + bytes(20), "NPY format version 9.0 is not supported"),
    ("a.npy", b"hello, world", "not an NPY or NPZ file: it starts with b'hello,'"),
    ("a.npz", npz_bytes(samples=npy_bytes(np.zeros(3)),
                        labels=npy_bytes(np.array(["a", None, "b"], dtype=object), True)),
     "array 'labels': holds Python objects"),
    ("a.npz", npz_bytes(samples=npy_bytes(np.zeros(3)), labels=npy_bytes(np.zeros((3, 2), int))),
     "'labels' has shape (3, 2)"),
    ("a.npz", npz_bytes(samples=npy_bytes(np.zeros(2)),
                        labels=npy_bytes(np.array([b"\xff\xfe", b"a"]))),
     "'labels' holds bytes that are not UTF-8"),
    ("a.npz", npz_bytes(samples=npy_with_header((1000,))),
     "array 'samples': the header declares shape (1000,) of float32"),
    ("a.npz", npz_bytes(samples=npy_bytes(np.zeros(3)), sample_rate_hz=npy_bytes(np.bool_(1))),
     "'sample_rate_hz' must be one positive number"),
    ("a.npz", npz_bytes(x=npy_bytes(np.zeros(3)), y=npy_bytes(np.zeros(3))),
     "NPZ needs an array named 'samples' (has: x, y)"),
    ("a.npz", npz_bytes(**{f"a{i}": npy_bytes(np.zeros(1)) for i in range(65)}),
     "the NPZ archive holds 65 arrays"),
    ("a.npz", npz_bytes(samples=npy_bytes(np.zeros(3)))[:-30], "not a readable NPY/NPZ file"),
], ids=["object", "structured", "complex", "strings", "0-d", "3-d", "0-length", "0-channels",
        "huge-shape", "truncated", "negative-dim", "truncated-header", "bad-version",
        "not-npy", "npz-object-labels", "npz-2d-labels", "npz-bytes-labels",
        "npz-truncated-member", "npz-bool-rate", "npz-no-samples", "npz-too-many",
        "npz-cut"])
def test_malformed_npy_and_npz(tmp_path: Path, name: str, content: bytes,
                               fragment: str) -> None:
    refused(tmp_path, "npy", name, content, fragment)


def test_npy_big_endian_and_fortran_order_read_right(tmp_path: Path) -> None:
    d = tmp_path / "tap"
    d.mkdir()
    x = np.arange(12, dtype=">f8").reshape(6, 2)
    np.save(d / "a.npy", np.asfortranarray(x))
    (r,) = load(tmp_path, 'source = "npy"\npath = "tap"\nsample_rate_hz = 20\n'
                          'label_from_folder = true')
    np.testing.assert_array_equal(r.samples, x.astype(np.float32))


GOOD_CSV = "t,a\n" + "".join(f"{i * 0.02:.2f},{i}\n" for i in range(10))


@pytest.mark.parametrize(("content", "fragment"), [
    (GOOD_CSV.encode("utf-16"), "UTF-16 text (byte-order mark); save it as UTF-8"),
    (GOOD_CSV.encode("utf-16-le"), "a NUL byte at column 2: the CSV file is not text "
                                   "(UTF-16 text without a byte-order mark?)"),
    (GOOD_CSV.replace("0.06,", "0.06,\x00").encode(), ":5: a NUL byte at column 6"),
    ("t,a\n0,1\n0.02,caf\u00e9\n".encode("latin-1"), ":3: byte 0xe9 at column 9 is not UTF-8"),
    (b"t," + b"1" * (2 << 20) + b"\n0,1\n", ":1: line of 2,097,154 bytes"),
    (("," .join(f"c{i}" for i in range(5000)) + "\n").encode(), "the header has 5,000 columns"),
    (("t,a\n0," + "1" * 200_000 + "\n").encode(), ":2: malformed CSV: field larger than"),
    (b"\n,,\n ,\n", "the CSV file has no header: every line is blank"),
    (b"t,a\n0,\"1\n", ":2: malformed CSV: unexpected end of data"),
    (b't,a\n0,"1"2\n', ":2: malformed CSV: ',' expected after '\"'"),
], ids=["utf16-bom", "utf16-no-bom", "nul", "latin1", "long-line", "columns", "big-field",
        "empty-cells", "open-quote", "text-after-quote"])
def test_malformed_csv_text(tmp_path: Path, content: bytes, fragment: str) -> None:
    refused(tmp_path, "csv", "a.csv", content, fragment)


def test_csv_larger_than_the_bound(tmp_path: Path) -> None:
    from kiloml.data.csv_ingest import MAX_CSV_BYTES

    d = tmp_path / "yes"
    d.mkdir()
    with open(d / "a.csv", "wb") as f:  # sparse: no disk used
        f.truncate(MAX_CSV_BYTES + 1)
    refused(tmp_path, "csv", "b.csv", GOOD_CSV.encode(), "the CSV file is "
            f"{MAX_CSV_BYTES + 1:,} bytes, more than kiloml reads", named="a.csv")


def test_csv_bom_crlf_and_cr_line_ends_read_alike(tmp_path: Path) -> None:
    d = tmp_path / "yes"
    d.mkdir()
    (d / "a.csv").write_bytes(GOOD_CSV.encode())
    (d / "b.csv").write_bytes(b"\xef\xbb\xbf" + GOOD_CSV.replace("\n", "\r\n").encode())
    (d / "c.csv").write_bytes(GOOD_CSV.replace("\n", "\r").encode())
    recs = load(tmp_path, 'source = "csv"\npath = "yes"\nlabel_from_folder = true')
    assert [r.channels for r in recs] == [["a"]] * 3
    for r in recs[1:]:
        np.testing.assert_array_equal(r.samples, recs[0].samples)


@pytest.mark.parametrize(("content", "fragment"), [
    (b'name = "caf\xe9"\n', "kiloml.toml:1: byte 0xe9 at column 12 is not UTF-8"),
    ('name = "x"\n'.encode("utf-16"), "the project file is UTF-16 text"),
], ids=["latin1", "utf16"])
def test_project_file_encoding(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / "kiloml.toml").write_bytes(content)
    assert_user_error(run_cli("run", str(tmp_path / "kiloml.toml")), fragment)


def test_project_file_too_large(tmp_path: Path) -> None:
    from kiloml.project import MAX_PROJECT_BYTES

    with open(tmp_path / "kiloml.toml", "wb") as f:
        f.truncate(MAX_PROJECT_BYTES + 1)
    assert_user_error(run_cli("run", str(tmp_path)), "kiloml.toml", "the project file is "
                      f"{MAX_PROJECT_BYTES + 1:,} bytes, more than kiloml reads")


def test_iso_timestamps_with_utc_offsets(tmp_path: Path) -> None:
    """'Z' and '+01:00' offsets are applied (numpy only warns about them); a clock change
    from +01:00 to +02:00 mid-file is one continuous UTC time line."""
    d = tmp_path / "walk"
    d.mkdir()
    utc = np.datetime64("2024-03-31T00:59:59") + np.arange(50) * np.timedelta64(40, "ms")
    cells = [f"{(s + np.timedelta64(1 if i < 25 else 2, 'h'))}"
             f"{'+01:00' if i < 25 else '+0200'}" for i, s in enumerate(utc)]
    (d / "x.csv").write_text("timestamp,a\n" + "".join(f"{c},{i}\n" for i, c in
                                                        enumerate(cells)))
    (d / "z.csv").write_text("timestamp,a\n" + "".join(f"{s}Z,{i}\n" for i, s in
                                                        enumerate(utc)))
    recs = load(tmp_path, 'source = "csv"\npath = "walk"\nsample_rate_hz = 25\n'
                          'label_from_folder = true')
    assert [r.n_samples for r in recs] == [50, 50]


@pytest.mark.parametrize(("cell", "fragment"), [
    ("2024-13-45T00:00", ":7: column 'timestamp': timestamp '2024-13-45T00:00' is not a "
                         "valid date-time"),
    ("12:00:01", ":7: column 'timestamp': timestamp '12:00:01' is not an ISO 8601 date-time"),
])
def test_bad_iso_timestamp_is_named(tmp_path: Path, cell: str, fragment: str) -> None:
    stamps = np.datetime64("2024-03-01T12:00:00") + np.arange(20) * np.timedelta64(40, "ms")
    cells = [str(s) if i != 5 else cell for i, s in enumerate(stamps)]
    content = ("timestamp,a\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells))).encode()
    refused(tmp_path, "csv", "a.csv", content, fragment)
