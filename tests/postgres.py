"""A throwaway PostgreSQL cluster for the tests: Debian's server, in a temporary directory, on a free port.

PostgreSQL refuses to run as root and CI runs as root, so there the server
runs as ``nobody`` (its data directory is made theirs).  Connections go over
TCP on 127.0.0.1 with a password (scram-sha-256), the way a deployment
connects, so the password path is exercised too.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

USER = "didban"


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


class Cluster:
    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        """``fsync`` off for the tests (a throwaway cluster), on for benchmarks (what a deployment runs)."""
        self.root = root
        self._fsync = "on" if fsync else "off"
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        binaries = server_binaries()
        assert binaries is not None, "PostgreSQL is not installed (the test command installs Debian's postgresql)"
        self._bin = binaries
        self._user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self._databases = 0

    def _run(self, *command: str | Path) -> None:
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120,
                              user=self._user.pw_uid if self._user else None,
                              group=self._user.pw_gid if self._user else None)
        if done.returncode:
            raise RuntimeError(f"{Path(command[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> Cluster:
        self.sockets.mkdir(parents=True)
        password_file = self.root / "password"
        password_file.write_text(self.password)
        if self._user is not None:
            for path in (self.root, self.sockets, password_file):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(self._bin / "initdb", "-D", self.data, "-U", USER, f"--pwfile={password_file}",
                  "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8")
        password_file.unlink()
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server (again, after ``stop``: a store outage ends)."""
        self._run(self._bin / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "-t", "60", "start",
                  "-o", f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync={self._fsync} "
                        "-c max_connections=200")

    def stop(self, mode: str = "fast") -> None:
        self._run(self._bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(database), password=self.password, autocommit=True)

    def new_database(self) -> str:
        """A fresh, empty database: one per test, so tests never see each other's rows."""
        self._databases += 1
        name = f"test_{self._databases}_{secrets.token_hex(3)}"
        with self.connect() as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return name


@pytest.fixture(scope="session")
def postgres_cluster() -> Any:
    if server_binaries() is None:
        pytest.fail("PostgreSQL is not installed: run the README's test command (it installs Debian's postgresql)")
    # Not under pytest's own temporary folder: that one is private to root, and the server runs as nobody.
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="didban-postgres-"))).start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)

