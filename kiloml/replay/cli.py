"""The `kiloml replay` command (registered by kiloml.cli)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def replay_command(
        run_dir: Annotated[Path, typer.Argument(help="A run folder (`kiloml run`'s output)")],
        port: Annotated[str, typer.Option(
            "--port", help="The device's serial port (/dev/ttyACM0 ...) or a pyserial URL "
                           "(socket://127.0.0.1:4321)")],
        baud: Annotated[int, typer.Option("--baud", help="Baud rate")] = 115200,
        timeout: Annotated[float, typer.Option(
            "--timeout", help="Seconds to wait for each answer")] = 5.0,
        recordings: Annotated[int | None, typer.Option(
            "--recordings", help="Replay only the first N held-out recordings")] = None,
) -> None:
    """Stream the run's held-out recordings to a device running the replay firmware (the
    CMake export's examples/replay), read its decisions back and report parity with the
    Python reference (hardware in the loop)."""
    from kiloml.replay import replay_run

    o = replay_run(run_dir, port, baud, timeout_s=timeout, max_recordings=recordings)
    r = o.result
    scores = {True: "; scores bit-exact", False: "; scores differ", None: ""}[
        r["device_scores_bit_exact"]]
    rate = f", {r['samples_per_s']:,.0f} samples/s" if r["samples_per_s"] else ""
    print(f"replay         {r['decisions_equal']}/{r['n']} decisions equal to Python on "
          f"{r['port']} ({r['n_recordings']} recordings, {r['n_samples']:,} samples, "
          f"{r['n_reported']} windows reported{scores}) in {r['seconds']:g} s{rate}")
    first = r["first_difference"]
    if first is not None:
        print(f"               first difference: window {first['window']}: device "
              f"{first['device']}, Python {first['python']}")
    print(f"               {o.path}")
    if not o.ok:
        sys.stderr.write("kiloml: the device's decisions differ from Python's\n")
        raise typer.Exit(1)
