"""A search's results on disk as it goes: one JSON line per finished candidate, appended
and flushed, so an interrupted search resumes where it stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS_FILE = "candidates.jsonl"


class ResultStore:
    def __init__(self, directory: Path, fresh: bool = False) -> None:
        self.directory = directory
        self.path = directory / RESULTS_FILE
        directory.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        self.rows: dict[str, dict] = {}
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
                if isinstance(row, dict) and "key" in row:
                    self.rows[row["key"]] = row

    def done(self, key: str) -> bool:
        row = self.rows.get(key)
        return row is not None and row.get("status") != "failed"

    def add(self, row: dict) -> None:
        self.rows[row["key"]] = row
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
