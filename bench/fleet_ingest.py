"""Fleet telemetry throughput: `kiloml fleet ingest` into SQLite and into a real PostgreSQL
(Debian's server, started and stopped here as tests/pg_server.py does), the same files
ingested again (every record a duplicate), and `kiloml fleet report` on the result.

Synthetic records: --devices devices x (--records / --devices) records each, 48-byte
kml_telemetry_v1 in <device>.bin files, one device in 20 drifting (flags from half-way).
Wall-clock figures of this machine (2 cores shared), not asserted anywhere.

Writes bench/results/fleet.json and bench/results/fleet.md.
Usage: python bench/fleet_ingest.py [--records 1000000] [--devices 1000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = Path(os.environ.get("KILOML_BENCH_RESULTS", ROOT / "bench" / "results"))

from kiloml.telemetry.codec import encode  # noqa: E402
from kiloml.telemetry.fleet_report import write_fleet_report  # noqa: E402
from kiloml.telemetry.ingest import ingest_folder  # noqa: E402

PERIOD_S = 600


def write_fleet(folder: Path, devices: int, per_device: int) -> int:
    """The telemetry files; returns the number of bytes written."""
    total = 0
    for d in range(devices):
        drifting = d % 20 == 0
        chunks = []
        for i in range(per_device):
            late = drifting and i >= per_device // 2
            z = 0.3 + (i % 17) / 17 + (2.5 if late else 0.0)
            chunks.append(encode(dict(
                n_classes=7, model_id="5eed" + f"{d % 3:012x}", uptime_s=(i + 1) * PERIOD_S,
                windows=(i + 1) * 600, decisions=[400, 100, 50, 25, 12, 8, 5],
                uncertain=d % 9, top_score_p10=0.55, top_score_p50=0.8 - (0.15 if late else 0),
                top_score_p90=0.96, out_of_range_rate=0.1 if late else 0.004, drift_z=z,
                ood_score=1.2 + z, entropy=0.25, flags=33 if late else 0)))
        data = b"".join(chunks)
        (folder / f"device-{d:05d}.bin").write_bytes(data)
        total += len(data)
    return total


def timed(fn, *args):
    t = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t


def measure(name: str, url: str, folder: Path, work: Path) -> dict:
    first, t_first = timed(ingest_folder, folder, url)
    again, t_again = timed(ingest_folder, folder, url)
    fleet, t_report = timed(write_fleet_report, url, work / f"{name}.html",
                            work / f"{name}.json", None)
    assert first.stored == first.records and again.stored == 0, (first.summary(),
                                                                  again.summary())
    row = {"database": name, "records": first.records, "ingest_s": round(t_first, 2),
           "ingest_records_per_s": round(first.records / t_first),
           "reingest_s": round(t_again, 2),
           "reingest_records_per_s": round(again.records / t_again),
           "report_s": round(t_report, 2), "devices": len(fleet["devices"]),
           "in_alarm": sum(d["alarm"] for d in fleet["devices"]),
           "report_bytes": (work / f"{name}.html").stat().st_size}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    per_device = args.records // args.devices
    rows = []
    with tempfile.TemporaryDirectory(prefix="kiloml-fleet-bench-") as tmp:
        work = Path(tmp)
        folder = work / "telemetry"
        folder.mkdir()
        size, t_write = timed(write_fleet, folder, args.devices, per_device)
        print(f"{args.devices * per_device:,} records ({size:,} B) written in {t_write:.1f} s",
              flush=True)
        rows.append(measure("sqlite", f"sqlite:///{work / 'fleet.db'}", folder, work))
        if not args.no_postgres:
            from pg_server import PostgresServer

            server = PostgresServer()
            try:
                server.start()
                rows.append(measure("postgresql", server.url(), folder, work))
            finally:
                server.stop()
    import sqlalchemy

    result = {"records": args.devices * per_device, "devices": args.devices,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__,
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "fleet.md").write_text(markdown(result))


def markdown(result: dict) -> str:
    lines = ["# Fleet telemetry: ingest and report", "",
             f"`python bench/fleet_ingest.py`: {result['records']:,} kml_telemetry_v1 records "
             f"(48 B) from {result['devices']:,} devices in .bin files; one device in 20 "
             "drifting with flags from half-way. Ingest = `kiloml fleet ingest` (decode, CRC, "
             "INSERT ... ON CONFLICT DO NOTHING in batches of 5,000, one transaction per "
             "file); re-ingest = the same files again (every record a duplicate, nothing "
             "stored); report = `kiloml fleet report --json` on the whole database. "
             f"Wall clock on this machine ({result['machine']}, shared; Python "
             f"{result['python']}, SQLAlchemy {result['sqlalchemy']}); PostgreSQL is "
             "Debian's, started by the script with fsync off (a throw-away cluster).", "",
             "| database | records | ingest (s) | records/s | re-ingest (s) | records/s | "
             "report (s) | devices in alarm |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['database']} | {r['records']:,} | {r['ingest_s']} | "
                     f"{r['ingest_records_per_s']:,} | {r['reingest_s']} | "
                     f"{r['reingest_records_per_s']:,} | {r['report_s']} | "
                     f"{r['in_alarm']} / {r['devices']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
