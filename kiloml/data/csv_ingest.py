"""CSV recordings: a header of channel names, one row per sample.

Optional columns: a timestamp (seconds, milliseconds or ISO 8601 date-times)
from which the sample rate is derived and checked, a per-sample label, and a
group (subject, session, device) that must be constant within one file.

Accepted dialects: comma, semicolon or tab delimiters (detected from the
header), a decimal comma with semicolon delimiters, a UTF-8 byte-order mark,
LF, CRLF or CR line ends, and lines starting with '#' (comments, e.g. a logger's
metadata) anywhere. Refused with the line: other encodings (UTF-16, Latin-1: save
as UTF-8), NUL bytes, files over MAX_CSV_BYTES, lines over MAX_LINE_BYTES, more
than MAX_COLUMNS columns.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kiloml.data.files import decode_utf8, read_regular
from kiloml.errors import KilomlError
from kiloml.project import DataConfig

RATE_TOLERANCE = 0.05  # a derived rate more than 5% off the declared one is an error
# Bounds on what one CSV recording may hold, checked before parsing it.
MAX_CSV_BYTES = 1 << 28  # 256 MiB of text: about 4 GB of Python rows while parsing
MAX_LINE_BYTES = 1 << 20
MAX_COLUMNS = 4096
DELIMITERS = (",", ";", "\t")
# Header names taken as the timestamp column when the project names neither a
# timestamp column nor the channels (so a logger's time column is not a feature).
TIMESTAMP_NAME = re.compile(
    r"^(t|ts|time|timestamp|time_?stamp|epoch|datetime)([ _]?(\(?(s|ms|sec|msec)\)?))?$",
    re.IGNORECASE)


# ISO 8601 date-times as loggers write them: a date, a time ("T" or a space), seconds
# with a fraction, and a UTC offset ("Z", "+02:00", "-0500"), which is applied.
ISO_DATETIME = re.compile(
    r"^(?P<naive>\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?)?)"
    r"(?P<zone>Z|[+-]\d\d(?::?\d\d)?)?$", re.IGNORECASE)


@dataclass
class CsvTable:
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # the file line of each row, for error messages
    delimiter: str = ","
    header_line: int = 1


def _is_comment(text: str) -> bool:
    return text.lstrip().startswith("#")


def read_table(path: Path, display: str) -> CsvTable:
    raw = read_regular(path, display, MAX_CSV_BYTES, "CSV file")
    _check_line_lengths(raw, display)
    text = decode_utf8(raw, display, "CSV file")
    first = ""
    for line in io.StringIO(text, newline=""):
        if line.strip() and not _is_comment(line):
            first = line
            break
    if not first:
        raise KilomlError("the CSV file is empty (no header, no rows)", file=display)
    delimiter = max(DELIMITERS, key=first.count)
    header: list[str] | None = None
    header_at = 1
    rows: list[list[str]] = []
    lines: list[int] = []
    # newline="" semantics: the reader itself takes \n, \r\n and \r as line ends
    # strict: a quote left open (which would swallow the rest of the file into one
    # cell) or text after a closing quote is an error, not a silent merge
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row) or _is_comment(row[0]):
                continue
            if header is None:
                header = [h.strip() for h in row]
                header_at = line
                _check_header(header, display, line)
                continue
            if len(row) != len(header):
                raise KilomlError(
                    f"expected {len(header)} columns as in the header, found {len(row)}",
                    file=display, line=line)
            rows.append(row)
            lines.append(line)
    except csv.Error as exc:
        raise KilomlError(f"malformed CSV: {exc}", file=display, line=reader.line_num) from None
    if header is None:  # every line is blank, a comment or empty cells (",,,")
        raise KilomlError("the CSV file has no header: every line is blank, a comment or "
                          "empty cells", file=display)
    if not rows:
        raise KilomlError("the CSV file has a header but no data rows", file=display)
    return CsvTable(header, rows, lines, delimiter, header_at)


def _check_line_lengths(raw: bytes, display: str) -> None:
    """No line longer than MAX_LINE_BYTES (before the csv module builds rows from it)."""
    ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 0x0A)
    bounds = np.concatenate([[-1], ends, [len(raw)]])
    lengths = np.diff(bounds) - 1
    if len(lengths) and int(lengths.max()) > MAX_LINE_BYTES:
        line = int(np.argmax(lengths > MAX_LINE_BYTES)) + 1
        raise KilomlError(f"line of {int(lengths[line - 1]):,} bytes, more than kiloml reads "
                          f"in one line ({MAX_LINE_BYTES:,}); is this a CSV recording?",
                          file=display, line=line)


def _check_header(header: list[str], display: str, line: int) -> None:
    if len(header) > MAX_COLUMNS:
        raise KilomlError(f"the header has {len(header):,} columns, more than kiloml reads "
                          f"({MAX_COLUMNS:,})", file=display, line=line)
    seen: set[str] = set()
    for i, name in enumerate(header):
        if not name:
            raise KilomlError(f"header column {i + 1} has no name", file=display, line=line)
        if name in seen:
            raise KilomlError(f"header names column '{name}' twice", file=display, line=line)
        seen.add(name)


def numeric_columns(table: CsvTable, names: list[str], display: str) -> np.ndarray:
    """The named columns as float64 [rows, len(names)]; one-line error on a bad cell."""
    index = [table.header.index(n) for n in names]
    cells = [[row[i] for i in index] for row in table.rows]
    if table.delimiter == ";" and any("," in c for c in cells[0]):
        cells = [[c.replace(",", ".") for c in row] for row in cells]  # decimal comma
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


def timestamp_seconds(table: CsvTable, column: str, unit: str, display: str) -> np.ndarray:
    """The timestamp column in seconds: numbers in ``unit``, or ISO 8601 date-times."""
    cells = text_column(table, column)
    try:
        t = np.array(cells, dtype=np.float64)
        return t / 1000.0 if unit == "ms" else t
    except ValueError:
        pass
    if not ISO_DATETIME.match(cells[0]):
        return numeric_columns(table, [column], display)[:, 0]  # names the bad cell
    naive, offset_s = [], np.zeros(len(cells))
    for i, cell in enumerate(cells):
        m = ISO_DATETIME.match(cell)
        if not m:
            raise KilomlError(f"column '{column}': timestamp '{cell}' is not an ISO 8601 "
                              f"date-time like the first one ('{cells[0]}')", file=display,
                              line=table.lines[i])
        naive.append(m.group("naive").replace(" ", "T").replace(",", "."))
        zone = m.group("zone")
        if zone and zone.upper() != "Z":  # UTC offset: local = UTC + offset
            sign = -1.0 if zone[0] == "-" else 1.0
            digits = zone[1:].replace(":", "")
            offset_s[i] = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    try:
        stamps = np.array(naive, dtype="datetime64[us]")
    except (ValueError, OverflowError):
        for i, cell in enumerate(naive):  # the first cell numpy cannot read as a date
            try:
                np.datetime64(cell, "us")
            except (ValueError, OverflowError):
                raise KilomlError(f"column '{column}': timestamp '{cells[i]}' is not a valid "
                                  f"date-time", file=display, line=table.lines[i]) from None
        raise  # pragma: no cover - the array failed where every cell parses
    micros = (stamps - stamps[0]).astype(np.int64).astype(np.float64)
    return micros / 1e6 - (offset_s - offset_s[0])


def derive_rate(table: CsvTable, cfg: DataConfig, column: str | None, unit: str,
                display: str) -> float:
    """The recording's sample rate; with timestamps, checked against the declared rate."""
    if column is None:
        if cfg.sample_rate_hz is None:
            raise KilomlError("sample_rate_hz is not set in [data] and there is no "
                              "timestamp_column to derive it from", file=display)
        return cfg.sample_rate_hz
    t = timestamp_seconds(table, column, unit, display)
    if not np.all(np.isfinite(t)):
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise KilomlError(f"column '{column}': timestamp is not finite", file=display,
                          line=table.lines[i])
    step = np.diff(t)
    bad = np.flatnonzero(step <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        cells = text_column(table, column)
        raise KilomlError(f"column '{column}': timestamp {cells[i]} is not after the previous "
                          f"one ({cells[i - 1]}); timestamps must increase", file=display,
                          line=table.lines[i])
    if len(t) < 2:
        if cfg.sample_rate_hz is None:
            raise KilomlError("one row is not enough to derive the sample rate from "
                              "timestamps; set sample_rate_hz", file=display)
        return cfg.sample_rate_hz
    # The mean rate over the whole recording: sustained loss or gaps lower it.
    derived = (len(t) - 1) / float(t[-1] - t[0])
    typical = 1.0 / float(np.median(step))
    if cfg.sample_rate_hz is None or cfg.resample:
        reference, what = typical, "the typical sample spacing"
    else:
        reference = cfg.sample_rate_hz
        what = f"the declared sample_rate_hz = {cfg.sample_rate_hz:g}"
    off = abs(derived - reference) / reference
    if off > RATE_TOLERANCE:
        unit_hint = "" if cfg.timestamp_column is None and unit == "s" else \
            f"; check timestamp_unit = '{unit}'"
        if abs(typical - reference) / reference <= RATE_TOLERANCE:
            gap = int(np.argmax(step)) + 1
            detail = (f"the recording has gaps (the longest, {step[gap - 1]:.3g} s, ends "
                      f"on line {table.lines[gap]}); split it at the gaps")
        else:
            detail = f"tolerance {RATE_TOLERANCE:.0%}{unit_hint}"
        raise KilomlError(f"column '{column}': timestamps give {derived:.4g} Hz, {off:.0%} off "
                          f"{what} ({detail})", file=display)
    if cfg.resample or cfg.sample_rate_hz is None:
        return derived  # resampled to sample_rate_hz after loading when configured
    return cfg.sample_rate_hz


def find_timestamp_column(table: CsvTable, cfg: DataConfig) -> tuple[str | None, str]:
    """The timestamp column and its unit: the configured one, or a column named like one
    (time, timestamp, t, ts, time_ms ...) when neither it nor the channels are configured."""
    if cfg.timestamp_column is not None:
        return cfg.timestamp_column, cfg.timestamp_unit
    if cfg.channels:
        return None, cfg.timestamp_unit
    for name in table.header:
        m = TIMESTAMP_NAME.match(name)
        if m and name not in (cfg.label_column, cfg.group_column):
            suffix = (m.group(4) or "").lower()
            return name, "ms" if suffix in ("ms", "msec") else cfg.timestamp_unit
    return None, cfg.timestamp_unit


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
    at = table.header_line
    timestamp, unit = find_timestamp_column(table, cfg)
    special = [c for c in (timestamp, cfg.label_column, cfg.group_column) if c]
    for role, name in (("timestamp_column", cfg.timestamp_column),
                       ("label_column", cfg.label_column),
                       ("group_column", cfg.group_column)):
        if name is not None and name not in table.header:
            raise KilomlError(f"{role} '{name}' is not in the header "
                              f"(columns: {', '.join(table.header)})", file=display, line=at)
    if cfg.channels:
        missing = [c for c in cfg.channels if c not in table.header]
        if missing:
            raise KilomlError(f"channel '{missing[0]}' is not in the header "
                              f"(columns: {', '.join(table.header)})", file=display, line=at)
        channels = list(cfg.channels)
    else:
        channels = [c for c in table.header if c not in special]
        if not channels:
            raise KilomlError("no channel columns: every column is a timestamp, label or "
                              "group column", file=display, line=at)
    samples = numeric_columns(table, channels, display)
    # a value fits when it rounds to a finite float32: 3.4028235e+38, the shortest text of
    # FLT_MAX, is above FLT_MAX as a double but rounds to it
    with np.errstate(over="ignore"):
        too_big = np.argwhere(np.isinf(samples.astype(np.float32)) & np.isfinite(samples))
    if len(too_big):
        r, j = too_big[0]
        raise KilomlError(f"column '{channels[j]}': {samples[r, j]:g} does not fit in float32",
                          file=display, line=table.lines[r])
    rate = derive_rate(table, cfg, timestamp, unit, display)

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
