"""kml_telemetry_v1 codec: round trips, scaling and saturation, every bad-record kind, the
JSON form and docs/telemetry_format.md's worked example."""

from __future__ import annotations

import json
import random
import re
import struct
from pathlib import Path

import pytest

from kiloml.telemetry.codec import (
    RECORD_SIZE,
    TelemetryError,
    crc16,
    decode,
    encode,
    iter_records,
)
from kiloml.telemetry.flags import FLAGS, flag_names, flags_from_names
from kiloml.telemetry.jsonl import from_json, iter_jsonl, to_json, write_jsonl

DOC = Path(__file__).resolve().parents[1] / "docs" / "telemetry_format.md"


def record(**changes) -> dict:
    base = dict(n_classes=4, model_id="0123456789abcdef", uptime_s=3600, windows=7200,
                decisions=[100, 20, 3, 0], uncertain=5, top_score_p10=0.5,
                top_score_p50=0.8, top_score_p90=0.95, out_of_range_rate=0.01, drift_z=1.25,
                ood_score=2.5, entropy=0.3, flags=0b100001)
    base.update(changes)
    return base


def random_record(rng: random.Random) -> bytes:
    body = struct.pack("<HBB8sII6HHBBBBhHHH", 0x544B, 1, rng.randrange(256),
                       rng.randbytes(8), rng.randrange(2**32), rng.randrange(2**32),
                       *[rng.randrange(2**16) for _ in range(7)],
                       *[rng.randrange(256) for _ in range(4)], rng.randrange(-2**15, 2**15),
                       rng.randrange(2**16), rng.randrange(2**16), rng.randrange(2**7))
    return body + struct.pack("<H", crc16(body))


def test_crc_check_value_and_size() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert len(encode(record())) == RECORD_SIZE == 48


def test_every_valid_record_round_trips_bytes_and_dict() -> None:
    rng = random.Random(16)
    for _ in range(2000):
        raw = random_record(rng)
        d = decode(raw)
        assert encode(d) == raw
        assert decode(encode(d)) == d
        assert from_json(json.loads(json.dumps(to_json(d, device="x"))))[0] == raw


def test_scaling_floor_and_saturation_at_both_ends() -> None:
    d = decode(encode(record(top_score_p50=1.0, top_score_p10=0.0, top_score_p90=1.7,
                             out_of_range_rate=-0.2, drift_z=500.0, ood_score=1e9,
                             entropy=1.0)))
    assert (d["top_score_p50"], d["top_score_p10"], d["top_score_p90"]) == (1.0, 0.0, 1.0)
    assert d["out_of_range_rate"] == 0.0
    assert d["drift_z"] == 32767 / 256 and d["ood_score"] == 65535 / 256
    assert d["entropy"] == 1.0
    assert decode(encode(record(drift_z=-1e6)))["drift_z"] == -128.0
    assert decode(encode(record(drift_z=float("-inf"))))["drift_z"] == -128.0
    # toward zero, not rounding: just under a code gives the code below (above, < 0)
    assert decode(encode(record(top_score_p50=0.9999)))["top_score_p50"] == 254 / 255
    assert decode(encode(record(drift_z=-0.001)))["drift_z"] == 0.0
    assert decode(encode(record(drift_z=-1.999)))["drift_z"] == -511 / 256
    assert decode(encode(record(drift_z=-2.0)))["drift_z"] == -2.0
    assert decode(encode(record(ood_score=0.00390)))["ood_score"] == 0.0
    for k in range(256):  # k / 255 is not exact in binary, yet encodes back to k
        assert encode(record(top_score_p50=k / 255))[35] == k


def test_counters_saturate_and_fold_into_the_last_slot() -> None:
    d = decode(encode(record(decisions=[70000, 1, 2, 3, 4, 5, 6, 65535], uncertain=10**6)))
    assert d["decisions"] == [65535, 1, 2, 3, 4, 65535]
    assert d["uncertain"] == 65535
    assert decode(encode(record(decisions=[1, 2, 3, 4, 5, 6, 7])))["decisions"] == \
        [1, 2, 3, 4, 5, 13]


@pytest.mark.parametrize("changes, words", [
    (dict(uptime_s=2**32), "uptime_s"), (dict(windows=-1), "windows"),
    (dict(n_classes=256), "n_classes"), (dict(flags=1 << 16), "flags"),
    (dict(model_id="0123"), "model_id"), (dict(top_score_p50=float("nan")), "NaN"),
    (dict(decisions=[1, -2]), "decisions[1]"), (dict(format_version=2), "format_version"),
    (dict(uncertain=1.5), "uncertain")])
