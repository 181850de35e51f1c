"""`kiloml fleet ingest` and `kiloml fleet report`: SQLite in a temporary folder and a real
PostgreSQL server (tests/pg_server.py starts it once per session), synthetic devices
whose monitor flags go up from some time on."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_user_error, run_cli
from pg_server import postgres_server, postgres_url  # noqa: F401  (fixtures)

from kiloml.telemetry.codec import encode
from kiloml.telemetry.jsonl import write_jsonl

MODEL_A, MODEL_B = "00112233445566aa", "00112233445566bb"
PERIOD_S = 600


def device_records(n: int, onset: int | None = None, model_id: str = MODEL_A,
                   seed: int = 0) -> list[dict]:
    """n records every PERIOD_S; from record ``onset`` on the input drifts and the monitor
    flags INPUT_DRIFT (then OOD too)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        drifting = onset is not None and i >= onset
        z = rng.uniform(0, 1.5) + (3 + 0.2 * (i - onset) if drifting else 0)
        flags = (1 | (32 if i >= onset + 3 else 0)) if drifting else 0
        out.append(dict(n_classes=4, model_id=model_id, uptime_s=(i + 1) * PERIOD_S,
                        windows=(i + 1) * 1200, decisions=[900, 200, 80, 20], uncertain=25,
                        top_score_p10=0.5, top_score_p50=0.85 - (0.2 if drifting else 0),
                        top_score_p90=0.97, out_of_range_rate=0.2 if drifting else 0.01,
                        drift_z=z, ood_score=1.0 + z, entropy=0.3, flags=flags))
    return out


def write_bin(path: Path, recs: list[dict], tail: bytes = b"") -> bytes:
    data = b"".join(encode(r) for r in recs) + tail
    path.write_bytes(data)
    return data


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """Six devices: two drifting (at records 20 and 35), one on a second model version, one
    sent as JSON lines, one .bin with a corrupt record, a foreign version and a cut tail."""
    folder = tmp_path / "telemetry"
    folder.mkdir()
    for k in range(4):
        write_bin(folder / f"dev-{k}.bin", device_records(48, seed=k))
    write_bin(folder / "dev-drift1.bin", device_records(48, onset=20, seed=10))
    write_jsonl(folder / "dev-drift2.jsonl", device_records(48, onset=35, seed=11))
    write_bin(folder / "dev-v2.bin", device_records(30, model_id=MODEL_B, seed=12))
    data = bytearray(write_bin(folder / "dev-bad.bin", device_records(10, seed=13)))
    data[48 * 2 + 30] ^= 0xFF  # record 2: CRC
    data[48 * 5 + 2] = 7  # record 5: an unknown version
    (folder / "dev-bad.bin").write_bytes(bytes(data) + encode(device_records(11)[10])[:30])
    (folder / "notes.txt").write_text("not telemetry\n")
    return folder


def ingest(folder: Path, url: str) -> tuple[int, str]:
    result = run_cli("fleet", "ingest", str(folder), "--db", url)
    assert result.exit_code == 0, result.stderr
    return result.exit_code, result.stdout


def check_ingest(folder: Path, url: str) -> None:
    _, out = ingest(folder, url)
    good = 4 * 48 + 48 + 48 + 30 + 8
    assert out.splitlines()[0] == (f"8 files, {good} records: {good} stored, 0 duplicates; "
                                   "3 bad (1 crc, 1 truncated, 1 version)"), out
    assert "dev-bad.bin: 3 bad (1 crc, 1 truncated, 1 version); byte 96: crc" in out, out
    _, again = ingest(folder, url)  # idempotent: nothing new
    assert again.splitlines()[0].startswith(f"8 files, {good} records: 0 stored, {good} "
                                            "duplicates"), again
    # the same records again, as JSON lines of another file: still stored once
    write_jsonl(folder / "copy.jsonl", device_records(48, seed=0), device="dev-0")
    _, third = ingest(folder, url)
    assert third.splitlines()[0].startswith(f"9 files, {good + 48} records: 0 stored"), third


def test_ingest_into_sqlite_is_idempotent_and_counts_bad_records(fleet_dir: Path,
                                                                tmp_path: Path) -> None:
    check_ingest(fleet_dir, f"sqlite:///{tmp_path / 'fleet.db'}")


def test_ingest_into_a_real_postgresql(fleet_dir: Path, postgres_url: str) -> None:  # noqa: F811
    check_ingest(fleet_dir, postgres_url)
    report = run_cli("fleet", "report", "--db", postgres_url, "--out",
                     str(fleet_dir.parent / "pg.html"), "--json",
                     str(fleet_dir.parent / "pg.json"))
    assert report.exit_code == 0, report.stderr
    fleet = json.loads((fleet_dir.parent / "pg.json").read_text())
    assert {d["device"] for d in fleet["devices"] if d["alarm"]} == {"dev-drift1", "dev-drift2"}


def test_unreachable_database_is_one_line(fleet_dir: Path) -> None:
    result = run_cli("fleet", "ingest", str(fleet_dir), "--db",
                     "postgresql://kiloml:secret@127.0.0.1:1/x")
    line = assert_user_error(result, "--db", "cannot reach the database",
                             "postgresql://kiloml:***@127.0.0.1:1/x", "Connection refused")
    assert "secret" not in line


def test_bad_database_urls_are_one_line(fleet_dir: Path, tmp_path: Path) -> None:
    assert_user_error(run_cli("fleet", "ingest", str(fleet_dir), "--db", "not a url"),
                      "is not a database URL")
    assert_user_error(run_cli("fleet", "ingest", str(fleet_dir), "--db", "mysql://h/db"),
                      "SQLite or PostgreSQL")
    assert_user_error(run_cli("fleet", "ingest", str(fleet_dir), "--db",
                              f"sqlite:///{tmp_path / 'no' / 'such' / 'f.db'}"),
                      "cannot reach the database")


