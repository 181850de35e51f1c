"""`kiloml fleet ...`: devices' telemetry into a database, and the fleet report.

The commands import SQLAlchemy when they run (the fleet extra), so `kiloml` itself starts
without it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kiloml.cli_errors import user_errors

__all__ = ["fleet_app"]

fleet_app = typer.Typer(help="Devices in the field: telemetry into a database, the fleet "
                        "report.", no_args_is_help=True)

DB_HELP = "Database URL: sqlite:///fleet.db (a file) or postgresql://user@host/db"


@fleet_app.command("ingest")
@user_errors
def ingest_command(
    folder: Annotated[Path, typer.Argument(help="Folder of <device>.bin / <device>.jsonl "
                                           "telemetry files")],
    db: Annotated[str, typer.Option("--db", help=DB_HELP)] = "sqlite:///fleet.db",
) -> None:
    """Store FOLDER's telemetry records in the database, each once.

    Bad records (CRC, version, truncated) are counted per file and skipped."""
    from kiloml.telemetry.ingest import ingest_folder, summary_lines

    for line in summary_lines(ingest_folder(folder, db)):
        print(line)


@fleet_app.command("report")
@user_errors
def report_command(
    db: Annotated[str, typer.Option("--db", help=DB_HELP)] = "sqlite:///fleet.db",
    out: Annotated[Path, typer.Option("--out", help="HTML report to write")] = Path(
        "fleet.html"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the devices "
                                                  "and alarms as JSON")] = None,
    run: Annotated[Path | None, typer.Option("--run", help="A kiloml run folder: its "
                                             "metrics.json's training reference")] = None,
) -> None:
    """The fleet report: devices ranked by alarm, trends, model versions, alarms."""
    from kiloml.telemetry.fleet_report import write_fleet_report

    fleet = write_fleet_report(db, out, json_out, run)
    alarms = [d for d in fleet["devices"] if d["alarm"]]
    print(f"{len(fleet['devices'])} devices, {fleet['records']:,} records, "
          f"{len(alarms)} in alarm" + (": " + ", ".join(d["device"] for d in alarms[:10])
                                       + (" ..." if len(alarms) > 10 else "")
                                       if alarms else ""))
    print(f"wrote {out}" + (f" and {json_out}" if json_out else ""))


@fleet_app.command("serve")
@user_errors
def serve_command(
    db: Annotated[str, typer.Option("--db", help=DB_HELP)] = "sqlite:///fleet.db",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port, "
                                      "printed)")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
) -> None:
    """HTTP: devices POST /telemetry (bearer token from $KILOML_FLEET_TOKEN), GET / is the
    dashboard, GET /api/devices the report's JSON."""
    from kiloml.fleet_server.run import serve

    serve(db, host, port)
