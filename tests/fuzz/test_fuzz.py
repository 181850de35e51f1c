"""Mutation fuzzing in the test suite: 500 mutants per format, each in a worker
subprocess with a time limit; every mutant loads or ends in a one-line KilomlError.

Anything else (an exception, a numpy RuntimeWarning, a crash, a hang) fails the test
and is kept under build/fuzz-reproducers/<format>/<sha>.<ext> with its traceback in
<sha>.txt. `make fuzz` runs the long campaign (tests/fuzz/campaign.py).
"""

from __future__ import annotations

import os

import pytest
from campaign import REPRODUCERS, run_format  # tests/fuzz is on sys.path (pytest rootdir)
from formats import FORMATS

MUTANTS = 500
TIMEOUT_S = 30.0  # per mutant; a healthy one takes milliseconds


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mutants_load_or_fail_with_one_line(fmt: str) -> None:
    # one worker per test under xdist (the other core runs another format), else two
    workers = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
    summary = run_format(fmt, MUTANTS, workers=workers, timeout_s=TIMEOUT_S,
                         campaign="make-test", reproducers=REPRODUCERS)
    assert summary.mutants == MUTANTS
    assert summary.outcomes["loaded"] + summary.outcomes["error"] > 0
    if summary.outcomes["other"]:
        lines = [f"{n}x {site} (e.g. {summary.reproducers[site]})"
                 for site, n in summary.sites.most_common()]
        pytest.fail(f"{fmt}: {summary.outcomes['other']} of {MUTANTS} mutants ended in "
                    "something other than a load or a KilomlError:\n" + "\n".join(lines))
