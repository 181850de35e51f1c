"""The server's side of the database: received records stored through `kiloml fleet
ingest`'s idempotent insert (unique device + record bytes), and the counters GET
/api/stats and the dashboard show. Counters live in the server process (since it
started); the records are in the database."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kiloml.fleet_server.intake import Received
from kiloml.optional import needs
from kiloml.telemetry.ingest import device_ids, insert_new, record_row

with needs("sqlalchemy", "kiloml fleet serve"):
    from sqlalchemy import Engine

__all__ = ["ServerStats", "Store"]


@dataclass
class ServerStats:
    started_s: float = field(default_factory=time.time)
    requests: int = 0  # POST /telemetry with a valid token
    unauthorized: int = 0  # 401s
    rejected: int = 0  # 400s: bodies with at least one bad record, or none readable
    records: int = 0  # good records received
    stored: int = 0
    duplicates: int = 0
    bad: Counter = field(default_factory=Counter)  # bad records by kind

    def as_json(self) -> dict[str, Any]:
        return {"started_s": self.started_s, "uptime_s": round(time.time() - self.started_s, 3),
                "requests": self.requests, "unauthorized": self.unauthorized,
                "rejected": self.rejected, "records": self.records, "stored": self.stored,
                "duplicates": self.duplicates, "bad": sum(self.bad.values()),
                "bad_by_kind": dict(sorted(self.bad.items()))}


class Store:
    """One lock around every write: insert_new counts the new rows of the devices
    concerned, which a concurrent write to the same devices would disturb (and SQLite
    takes one writer at a time anyway)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stats = ServerStats()
        self._lock = threading.Lock()

    def store(self, records: list[Received]) -> int:
        """Store the records in one transaction; returns how many were new."""
        if not records:
            return 0
        with self._lock, self.engine.begin() as conn:
            ids = device_ids(conn, {r.device for r in records})
            return insert_new(conn, [record_row(r.decoded, r.raw, ids[r.device], r.received_s)
                                     for r in records])

    def count(self, *, records: int = 0, stored: int = 0, bad: Counter | None = None,
              rejected: bool = False, unauthorized: bool = False) -> None:
        with self._lock:
            s = self.stats
            if unauthorized:
                s.unauthorized += 1
                return
            s.requests += 1
            s.rejected += rejected
            s.records += records
            s.stored += stored
            s.duplicates += records - stored
            s.bad.update(bad or Counter())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.stats.as_json()
