"""The fuzz pool itself: a worker that crashes, hangs, raises or warns is caught, replaced,
and the campaign goes on; clean errors and loads are told apart."""

from __future__ import annotations

import time
from pathlib import Path

from pool import Job, WorkerPool


def test_pool_catches_crashes_hangs_exceptions_and_warnings(tmp_path: Path) -> None:
    payloads = ["ok", "error", "raise", "crash", "ok", "hang", "warn", "ok"]
    jobs = [Job("selftest", f"k{i}", 0, "self", payload=p) for i, p in enumerate(payloads)]
    pool = WorkerPool(1, timeout_s=5.0, scratch=tmp_path)
    start = time.monotonic()
    try:
        results = {r.job.key: r for r in pool.run(jobs)}
    finally:
        pool.close()
    outcome = {r.job.payload: (r.outcome, r.site) for r in results.values()}
    assert len(results) == len(payloads)
    assert outcome["ok"] == ("loaded", "")
    assert outcome["error"] == ("error", "")
    assert outcome["raise"][0] == "other" and "ValueError at" in outcome["raise"][1]
    assert outcome["warn"][0] == "other" and outcome["warn"][1].startswith("RuntimeWarning")
    assert outcome["crash"] == ("other", "worker died (exit code -6)")
    assert outcome["hang"] == ("other", "hang (no answer in 5 s)")
    assert pool.restarts == 2
    assert time.monotonic() - start < 60
