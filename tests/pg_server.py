"""A real PostgreSQL server for the tests (Debian's postgresql package, which `make setup`
installs): initdb in a temporary folder, pg_ctl start on a free loopback port with its
unix socket in that folder, pg_ctl stop and the folder removed at the end.

PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the `postgres` user
(runuser), in a folder that user owns. Missing binaries are a failure naming `make setup`,
never a skip."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

INITDB_GLOB = "/usr/lib/postgresql/*/bin/initdb"
START_TIMEOUT_S = 30


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder; pytest.fail when there is none."""
    found = sorted(glob.glob(INITDB_GLOB), key=lambda p: int(Path(p).parts[-3])
                   if Path(p).parts[-3].isdigit() else 0)
    if not found:
        pytest.fail(f"PostgreSQL is not installed (no {INITDB_GLOB}): `make setup` installs "
                    "Debian's postgresql package (as root)", pytrace=False)
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server for the session; ``new_database()`` gives each test its own database."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="kiloml-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root,
                              timeout=START_TIMEOUT_S + 30)
        if done.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): "
                               f"{done.stderr[-2000:]}"
                               + (log.read_text()[-2000:] if log.exists() else ""))
        return done

    def start(self) -> None:
        # trust on loopback and the folder's socket only; no fsync: a throw-away cluster
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "kiloml", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        options = (f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", str(START_TIMEOUT_S), "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://kiloml@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=kiloml dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()
