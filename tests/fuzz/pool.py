"""Run mutants in a pool of worker subprocesses, each with a time limit per mutant.

A worker processes many mutants (imports once); one that dies (a segfault, an abort)
or does not answer within the limit (a hang) is recorded as "other" with what
happened, killed and replaced. Workers run with an address-space limit so a
mutant that asks for gigabytes ends as a MemoryError in the worker, not as a
machine out of memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import selectors
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from formats import FORMATS
from source import MutantSource

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = HERE / "worker.py"
MEMORY_LIMIT_BYTES = 3 << 30
READY_TIMEOUT_S = 120.0


@dataclass
class Job:
    format: str
    key: str  # the mutation key (reproduces the mutant)
    seed_index: int
    seed: str
    description: str = ""  # filled in from the worker's answer
    payload: str | None = None  # the "selftest" format's behaviour (tests of the pool)


@dataclass
class Result:
    job: Job
    outcome: str  # loaded | error | other
    seconds: float
    site: str = ""
    message: str = ""
    traceback: str = ""


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


@dataclass
class _Worker:
    index: int
    root: Path
    proc: subprocess.Popen | None = None
    reader: object = None
    job: Job | None = None
    job_id: int = 0
    deadline: float = 0.0
    started: float = 0.0
    spaces: dict[str, tuple[Path, Path | None]] = field(default_factory=dict)


class WorkerPool:
    """``run(jobs)`` yields one Result per job, in completion order."""

    def __init__(self, workers: int, timeout_s: float, scratch: Path,
                 codegen: bool = False) -> None:
        self.timeout_s = timeout_s
        self.codegen = codegen
        self.scratch = scratch
        self.workers = [_Worker(i, scratch / f"worker{i}") for i in range(workers)]
        self.selector = selectors.DefaultSelector()
        self.restarts = 0

    # ---- worker lifecycle ---------------------------------------------------------------
    def _start(self, w: _Worker) -> None:
        w.root.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        w.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(write_fd), str(w.root / "worker.log")],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), cwd=w.root, env=env,
            preexec_fn=_limit_memory, text=True)
        os.close(write_fd)
        w.reader = os.fdopen(read_fd, "r")
        ready = self._read_line(w, time.monotonic() + READY_TIMEOUT_S)
        if ready is None or not ready.get("ready"):
            raise RuntimeError(f"fuzz worker {w.index} did not start (see {w.root}/worker.log)")
        self.selector.register(w.reader, selectors.EVENT_READ, w)

    def _stop(self, w: _Worker) -> None:
        if w.reader is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(w.reader)
            w.reader.close()
            w.reader = None
        if w.proc is not None:
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
            if w.proc.stdin:
                with contextlib.suppress(OSError):
                    w.proc.stdin.close()
            w.proc = None

    def _read_line(self, w: _Worker, deadline: float) -> dict | None:
        sel = selectors.DefaultSelector()
        sel.register(w.reader, selectors.EVENT_READ)
        try:
            if not sel.select(max(0.0, deadline - time.monotonic())):
                return None
            line = w.reader.readline()
            return json.loads(line) if line else None
        finally:
            sel.close()

    def close(self) -> None:
        for w in self.workers:
            self._stop(w)
        self.selector.close()

    # ---- running ----------------------------------------------------------------------------
    def _space(self, w: _Worker, fmt: str) -> tuple[Path, Path | None]:
        if fmt not in FORMATS:
            return w.root / fmt, None
        if fmt not in w.spaces:
            w.spaces[fmt] = FORMATS[fmt].workspace(w.root / fmt)
        return w.spaces[fmt]

    def _submit(self, w: _Worker, job: Job) -> None:
        if w.proc is None:
            self._start(w)
        target, project = self._space(w, job.format)
        w.job, w.job_id = job, w.job_id + 1
        w.started = time.monotonic()
        w.deadline = w.started + self.timeout_s
        line = json.dumps({"id": w.job_id, "format": job.format, "key": job.key,
                           "seed_index": job.seed_index, "path": str(target),
                           "payload": job.payload, "codegen": self.codegen,
                           "project": str(project) if project else None})
        assert w.proc is not None and w.proc.stdin is not None
        try:
            w.proc.stdin.write(line + "\n")
            w.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died; its EOF is read below

    def _finish(self, w: _Worker, reply: dict | None, why: str = "") -> Result:
        job = w.job
        assert job is not None
        seconds = time.monotonic() - w.started
        w.job = None
        if reply is None:  # died or hung: replace the worker
            code = None
            if w.proc is not None and why != "hang":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = w.proc.wait(timeout=10)  # its pipe closed: it is exiting
            self._stop(w)
            self.restarts += 1
            if why == "hang":
                return Result(job, "other", seconds, f"hang (no answer in {self.timeout_s:g} s)",
                              why)
            return Result(job, "other", seconds, f"worker died (exit code {code})", why)
        job.description = reply.get("description", "")
        return Result(job, reply["outcome"], seconds, reply.get("site", ""),
                      reply.get("message", ""), reply.get("traceback", ""))

    def run(self, jobs: Iterable[Job]) -> Iterator[Result]:
        pending = iter(jobs)
        exhausted = False
        while True:
            for w in self.workers:
                if w.job is None and not exhausted:
                    job = next(pending, None)
                    if job is None:
                        exhausted = True
                    else:
                        self._submit(w, job)
            busy = [w for w in self.workers if w.job is not None]
            if not busy:
                return
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            for key, _ in self.selector.select(timeout):
                w = key.data
                if w.job is None:
                    continue
                line = w.reader.readline()
                reply = json.loads(line) if line else None
                yield self._finish(w, reply, "" if reply else "EOF")
            now = time.monotonic()
            for w in self.workers:
                if w.job is not None and now > w.deadline:
                    yield self._finish(w, None, "hang")


def keep_reproducer(result: Result, source: MutantSource, folder: Path) -> Path:
    """Write the mutant (generated again from its key) and its traceback; returns its path."""
    job = result.job
    data, description = source.make(job.seed_index, job.key)
    digest = hashlib.sha1(data).hexdigest()[:16]
    out = folder / job.format
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{digest}{FORMATS[job.format].suffix}"
    path.write_bytes(data)
    (out / f"{digest}.txt").write_text(
        f"format: {job.format}\nseed: {job.seed}\nkey: {job.key}\nmutation: {description}\n"
        f"outcome: {result.outcome}\nsite: {result.site}\nmessage: {result.message}\n\n"
        f"{result.traceback}\n")
    return path
