"""`kiloml capture`: record one labelled recording from a device."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from kiloml.display import shown_path
from kiloml.errors import KilomlError

PROTOCOLS = ("text", "kml")


def capture(
        port: Annotated[str, typer.Option(
            "--port", help="Serial port (/dev/ttyACM0, COM3) or a pyserial URL "
                           "(socket://host:port)")],
        label: Annotated[str, typer.Option(
            "--label", help="The class of this recording: the folder under --out")],
        out: Annotated[Path, typer.Option(
            "--out", help="Data folder: the recording goes to OUT/LABEL/NAME.csv")],
        baud: Annotated[int, typer.Option("--baud", help="Baud rate")] = 115200,
        seconds: Annotated[float, typer.Option(
            "--seconds", help="Length of the recording")] = 10.0,
        protocol: Annotated[str, typer.Option(
            "--protocol", help="text: lines of numbers (as Edge Impulse's data forwarder "
                               "reads); kml: kiloml's framed protocol (kml_capture.c)")
        ] = "text",
        rate_hz: Annotated[float | None, typer.Option(
            "--rate-hz", help="The device's sample rate: checked against what arrives "
                              "(5% tolerance)")] = None,
        channels: Annotated[str | None, typer.Option(
            "--channels", help="Channel names, comma-separated (text: default ch0, ch1, "
                               "...; kml: replaces the device's)")] = None,
        name: Annotated[str | None, typer.Option(
            "--name", help="File name without .csv (default LABEL_DATE-TIME)")] = None,
        timeout: Annotated[float, typer.Option(
            "--timeout", help="Seconds without a sample before giving up")] = 5.0,
) -> None:
    """Record a labelled recording from a device over a serial port, in the CSV layout
    `kiloml run` reads, and report its rate, jitter, dropped and corrupt frames."""
    from kiloml.capture.port import open_port
    from kiloml.capture.recording import plan_paths, write_recording
    from kiloml.capture.report import (
        figures,
        rate_checked,
        rate_problem,
        recording_rate,
        summary_lines,
    )
    from kiloml.capture.session import Session, Settings, check_channel_names

    if protocol not in PROTOCOLS:
        raise KilomlError(f"--protocol '{protocol}': choose text or kml")
    for option, value in (("--seconds", seconds), ("--timeout", timeout),
                          ("--rate-hz", rate_hz)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise KilomlError(f"{option} {value:g}: must be a positive number")
    names = None
    if channels is not None:
        names = [c.strip() for c in channels.split(",")]
        check_channel_names(names, "--channels")
    paths = plan_paths(out, label, name)
    settings = Settings(port=port, protocol=protocol, seconds=seconds,  # type: ignore[arg-type]
                        rate_hz=rate_hz, channels=names, timeout_s=timeout)
    handle = open_port(port, baud)
    try:
        cap = Session(settings, handle).run()
    finally:
        handle.close()
    figs = figures(cap)
    problem = rate_problem(cap, figs)
    if problem:
        raise KilomlError(f"{port}: {problem}; nothing was written")
    rate = recording_rate(cap, figs) if protocol == "text" else float(cap.device_rate_hz or 0)
    figs["rate_check"] = rate_checked(cap, figs)
    figs["baud"] = baud
    write_recording(paths, cap, rate, label, figs)
    print(f"recording      {shown_path(paths.csv)} ({cap.n_samples} samples x {len(cap.channels)} "
          f"channels: {', '.join(cap.channels)})")
    for line in summary_lines(figs):
        print(line)
    print(f"report         {shown_path(paths.json)}")
    if cap.end in ("vanished", "stalled"):
        what = "vanished" if cap.end == "vanished" else "stopped sending"
        raise KilomlError(f"{port}: the device {what} after {cap.elapsed_s:.2f} s "
                          f"({cap.end_detail}); kept the {cap.n_samples} whole samples "
                          f"received in {shown_path(paths.csv)}")

