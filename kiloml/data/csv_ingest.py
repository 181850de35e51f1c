"""CSV recordings: a header of channel names, one row per sample.

Optional columns: a timestamp (seconds or milliseconds) from which the sample
rate is derived and checked, a per-sample label, and a group (subject,
session, device) that must be constant within one file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.errors import KilomlError
from kiloml.project import DataConfig

RATE_TOLERANCE = 0.05  # a derived rate more than 5% off the declared one is an error
DELIMITERS = (",", ";", "\t")


@dataclass
class CsvTable:
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # the file line of each row, for error messages


def read_table(path: Path, display: str) -> CsvTable:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = f.readline()
            if not first.strip():
                rest = f.read().strip()
                if not rest:
                    raise KilomlError("the CSV file is empty (no header, no rows)", file=display)
                raise KilomlError("line 1 is blank: the first line must be the header",
                                  file=display, line=1)
            delimiter = max(DELIMITERS, key=first.count)
            f.seek(0)
            reader = csv.reader(f, delimiter=delimiter)
            header = [h.strip() for h in next(reader)]
            for i, name in enumerate(header):
                if not name:
                    raise KilomlError(f"header column {i + 1} has no name", file=display, line=1)
            seen: set[str] = set()
            for name in header:
                if name in seen:
                    raise KilomlError(f"header names column '{name}' twice", file=display,
                                      line=1)
                seen.add(name)
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise KilomlError(
                        f"expected {len(header)} columns as in the header, found {len(row)}",
                        file=display, line=line)
                rows.append(row)
                lines.append(line)
    except UnicodeDecodeError:
        raise KilomlError("not a UTF-8 text file", file=display) from None
    except csv.Error as exc:
        raise KilomlError(f"malformed CSV: {exc}", file=display) from None
    except OSError as exc:
        raise KilomlError(f"cannot read file: {exc.strerror}", file=display) from None
    if not rows:
        raise KilomlError("the CSV file has a header but no data rows", file=display)
    return CsvTable(header, rows, lines)


def numeric_columns(table: CsvTable, names: list[str], display: str) -> np.ndarray:
    """The named columns as float64 [rows, len(names)]; one-line error on a bad cell."""
    index = [table.header.index(n) for n in names]
    cells = [[row[i] for i in index] for row in table.rows]
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        for r, row in enumerate(cells):
            for j, cell in enumerate(row):
                try:
                    float(cell)
                except ValueError:
                    what = "is empty" if not cell.strip() else f"'{cell.strip()}' is not a number"
                    raise KilomlError(f"column '{names[j]}': cell {what}", file=display,
                                      line=table.lines[r]) from None
        raise  # pragma: no cover - numpy rejected something float() accepts
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        r, j = bad[0]
        raise KilomlError(f"column '{names[j]}': {table.rows[r][index[j]].strip()} is not a "
                          f"finite sample (NaN and Inf are not allowed)", file=display,
                          line=table.lines[r])
    return values


def derive_rate(table: CsvTable, cfg: DataConfig, display: str) -> float:
    column = cfg.timestamp_column
    if column is None:
        if cfg.sample_rate_hz is None:
            raise KilomlError("sample_rate_hz is not set in [data] and there is no "
                              "timestamp_column to derive it from", file=display)
        return cfg.sample_rate_hz
    t = numeric_columns(table, [column], display)[:, 0]
    if cfg.timestamp_unit == "ms":
        t = t / 1000.0
    step = np.diff(t)
    bad = np.flatnonzero(step <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        raise KilomlError(
            f"column '{column}': timestamp {table.rows[i][table.header.index(column)].strip()} "
            f"is not after the previous one "
            f"({table.rows[i - 1][table.header.index(column)].strip()}); timestamps must "
            f"increase", file=display, line=table.lines[i])
    if len(t) < 2:
        if cfg.sample_rate_hz is None:
            raise KilomlError("one row is not enough to derive the sample rate from "
                              "timestamps; set sample_rate_hz", file=display)
        return cfg.sample_rate_hz
    derived = (len(t) - 1) / float(t[-1] - t[0])
    if cfg.sample_rate_hz is not None:
        off = abs(derived - cfg.sample_rate_hz) / cfg.sample_rate_hz
        if off > RATE_TOLERANCE:
            raise KilomlError(
                f"column '{column}': timestamps give {derived:.4g} Hz, {off:.0%} off the "
                f"declared sample_rate_hz = {cfg.sample_rate_hz:g} (tolerance "
                f"{RATE_TOLERANCE:.0%}; check timestamp_unit = '{cfg.timestamp_unit}')",
                file=display)
        return cfg.sample_rate_hz
    return derived


def text_column(table: CsvTable, name: str) -> list[str]:
    i = table.header.index(name)
    return [row[i].strip() for row in table.rows]


def read_csv_recording(path: Path, cfg: DataConfig, display: str, *, label: str | None,
                       group: str | None) -> tuple[np.ndarray, float, list[str],
                                                   np.ndarray | None, str | None]:
    """Samples, rate, channel names, per-sample labels and group of one CSV file.

    ``label``/``group`` come from the file name when the project says so; the
    caller builds the Recording.
    """
    table = read_table(path, display)
    special = [c for c in (cfg.timestamp_column, cfg.label_column, cfg.group_column) if c]
    for role, name in (("timestamp_column", cfg.timestamp_column),
                       ("label_column", cfg.label_column),
                       ("group_column", cfg.group_column)):
        if name is not None and name not in table.header:
            raise KilomlError(f"{role} '{name}' is not in the header "
                              f"(columns: {', '.join(table.header)})", file=display, line=1)
    if cfg.channels:
        missing = [c for c in cfg.channels if c not in table.header]
        if missing:
            raise KilomlError(f"channel '{missing[0]}' is not in the header "
                              f"(columns: {', '.join(table.header)})", file=display, line=1)
        channels = list(cfg.channels)
    else:
        channels = [c for c in table.header if c not in special]
        if not channels:
            raise KilomlError("no channel columns: every column is a timestamp, label or "
                              "group column", file=display, line=1)
    samples = numeric_columns(table, channels, display)
    too_big = np.argwhere(np.abs(samples) > np.finfo(np.float32).max)
    if len(too_big):
        r, j = too_big[0]
        raise KilomlError(f"column '{channels[j]}': {samples[r, j]:g} does not fit in float32",
                          file=display, line=table.lines[r])
    rate = derive_rate(table, cfg, display)

    sample_labels = None
    if cfg.label_column is not None:
        sample_labels = np.array(text_column(table, cfg.label_column), dtype=object)
    if cfg.group_column is not None:
        groups = text_column(table, cfg.group_column)
        for i, g in enumerate(groups):
            if not g:
                raise KilomlError(f"column '{cfg.group_column}': empty group", file=display,
                                  line=table.lines[i])
            if g != groups[0]:
                raise KilomlError(
                    f"column '{cfg.group_column}': group changes from '{groups[0]}' to '{g}' "
                    f"within one file; put each group in its own file", file=display,
                    line=table.lines[i])
        group = groups[0]
    return samples.astype(np.float32), rate, channels, sample_labels, group
