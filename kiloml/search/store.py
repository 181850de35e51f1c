"""A search's results on disk as it goes: one JSON line per finished candidate, appended
and flushed, so an interrupted search resumes where it stopped."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

RESULTS_FILE = "candidates.jsonl"
STATUSES = ("evaluated", "over budget after training", "rejected before training", "failed")
ESTIMATE_KEYS = ("flash_bytes", "ram_bytes", "stack_bytes", "latency_us", "energy_uj")


def _number(value: object, low: float = 0.0, high: float = math.inf) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and low <= value <= high)


def _estimate(value: object) -> bool:
    return isinstance(value, dict) and all(_number(value.get(k)) for k in ESTIMATE_KEYS)


def valid_row(row: object) -> bool:
    """A row a resumed search can trust: the fields its status needs, of the right types
    (a results file is read back, so it may have been edited or cut)."""
    if not isinstance(row, dict) or not isinstance(row.get("key"), str):
        return False
    status = row.get("status")
    if status not in STATUSES:
        return False
    if status in ("evaluated", "over budget after training"):
        return (_number(row.get("accuracy"), 0, 1) and _number(row.get("balanced_accuracy"),
                                                                0, 1)
                and _estimate(row.get("estimate")) and isinstance(row.get("over_budget"), list))
    if status == "rejected before training":
        return _estimate(row.get("estimate_before_training")) and \
            isinstance(row.get("over_budget"), list)
    return isinstance(row.get("error"), str)


class ResultStore:
    def __init__(self, directory: Path, fresh: bool = False) -> None:
        self.directory = directory
        self.path = directory / RESULTS_FILE
        directory.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        self.rows: dict[str, dict] = {}
        self.ignored = 0
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                # killed mid-write: drop the partial line so the next row starts clean
                text = text[:text.rfind("\n") + 1]
                self.path.write_text(text, encoding="utf-8")
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a search killed mid-write
                if valid_row(row):
                    self.rows[row["key"]] = row
                else:
                    self.ignored += 1  # edited or from another kiloml: evaluated again

    def done(self, key: str) -> bool:
        row = self.rows.get(key)
        return row is not None and row.get("status") != "failed"

    def add(self, row: dict) -> None:
        self.rows[row["key"]] = row
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
