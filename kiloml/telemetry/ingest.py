"""`kiloml fleet ingest DIR --db URL`: every telemetry file of a folder into the database.

``<device>.bin`` holds 48-byte records back to back, ``<device>.jsonl`` one JSON record a
line (its "device" field, when there, names the device). Bad records (CRC, version,
truncated, ...) are counted per file and skipped; every good record is stored, once: a
record already in the database (same device, same bytes) counts as a duplicate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiloml.errors import KilomlError
from kiloml.optional import needs
from kiloml.telemetry.codec import TelemetryError, iter_records
from kiloml.telemetry.db import DECISION_COLUMNS, devices, open_database, records
from kiloml.telemetry.jsonl import iter_jsonl

with needs("sqlalchemy", "kiloml fleet"):
    from sqlalchemy import Connection, Engine, Table, func, select
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["BATCH", "FileResult", "IngestResult", "ingest_folder", "insert_new",
           "record_row", "summary_lines", "telemetry_files"]

BATCH = 5000  # rows per INSERT: large enough for throughput, small enough for memory
BAD_SHOWN = 3  # bad records named per file in the summary (all are counted)
SUFFIXES = (".bin", ".jsonl")


@dataclass
class FileResult:
    path: Path
    records: int = 0  # good records read
    stored: int = 0  # new in the database
    bad: Counter = field(default_factory=Counter)  # kind -> count
    examples: list[str] = field(default_factory=list)  # the first BAD_SHOWN bad records

    def add_bad(self, where: str, error: TelemetryError) -> None:
        self.bad[error.kind] += 1
        if len(self.examples) < BAD_SHOWN:
            self.examples.append(f"{where}: {error.kind} ({error})")


@dataclass
class IngestResult:
    files: list[FileResult]

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def stored(self) -> int:
        return sum(f.stored for f in self.files)

    @property
    def duplicates(self) -> int:
        return self.records - self.stored

    @property
    def bad(self) -> Counter:
        return sum((f.bad for f in self.files), Counter())

    def summary(self) -> dict[str, Any]:
        return {"files": len(self.files), "records": self.records, "stored": self.stored,
                "duplicates": self.duplicates, "bad": dict(sorted(self.bad.items()))}


def telemetry_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise KilomlError("is not a folder of telemetry files", file=folder)
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def record_row(decoded: dict[str, Any], raw: bytes, device_id: int,
               received_s: float | None = None) -> dict[str, Any]:
    row = {k: decoded[k] for k in ("model_id", "format_version", "n_classes", "uptime_s",
                                   "windows", "uncertain", "top_score_p10", "top_score_p50",
                                   "top_score_p90", "out_of_range_rate", "drift_z",
                                   "ood_score", "entropy", "flags")}
    row.update(zip(DECISION_COLUMNS, decoded["decisions"], strict=True))
    row.update(device_id=device_id, raw=raw, received_s=received_s)
    return row


def _insert(conn: Connection, table: Table):
    """INSERT ... ON CONFLICT DO NOTHING in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def insert_new(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert the rows not yet stored; returns how many were new. Counted as the devices'
    rows after minus before (an index scan): psycopg gives no rowcount for a batched
    insert, and RETURNING makes SQLAlchemy insert row by row (5x slower on PostgreSQL).
    A concurrent writer to the same devices would be counted too."""
    if not rows:
        return 0
    ids = sorted({row["device_id"] for row in rows})
    count = select(func.count()).select_from(records).where(records.c.device_id.in_(ids))
    before = conn.execute(count).scalar_one()
    conn.execute(_insert(conn, records), rows)
    return conn.execute(count).scalar_one() - before


def device_ids(conn: Connection, names: set[str]) -> dict[str, int]:
    """The devices' ids, adding the new ones."""
    if names:
        conn.execute(_insert(conn, devices), [{"name": n} for n in sorted(names)])
    found = conn.execute(select(devices.c.name, devices.c.id).where(devices.c.name.in_(names)))
    return {name: id_ for name, id_ in found}


def _read(path: Path, result: FileResult) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """(device, raw bytes, decoded) of every good record of one file; bad ones counted."""
    if path.suffix == ".bin":
        for offset, raw, rec in iter_records(path.read_bytes()):
            if isinstance(rec, TelemetryError):
                result.add_bad(f"byte {offset}", rec)
            else:
                result.records += 1
                yield path.stem, raw, rec
        return
    for line, rec, raw, device in iter_jsonl(path):
        if isinstance(rec, TelemetryError):
            result.add_bad(f"line {line}", rec)
        else:
            assert raw is not None
            result.records += 1
            yield device or path.stem, raw, rec


def ingest_folder(folder: Path, url: str) -> IngestResult:
    """Every telemetry file of ``folder`` into the database at ``url``. The database is
    opened (and checked reachable) before any file is read; a folder without a single
    good record is an error, with the bad ones counted."""
    paths = telemetry_files(folder)
    if not paths:
        raise KilomlError("holds no telemetry records (no <device>.bin or <device>.jsonl "
                          "file)", file=folder)
    engine = open_database(url)
    try:
        result = IngestResult([_ingest_file(engine, p) for p in paths])
    finally:
        engine.dispose()
    if result.records == 0:
        bad = sum(result.bad.values())
        raise KilomlError(f"holds no telemetry records ({len(paths)} files"
                          + (f", {bad} bad records: {_kinds(result.bad)}" if bad else ", empty")
                          + ")", file=folder)
    return result


def _kinds(bad: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(bad.items()))


def _ingest_file(engine: Engine, path: Path) -> FileResult:
    """One file in one transaction: its good records are all stored or none are."""
    result = FileResult(path)
    batch: list[tuple[str, bytes, dict[str, Any]]] = []
    with engine.begin() as conn:
        ids: dict[str, int] = {}
        for item in _read(path, result):
            batch.append(item)
            if len(batch) >= BATCH:
                result.stored += _store(conn, batch, ids)
                batch = []
        result.stored += _store(conn, batch, ids)
    return result


def _store(conn: Connection, batch: list[tuple[str, bytes, dict[str, Any]]],
           ids: dict[str, int]) -> int:
    new = {device for device, _, _ in batch} - ids.keys()
    ids.update(device_ids(conn, new))
    return insert_new(conn, [record_row(rec, raw, ids[device]) for device, raw, rec in batch])


def summary_lines(result: IngestResult) -> list[str]:
    """What the command prints: the totals, then each file with bad records."""
    s = result.summary()
    bad = sum(s["bad"].values())
    lines = [f"{s['files']} files, {s['records']:,} records: {s['stored']:,} stored, "
             f"{s['duplicates']:,} duplicates; {bad:,} bad"
             + (f" ({_kinds(result.bad)})" if bad else "")]
    for f in result.files:
        if f.bad:
            lines.append(f"  {f.path.name}: {sum(f.bad.values()):,} bad ({_kinds(f.bad)}); "
                         + "; ".join(f.examples))
    return lines
