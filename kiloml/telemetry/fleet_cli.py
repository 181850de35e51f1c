"""`kiloml fleet ...`: devices' telemetry into a database, and the fleet report.

The commands import SQLAlchemy when they run (the fleet extra), so `kiloml` itself starts
without it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kiloml.cli_errors import user_errors

__all__ = ["fleet_app"]

fleet_app = typer.Typer(help="Devices in the field: simulated devices, telemetry into a "
                        "database, the fleet report.", no_args_is_help=True)

DB_HELP = "Database URL: sqlite:///fleet.db (a file) or postgresql://user@host/db"


@fleet_app.command("simulate")
@user_errors
def simulate_command(
    run_dir: Annotated[Path, typer.Argument(help="A kiloml run folder whose project has a "
                                            "monitor section")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write <device>.bin and "
                                      "truth.json into")],
    devices: Annotated[int, typer.Option("--devices", help="Simulated devices")] = 10,
    drifting: Annotated[int, typer.Option("--drifting", help="How many of them drift")] = 1,
    days: Annotated[float, typer.Option("--days", help="Device time each (fractions "
                                        "allowed)")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Everything random follows it")] = 0,
    record_every: Annotated[str, typer.Option("--record-every", help="Device time between "
                                              "telemetry records (whole seconds: 60s, 5m)")
                            ] = "60s",
    perturbation: Annotated[list[str] | None, typer.Option(
        "--perturbation", help="NAME:SEVERITY a drifting device may get (repeatable; "
        "default: the strong severity of each gradual perturbation)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Devices simulated at once")] = 2,
) -> None:
    """N devices replay the run's held-out recordings through its C library compiled for
    the host; K of them with a drift injected gradually from a random time."""
    from kiloml.telemetry.simulate import simulate

    truth = simulate(run_dir, out, devices=devices, drifting=drifting, days=days, seed=seed,
                     record_every=record_every, perturbations=perturbation, jobs=jobs)
    drift = truth["drifting"]
    print(f"{devices} devices x {days:g} days, {truth['records_per_device']:,} records "
          f"each; drifting: " + (", ".join(
              f"{d['device']} ({d['perturbation']} {d['severity']:g} from "
              f"{d['onset_s'] / 3600:.2f} h)" for d in drift[:10])
              + (" ..." if len(drift) > 10 else "") if drift else "none"))
    print(f"wrote {out} ({len(truth['devices'])} .bin files and truth.json)")


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
    confirm: Annotated[int, typer.Option("--confirm", help="Consecutive flagged records "
                                         "that make an alarm")] = 2,
) -> None:
    """The fleet report: devices ranked by alarm, trends, model versions, alarms."""
    from kiloml.telemetry.fleet_report import write_fleet_report

    fleet = write_fleet_report(db, out, json_out, run, confirm)
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
