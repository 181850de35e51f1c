"""Where a search's candidates are trained: a local process pool (default) or a Ray
cluster. Both take plain-data jobs and yield (job, result) as results arrive."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from kiloml.errors import KilomlError
from kiloml.optional import needs

RAY_CONNECT_TIMEOUT_S = 3.0


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def describe(self) -> str:
        return f"local process pool, {self.workers} worker(s)"

    def map(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        if self.workers == 1:
            for job in jobs:
                yield job, fn(job)
            return
        # spawn: a clean interpreter per worker (torch and forked threads do not mix)
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            futures = {pool.submit(fn, job): job for job in jobs}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def close(self) -> None:
        pass


def check_reachable(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds when nothing listens at host:port (ray.init would retry for long)."""
    host, sep, port = address.rpartition(":")
    if address in ("auto", "local"):
        return
    if address.startswith("ray://"):
        host, sep, port = address[len("ray://"):].rpartition(":")
    if not sep or not port.isdigit():
        raise KilomlError(f"--address '{address}' is not host:port (e.g. 127.0.0.1:6379)")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise KilomlError(f"cannot reach the Ray cluster at {address}: {why} (after "
                          f"{timeout_s:g} s); start one with 'ray start --head' or check the "
                          f"address") from None


GCS_CHECK_TIMEOUT_S = 6.0
_GCS_PROBE = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).cluster_id
except Exception as exc:
    print((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    sys.exit(1)
"""


def _check_gcs(address: str, timeout_s: float = GCS_CHECK_TIMEOUT_S) -> None:
    """Something listens, but is it a Ray head? Ask its GCS for the cluster ID, in a child
    process with a deadline (the client can wait for minutes on a silent peer, and ray.init
    retries; its C++ log lines stay out of the user's terminal)."""
    import subprocess

    try:
        probe = subprocess.run([sys.executable, "-c", _GCS_PROBE, address], capture_output=True,
                               text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise KilomlError(f"cannot reach the Ray cluster at {address}: something listens but "
                          f"no Ray head answered within {timeout_s:g} s") from None
    if probe.returncode != 0:
        why = (probe.stdout.strip().splitlines() or ["no answer"])[-1]
        raise KilomlError(f"cannot reach the Ray cluster at {address}: something answers but "
                          f"not a Ray head node ({why})") from None


class RayExecutor:
    name = "ray"

    def __init__(self, address: str) -> None:
        with needs("ray", "--executor ray"):  # before any probe of the address
            import ray
        check_reachable(address)
        self.address = address
        self._ray = ray
        if not address.startswith("ray://") and address not in ("auto", "local"):
            _check_gcs(address)
        try:
            ray.init(address=address, ignore_reinit_error=True, logging_level="ERROR",
                     log_to_driver=False, include_dashboard=False)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise KilomlError(f"cannot join the Ray cluster at {address}: {first}") from None
        self.cpus = int(ray.cluster_resources().get("CPU", 1))

    def describe(self) -> str:
        nodes = len([n for n in self._ray.nodes() if n.get("Alive")])
        return f"Ray cluster at {self.address}, {nodes} node(s), {self.cpus} CPU(s)"

    def map(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=1)(fn)
        pending = {remote.remote(job): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        self._ray.shutdown()


MAX_LOCAL_WORKERS = 256


def make_executor(kind: str, address: str | None, workers: int | None):
    if workers is not None and not 1 <= workers <= MAX_LOCAL_WORKERS:
        raise KilomlError(f"--workers: {workers} worker processes: give 1 to "
                          f"{MAX_LOCAL_WORKERS} (default: one per core)")
    if kind == "local":
        if address:
            raise KilomlError("--address is for --executor ray")
        return LocalExecutor(workers)
    if kind == "ray":
        if not address:
            raise KilomlError("--executor ray needs --address HOST:PORT of a running cluster "
                              "(ray start --head prints it)")
        return RayExecutor(address)
    raise KilomlError(f"--executor must be 'local' or 'ray', got '{kind}'")
