"""A search's results file is read back on resume: rows that were edited, cut or written
by something else are not trusted (they are evaluated again), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiloml.search.store import ResultStore, valid_row

GOOD = {"key": "k1", "status": "evaluated", "accuracy": 0.9, "balanced_accuracy": 0.8,
        "over_budget": [], "estimate": {"flash_bytes": 100, "ram_bytes": 10, "stack_bytes": 4,
                                        "latency_us": 1.5, "energy_uj": 0.1}}


def _with(**changes) -> dict:
    row = json.loads(json.dumps(GOOD))
    for k, v in changes.items():
        if v is ...:
            row.pop(k)
        else:
            row[k] = v
    return row


@pytest.mark.parametrize("row", [
    [1, 2], "text", _with(key=3), _with(status="done"), _with(accuracy="0.9"),
    _with(accuracy=float("nan")), _with(accuracy=7), _with(balanced_accuracy=True),
    _with(estimate=...), _with(estimate={"flash_bytes": 1}), _with(over_budget="none"),
    _with(estimate={**GOOD["estimate"], "energy_uj": -1}),
    {"key": "k2", "status": "failed"}, {"key": "k3", "status": "rejected before training"},
])
def test_malformed_rows_are_not_trusted(row) -> None:
    assert not valid_row(row)


def test_good_rows_are_kept_and_bad_ones_counted(tmp_path: Path) -> None:
    lines = [json.dumps(GOOD), json.dumps(_with(key="k9", accuracy="high")), "[]", "7",
             json.dumps({"key": "k5", "status": "failed", "error": "boom"}), "{not json"]
    (tmp_path / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    store = ResultStore(tmp_path)
    assert sorted(store.rows) == ["k1", "k5"]
    assert store.ignored == 3  # the malformed line is a cut write, dropped silently
    assert store.done("k1") and not store.done("k5") and not store.done("k9")
