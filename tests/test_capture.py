"""kiloml capture on a real pseudo-terminal: a thread plays the device (text lines or kml
frames), `kiloml capture` records it; the protocol's codec; every bad input as one line."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import serial
from capture_device import PtyDevice, read_recording
from conftest import assert_user_error, run_cli

from kiloml.capture.kml_protocol import (
    FrameDecoder,
    Hello,
    Sample,
    cobs_decode,
    cobs_encode,
    crc16_ccitt_false,
    encode_end,
    encode_hello,
    encode_sample,
)
from kiloml.capture.recording import float32_text
from kiloml.data.csv_ingest import read_csv_recording
from kiloml.project import DataConfig

HELLO = Hello(["ax", "ay", "az"], ["m/s2", "m/s2", "m/s2"], 200.0)


@pytest.fixture
def device():
    dev = PtyDevice()
    yield dev
    dev.close()


def capture(dev: PtyDevice, out: Path, *args: str, name: str = "rec"):
    return run_cli("capture", "--port", dev.path, "--label", "walk", "--out", str(out),
                   "--name", name, *args)


def text_lines(n: int) -> list[list[str]]:
    return [[str(i), f"{0.25 * i:.2f}", f"-{i}.5e-3"] for i in range(n)]


def kml_values(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    v = (rng.standard_normal((n, 3)) * 9.81).astype(np.float32)
    # values whose bits a careless decimal round trip would change
    v[1] = [np.float32(-0.0), np.float32(1e-45), np.float32(3.4028235e38)]
    v[2] = [np.float32(0.1), np.float32(1 / 3), np.float32(16777217.0)]
    return v


def kml_stream(values: np.ndarray, *, hello_every: int = 25, skip: frozenset = frozenset(),
               corrupt: frozenset = frozenset()) -> list[bytes]:
    chunks = []
    for i, row in enumerate(values):
        chunk = encode_hello(HELLO) if i % hello_every == 0 else b""
        if i not in skip:
            frame = bytearray(encode_sample(i, 5000 * i, row.astype("<f4").tobytes()))
            if i in corrupt:
                frame[4] ^= 0x10  # one flipped bit: the CRC catches it
            chunk += bytes(frame)
        chunks.append(chunk)
    return chunks


def kiloml_reads(path: Path, rate: float) -> np.ndarray:
    """The recording as `kiloml run` loads it (timestamps checked against the rate)."""
    cfg = DataConfig(source="csv", path=str(path.parent), sample_rate_hz=rate,
                     label_from_folder=True)
    samples, got_rate, _, _, _ = read_csv_recording(path, cfg, str(path), label=None,
                                                           group=None)
    assert got_rate == rate
    return samples


# --- the codec ---------------------------------------------------------------------------

def test_crc16_ccitt_false_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


def test_cobs_round_trip_and_no_zero_on_the_wire() -> None:
    rng = np.random.default_rng(1)
    for n in [0, 1, 253, 254, 255, 508, 1000]:
        for zeros in (0.0, 0.3, 1.0):
            data = bytes(np.where(rng.random(n) < zeros, 0, rng.integers(1, 256, n))
                         .astype(np.uint8))
            wire = cobs_encode(data)
            assert 0 not in wire
            assert cobs_decode(wire) == data
    assert cobs_decode(b"\x05ab") is None  # a block running past the end


def test_decoder_resynchronizes_after_corruption_and_any_chunking() -> None:
    values = kml_values(40)
    stream = b"garbage from before" + b"".join(
        kml_stream(values, hello_every=1000, corrupt=frozenset({5, 6, 20})))
    stream = stream[:300] + stream[310:]  # ten bytes lost in the middle of a frame
    decoder = FrameDecoder()
    got = []
    for i in range(0, len(stream), 7):
        got += decoder.feed(stream[i:i + 7])
    samples = [m for m in got if isinstance(m, Sample)]
    seqs = [s.seq for s in samples]
    lost = set(range(40)) - set(seqs)
    assert {5, 6, 20} <= lost and len(lost) <= 5  # the cut spoils one or two frames
    # each bad frame is one corrupt count; a cut that took a delimiter merged two frames
    assert len(lost) - 1 <= decoder.corrupt <= len(lost)
    for s in samples:
        assert s.values == values[s.seq].astype("<f4").tobytes()
    assert isinstance(got[0], Hello) and got[0] == HELLO


def test_float32_text_reads_back_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[np.isfinite(bits)]
    back = np.array([np.float32(float(t)) for t in float32_text(bits)], dtype=np.float32)
    assert back.tobytes() == bits.tobytes()


# --- captures on a pty -------------------------------------------------------------------

def test_text_capture_records_the_lines_as_sent(device: PtyDevice, tmp_path: Path) -> None:
    sent = text_lines(400)
    device.play([(",".join(row) + "\r\n").encode() for row in sent], 100.0)
    result = capture(device, tmp_path, "--seconds", "1", "--rate-hz", "100",
                     "--channels", "ax,ay,az")
    assert result.exit_code == 0, result.stderr
    header, rows = read_recording(tmp_path / "walk" / "rec.csv")
    assert header == ["t", "ax", "ay", "az"]
    assert len(rows) == 100
    first = int(rows[0][1])  # the first line received is dropped (maybe partial)
    assert first >= 1
    assert [r[1:] for r in rows] == sent[first:first + 100]
    assert [float(r[0]) for r in rows] == [i / 100 for i in range(100)]
    samples = kiloml_reads(tmp_path / "walk" / "rec.csv", 100.0)
    expect = np.array(sent[first:first + 100], dtype=np.float64).astype(np.float32)
    assert samples.tobytes() == expect.tobytes()
    report = json.loads((tmp_path / "walk" / "rec.capture.json").read_text())
    assert report["protocol"] == "text" and report["samples"] == 100
    assert report["rate_hz"] > 0  # wall clock: measured and checked by the capture only
    assert report["arrival"]["interval"]["std_ms"] >= 0
    assert "rate" in result.stdout and "jitter" in result.stdout


def test_text_capture_tab_separated_without_rate(device: PtyDevice, tmp_path: Path) -> None:
    device.play([f"{i}\t{i * 2}\n".encode() for i in range(200)], 100.0)
    result = capture(device, tmp_path, "--seconds", "0.5")
    assert result.exit_code == 0, result.stderr
    header, rows = read_recording(tmp_path / "walk" / "rec.csv")
    assert header == ["t", "ch0", "ch1"]
    assert all(int(b) == 2 * int(a) for _, a, b in rows)
    report = json.loads((tmp_path / "walk" / "rec.capture.json").read_text())
    assert report["rate_check"] == "not checked (no --rate-hz)"


def test_kml_capture_is_bit_exact_and_counts_drops_and_crc_errors(
        device: PtyDevice, tmp_path: Path) -> None:
    values = kml_values(400)
    skip, corrupt = frozenset(range(30, 400, 40)), frozenset(range(45, 400, 50))
    device.play(kml_stream(values, skip=skip, corrupt=corrupt), 200.0)
    result = capture(device, tmp_path, "--seconds", "1", "--protocol", "kml",
                     "--rate-hz", "200")
    assert result.exit_code == 0, result.stderr
    header, rows = read_recording(tmp_path / "walk" / "rec.csv")
    assert header == ["t", "ax", "ay", "az"]
    report = json.loads((tmp_path / "walk" / "rec.capture.json").read_text())
    frames = report["frames"]
    first, last = frames["first_seq"], frames["last_seq"]
    assert last - first + 1 == 200  # one second of sequence numbers at 200 Hz
    expected = [i for i in range(first, last + 1) if i not in skip and i not in corrupt]
    assert len(rows) == len(expected) == frames["samples_received"]
    assert frames["dropped"] == sum(first <= i <= last for i in skip | corrupt)
    assert frames["corrupt"] == sum(first <= i <= last for i in corrupt)
    # bit for bit: the CSV text and what `kiloml run` reads back
    got = np.array([[np.float32(float(c)) for c in r[1:]] for r in rows], dtype=np.float32)
    assert got.tobytes() == values[expected].tobytes()
    assert [r[0] for r in rows] == [f"{(i - first) * 5000 / 1e6:.6f}" for i in expected]
    assert report["device"]["rate_hz"] == pytest.approx(200.0)
    assert report["device"]["interval"]["std_ms"] == pytest.approx(0.0)
    assert f"{frames['corrupt']} corrupt" in result.stdout
    assert f"{frames['dropped']} dropped" in result.stdout
    cfg = DataConfig(source="csv", path=str(tmp_path), sample_rate_hz=200.0,
                     label_from_folder=True)
    samples = read_csv_recording(tmp_path / "walk" / "rec.csv", cfg, "rec.csv", label=None,
                                 group=None)[0]
    assert samples.tobytes() == values[expected].tobytes()


def test_kml_end_frame_ends_the_capture(device: PtyDevice, tmp_path: Path) -> None:
    values = kml_values(60)
    chunks = kml_stream(values, hello_every=1000)
    chunks[-1] += encode_end(60)
    device.play(chunks, 500.0, wait_open=True)
    result = capture(device, tmp_path, "--seconds", "100", "--protocol", "kml")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "walk" / "rec.capture.json").read_text())
    assert report["end"] == "end frame" and report["frames"]["samples_sent"] == 60


# --- bad input: one line, exit 2 ---------------------------------------------------------

def test_port_that_does_not_exist(tmp_path: Path) -> None:
    result = run_cli("capture", "--port", "/dev/ttyKILOML-none", "--label", "walk",
                     "--out", str(tmp_path))
    assert_user_error(result, "/dev/ttyKILOML-none", "does not exist")


def test_port_that_is_busy(device: PtyDevice, tmp_path: Path) -> None:
    other = serial.Serial(device.path, 115200, exclusive=True)
    try:
        assert_user_error(capture(device, tmp_path), device.path, "is busy")
    finally:
        other.close()
    assert not list((tmp_path / "walk").glob("*.csv"))


def test_baud_rate_the_port_refuses(device: PtyDevice, tmp_path: Path) -> None:
    # A pty takes every rate termios can carry; this one it cannot.
    assert_user_error(capture(device, tmp_path, "--baud", "4000000000"),
                      "refuses baud rate 4000000000")
    assert_user_error(capture(device, tmp_path, "--baud", "0"), "--baud 0")


def test_device_that_sends_nothing(device: PtyDevice, tmp_path: Path) -> None:
    line = assert_user_error(capture(device, tmp_path, "--timeout", "0.3"),
                             "no data from the device in 0.3 s (timeout)")
    assert device.path in line
    assert not (tmp_path / "walk" / "rec.csv").exists()


def test_text_line_with_the_wrong_number_of_values(device: PtyDevice, tmp_path: Path) -> None:
    lines = [f"{i},{i},{i}\n".encode() for i in range(40)]
    lines[20] = b"20,20\n"
    device.play(lines, 200.0)
    line = assert_user_error(capture(device, tmp_path, "--seconds", "5"),
                             "2 values, expected 3", "'20,20'")
    assert "line " in line and "(sample " in line
    assert not (tmp_path / "walk" / "rec.csv").exists()


def test_text_value_that_is_not_a_number(device: PtyDevice, tmp_path: Path) -> None:
    lines = [f"{i},{i}\n".encode() for i in range(40)]
    lines[15] = b"15,n/a\n"
    device.play(lines, 200.0)
    assert_user_error(capture(device, tmp_path, "--seconds", "5"),
                      "value 2 is 'n/a', not a number")


def test_text_rate_off_the_declared_one(device: PtyDevice, tmp_path: Path) -> None:
    device.play([f"{i},{i}\n".encode() for i in range(300)], 100.0)
    assert_user_error(capture(device, tmp_path, "--seconds", "1.2", "--rate-hz", "50"),
                      "off --rate-hz 50", "nothing was written")
    assert not (tmp_path / "walk" / "rec.csv").exists()


def test_kml_rate_the_device_declares_differs(device: PtyDevice, tmp_path: Path) -> None:
    device.play(kml_stream(kml_values(100)), 200.0)
    assert_user_error(capture(device, tmp_path, "--protocol", "kml", "--rate-hz", "100"),
                      "declares 200 Hz", "--rate-hz says 100")


def test_kml_protocol_on_a_text_device(device: PtyDevice, tmp_path: Path) -> None:
    device.play([f"{i},{i}\n".encode() for i in range(300)], 300.0)
    assert_user_error(capture(device, tmp_path, "--protocol", "kml", "--timeout", "0.5"),
                      "no valid kml frame", "check --baud and --protocol")


def test_crc_errors_are_counted_not_fatal(device: PtyDevice, tmp_path: Path) -> None:
    values = kml_values(300)
    device.play(kml_stream(values, corrupt=frozenset(range(0, 300, 3))), 300.0)
    result = capture(device, tmp_path, "--protocol", "kml", "--seconds", "0.5")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "walk" / "rec.capture.json").read_text())
    assert report["frames"]["corrupt"] >= 30
    assert report["frames"]["samples_received"] + report["frames"]["dropped"] == 100


@pytest.mark.parametrize("protocol", ["kml", "text"])
def test_device_vanishing_keeps_the_whole_samples(device: PtyDevice, tmp_path: Path,
                                                  protocol: str) -> None:
    values = kml_values(80)
    if protocol == "kml":
        chunks = kml_stream(values, hello_every=1000)
        tail = encode_sample(80, 400000, values[0].astype("<f4").tobytes())[:9]
    else:
        chunks = [(",".join(float32_text(row)) + "\n").encode() for row in values]
        tail = b"1.5,2.5"  # half a line
    device.play(chunks, 400.0, close_after=tail)
    result = capture(device, tmp_path, "--protocol", protocol, "--seconds", "10")
    assert_user_error(result, "the device vanished", "kept the", "whole samples",
                      "rec.csv")
    path = tmp_path / "walk" / "rec.csv"
    _, rows = read_recording(path)
    report = json.loads((tmp_path / "walk" / "rec.capture.json").read_text())
    assert report["end"] == "vanished" and report["partial_bytes_dropped"] == len(tail)
    got = np.array([[np.float32(float(c)) for c in r[1:]] for r in rows], dtype=np.float32)
    if protocol == "kml":
        first = report["frames"]["first_seq"]
        assert got.tobytes() == values[first:first + len(rows)].tobytes()
        assert first + len(rows) == 80
    else:
        assert got.tobytes() == values[80 - len(rows):].tobytes()
    assert len(rows) >= 60
    kiloml_reads(path, 200.0 if protocol == "kml" else report["recording_rate_hz"])


def test_recording_names_and_labels(device: PtyDevice, tmp_path: Path) -> None:
    assert_user_error(run_cli("capture", "--port", device.path, "--label", "../up",
                              "--out", str(tmp_path)), "--label '../up'")
    (tmp_path / "walk").mkdir()
    (tmp_path / "walk" / "rec.csv").write_text("t,a\n0,1\n")
    assert_user_error(capture(device, tmp_path), "rec.csv", "does not overwrite")
    assert (tmp_path / "walk" / "rec.csv").read_text() == "t,a\n0,1\n"
    assert_user_error(capture(device, tmp_path, "--channels", "t,a", name="other"),
                      "channel name 't'")
    assert_user_error(capture(device, tmp_path, "--protocol", "csv", name="other"),
                      "--protocol 'csv'")


def test_sample_frame_layout_is_documented() -> None:
    """docs/capture_protocol.md's worked example is what the encoder writes."""
    doc = (Path(__file__).parent.parent / "docs" / "capture_protocol.md").read_text()
    wire = encode_sample(1, 20000, struct.pack("<f", 1.5))
    assert wire.hex(" ") in doc
    assert f"0x{crc16_ccitt_false(b'123456789'):04X}" in doc
    assert os.path.exists(Path(__file__).parent.parent / "kiloml" / "runtime"
                          / "kml_capture.h")