def test_values_that_cannot_be_encoded(changes: dict, words: str) -> None:
    with pytest.raises(TelemetryError) as info:
        encode(record(**changes))
    assert info.value.kind == "field" and words in str(info.value)
    incomplete = record()
    del incomplete["entropy"]
    with pytest.raises(TelemetryError, match="entropy"):
        encode(incomplete)


def test_every_bad_record_kind() -> None:
    good = encode(record())
    with pytest.raises(TelemetryError) as info:
        decode(good[:47])
    assert info.value.kind == "truncated"
    with pytest.raises(TelemetryError) as info:
        decode(b"XT" + good[2:])
    assert info.value.kind == "magic"
    v2 = bytearray(good)
    v2[2] = 2
    v2[46:] = struct.pack("<H", crc16(bytes(v2[:46])))  # a valid CRC: the version decides
    with pytest.raises(TelemetryError) as info:
        decode(bytes(v2))
    assert info.value.kind == "version" and "version 2" in str(info.value)
    for byte in range(48):  # a flipped bit anywhere past the version is a CRC error
        if byte < 3:
            continue
        bad = bytearray(good)
        bad[byte] ^= 0x10
        with pytest.raises(TelemetryError) as info:
            decode(bytes(bad))
        assert info.value.kind == "crc", byte


def test_a_stream_with_bad_records_keeps_every_good_one() -> None:
    rng = random.Random(3)
    goods = [random_record(rng) for _ in range(6)]
    corrupt = bytearray(goods[1])
    corrupt[20] ^= 1
    v9 = bytearray(goods[2])
    v9[2] = 9
    stream = (goods[0] + bytes(corrupt) + bytes(v9) + goods[3] + b"\x00\x11\x22"
              + goods[4] + goods[5] + goods[0][:20])
    kinds = [(off, r.kind if isinstance(r, TelemetryError) else "ok")
             for off, _, r in iter_records(stream)]
    assert kinds == [(0, "ok"), (48, "crc"), (96, "version"), (144, "ok"), (192, "magic"),
                     (195, "ok"), (243, "ok"), (291, "truncated")]
    raws = [raw for _, raw, r in iter_records(stream) if isinstance(r, dict)]
    assert raws == [goods[0], goods[3], goods[4], goods[5]]
    assert b"".join(raw for _, raw, _ in iter_records(stream)) == stream  # nothing lost


def test_flag_names_one_table() -> None:
    assert FLAGS[0] == "INPUT_DRIFT" and FLAGS[6] == "CHANGE"
    assert flag_names(0b1000001) == ["INPUT_DRIFT", "CHANGE"]
    assert flag_names(1 << 9) == ["BIT9"]
    assert flags_from_names(flag_names(0xFFFF)) == 0xFFFF


def test_json_lines_round_trip_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    write_jsonl(path, [record(), record(uptime_s=7200, flags=0)], device="dev")
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    assert first["device"] == "dev" and first["model_id"] == "0123456789abcdef"
    assert first["flags"] == 33 and first["flag_names"] == ["INPUT_DRIFT",
                                                              "OOD"]
    with open(path, "a") as f:
        f.write("\nnot json\n[1, 2]\n")
        f.write(json.dumps({**first, "flag_names": ["OOD"]}) + "\n")
        f.write(json.dumps({**first, "format_version": 3}) + "\n")
    got = list(iter_jsonl(path))
    assert [n for n, *_ in got] == [1, 2, 4, 5, 6, 7]
    assert encode(got[0][1]) == encode(record()) == got[0][2] and got[0][3] == "dev"
    assert [r.kind for _, r, *_ in got[2:]] == ["json", "json", "field", "version"]


def test_worked_example_in_the_spec_is_what_the_encoder_writes() -> None:
    text = DOC.read_text()
    example = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    dump = re.search(r"```text\n(.*?)\n```", text, re.S).group(1)
    raw = bytes.fromhex("".join(line.split(None, 1)[1] for line in dump.splitlines()))
    assert encode(example) == raw
    assert to_json(decode(raw), device=example["device"]) == example
    assert f"CRC 0x{crc16(raw[:46]):04X}" in text


def test_flag_table_agrees_with_the_monitor() -> None:
    monitor = pytest.importorskip("kiloml.monitor.flags", reason="the monitor stage is not "
                                  "in this checkout yet")
    assert {name: 1 << bit for bit, name in FLAGS.items()} == dict(monitor.FLAGS)