def test_folder_without_records_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    db = f"sqlite:///{tmp_path / 'f.db'}"
    assert_user_error(run_cli("fleet", "ingest", str(empty), "--db", db),
                      "holds no telemetry records")
    (empty / "d.bin").write_bytes(b"")
    (empty / "e.jsonl").write_text("\n{\"broken\n")
    assert_user_error(run_cli("fleet", "ingest", str(empty), "--db", db),
                      "holds no telemetry records (2 files, 1 bad records: 1 json)")
    assert_user_error(run_cli("fleet", "ingest", str(tmp_path / "missing"), "--db", db),
                      "is not a folder")


def test_report_ranks_devices_by_alarm(fleet_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    ingest(fleet_dir, db)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({
        "library": {"model_id": MODEL_A},
        "monitor": {"reference": {"top_score_p50": 0.86, "drift_z": 0.7, "ood_score": 1.7}}}))
    out, js = tmp_path / "fleet.html", tmp_path / "fleet.json"
    result = run_cli("fleet", "report", "--db", db, "--out", str(out), "--json", str(js),
                     "--run", str(run))
    assert result.exit_code == 0, result.stderr
    assert "8 devices, 326 records, 2 in alarm: dev-drift1, dev-drift2" in result.stdout
    fleet = json.loads(js.read_text())
    ranked = fleet["devices"]
    assert [d["device"] for d in ranked[:2]] == ["dev-drift1", "dev-drift2"]
    assert not any(d["alarm"] for d in ranked[2:])
    first = {d["device"]: d["first_alarm_s"] for d in ranked}
    # an alarm is 2 consecutive flagged records: known at the second one
    assert first["dev-drift1"] == 22 * PERIOD_S and first["dev-drift2"] == 37 * PERIOD_S
    assert first["dev-0"] is None
    drift1 = ranked[0]
    assert drift1["records"] == 48 and drift1["flagged_records"] == 28
    assert drift1["flags"] == ["INPUT_DRIFT", "OOD"] and drift1["model_ids"] == [MODEL_A]
    assert [(a["device"], a["start_s"], a["records"]) for a in fleet["alarms"]] == \
        [("dev-drift1", 21 * PERIOD_S, 28), ("dev-drift2", 36 * PERIOD_S, 13)]
    models = {m["model_id"]: m for m in fleet["models"]}
    assert models[MODEL_A]["devices"] == 7 and models[MODEL_B]["records"] == 30
    assert models[MODEL_A]["reference"]["top_score_p50"] == 0.86
    assert models[MODEL_B]["reference"] is None  # the reference is model A's
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 3
    assert "2 of 8 devices in alarm" in text and "ongoing" in text
    assert text.index("dev-drift1") < text.index("dev-0")
    # --confirm 1: the first flagged record is the alarm
    again = run_cli("fleet", "report", "--db", db, "--out", str(out), "--json", str(js),
                    "--confirm", "1")
    assert again.exit_code == 0, again.stderr
    first = {d["device"]: d["first_alarm_s"] for d in json.loads(js.read_text())["devices"]}
    assert first["dev-drift1"] == 21 * PERIOD_S and first["dev-drift2"] == 36 * PERIOD_S
    assert_user_error(run_cli("fleet", "report", "--db", db, "--out", str(out), "--confirm",
                              "0"), "--confirm: must be at least 1, not 0")


def test_report_bad_input(tmp_path: Path) -> None:
    db_file = tmp_path / "f.db"
    db, out = f"sqlite:///{db_file}", tmp_path / "f.html"
    assert_user_error(run_cli("fleet", "report", "--db", db, "--out", str(out)),
                      "no such database file")
    assert not db_file.exists()  # not created by the report
    sqlite3.connect(db_file).close()
    assert_user_error(run_cli("fleet", "report", "--db", db, "--out", str(out)),
                      "holds no fleet telemetry")
    assert_user_error(run_cli("fleet", "report", "--db", db, "--out", str(db_file)),
                      "--out", "the database")
    (tmp_path / "run").mkdir()
    assert_user_error(run_cli("fleet", "report", "--db", db, "--out", str(out), "--run",
                              str(tmp_path / "run")), "no metrics.json")
    assert_user_error(run_cli("fleet", "report", "--db", db, "--out",
                              str(tmp_path / "run" / "metrics.json"), "--run",
                              str(tmp_path / "run")), "--out", "the run's metrics.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "d.jsonl").write_text("[]\n")
    (empty / "d.bin").write_bytes(encode(device_records(1)[0]))
    ingest(empty, db)
    with sqlite3.connect(db_file) as conn:
        conn.execute("DELETE FROM records")
    assert_user_error(run_cli("fleet", "report", "--db", db, "--out", str(out)),
                      "holds no telemetry records")
    assert not out.exists()


@pytest.mark.parametrize("module, args, words", [
    ("sqlalchemy", [], "kiloml fleet needs SQLAlchemy, which is not installed"),
    ("psycopg", ["--db", "postgresql://x@127.0.0.1:1/y"],
     "a PostgreSQL database needs psycopg, which is not installed")])
def test_missing_fleet_extra_is_one_line(tmp_path: Path, module: str, args: list[str],
                                         words: str) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    write_bin(folder / "d.bin", device_records(2))
    script = (f"import sys; sys.modules[{module!r}] = None\n"
              "from kiloml.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", script, "fleet", "ingest", str(folder), *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"kiloml: error: {'--db: ' if args else ''}"
                                                f"{words}: pip install 'kiloml[fleet]'"]
