"""Throwaway servers on 127.0.0.1 for the tests and the load benchmark: a PostgreSQL cluster in a
temp dir and an MLflow tracking server backed by it.

PostgreSQL refuses to run as root, and CI runs as root: there the cluster belongs to the
`postgres` user (which Debian's package creates), or to `nobody`, and its binaries run under
`runuser`. Nothing outside the temp dir is touched, and `stop()` removes it.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional

PG_USER = "lv"
# Generated per process: trust auth on 127.0.0.1 accepts any password; it is there to be masked in
# every message, which the tests check. A fixed one would be a published secret.
PG_PASSWORD = secrets.token_urlsafe(12)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin(name: str) -> Optional[str]:
    """A PostgreSQL server binary: on PATH, else where Debian's package puts it (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def missing_postgres() -> str:
    """What to install when PostgreSQL's server is absent, else ""."""
    return "" if postgres_bin("initdb") else "PostgreSQL's server is not installed: bash .ci/system-packages postgresql"


def _owner() -> Optional[pwd.struct_passwd]:
    """The unprivileged user to run the cluster as when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists for PostgreSQL")


class PostgresCluster:
    """initdb + pg_ctl in a temp dir, listening on a free port of 127.0.0.1 only."""

    def __init__(self) -> None:
        initdb = postgres_bin("initdb")
        if initdb is None:
            raise RuntimeError("PostgreSQL's initdb was not found (on PATH or /usr/lib/postgresql/*/bin): "
                               "install the server, e.g. `apt-get install -y postgresql` (.ci/run does)")
        self.bin_dir = Path(initdb).parent
        self.root = Path(tempfile.mkdtemp(prefix="lvsweep-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.owner = _owner()
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner.pw_name, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}")

    def start(self) -> PostgresCluster:
        self._run("initdb", "-D", str(self.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")
        return self

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on a free port of 127.0.0.1 with a database backend store and proxied
    artifacts under a local folder."""

    def __init__(self, backend_uri: str, artifacts: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = artifacts.parent / f"mlflow-server-{self.port}.log"
        artifacts.mkdir(parents=True, exist_ok=True)
        self.cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
                    "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", "2"]
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout_s: float = 120) -> MlflowServer:
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mlflow server did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
