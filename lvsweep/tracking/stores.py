"""Database URIs shared by the MLflow store and the Optuna study: check, lock, retry.

Both sides talk to the same kinds of database (a SQLite file, PostgreSQL, an MLflow server), and
both fail the same ways at scale: a server that is not there (MLflow and SQLAlchemy would retry
for minutes before saying so), two processes creating a brand-new SQLite file at once (both run
the schema migration: "duplicate column name"), and SQLite's single writer ("database is locked"
when a reader upgrades to a writer while another process writes, which its busy timeout does not
cover). Each gets one answer here.
"""
from __future__ import annotations

import fcntl
import random
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar
from urllib.parse import urlsplit, urlunsplit

from lvsweep.errors import LvsweepError

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5
LOCKED_RETRY_S = 120.0  # give up on a locked SQLite store after this long
PG_LOCK_KEY = 0x6C7673776565  # any fixed 64-bit number: "lvswee"
_REACHED: set[str] = set()  # URIs already probed by this process


def mask_password(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_path(uri: str) -> Optional[Path]:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Held while a process opens a store that it may have to create or migrate, so a second
    process waits and then finds the tables made instead of making them again: an exclusive
    lock on `<db>.lock` beside a SQLite file, a session advisory lock on PostgreSQL."""
    db = sqlite_path(uri)
    if db is not None and db.name not in ("", ":memory:"):
        with open(db.with_name(db.name + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif uri.startswith("postgresql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
        finally:
            engine.dispose()
    else:
        yield


def check_reachable(uri: str, field: str) -> None:
    """Fail in seconds, naming the URI (password masked), when a database server or an MLflow
    tracking server does not answer. SQLite files and local paths are left to their owners."""
    if uri in _REACHED or uri.startswith("sqlite") or "://" not in uri or uri.startswith("file:"):
        return
    scheme = urlsplit(uri).scheme
    try:
        if scheme in ("http", "https"):
            _probe_http(uri)
        else:
            _probe_database(uri)
    except Exception as exc:  # any driver's error: refused, unknown host, bad password, no database
        cause = getattr(exc, "orig", None) or exc  # the driver's own message, without SQLAlchemy's wrapping
        text = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise LvsweepError(field, f"cannot reach {mask_password(uri)}: {_scrub(text, uri)[:300]}") from exc
    _REACHED.add(uri)


def _scrub(text: str, uri: str) -> str:
    password = urlsplit(uri).password
    return text.replace(password, "***") if password else text


def _probe_http(uri: str) -> None:
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # something answered (a proxy, an auth wall): the server is there
    except urllib.error.URLError as exc:
        raise ConnectionError(exc.reason) from exc


def _probe_database(uri: str) -> None:
    import sqlalchemy

    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if uri.startswith(("postgresql", "mysql")) else {}
    engine = sqlalchemy.create_engine(uri, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def is_locked_error(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


def retry_locked(write: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run one write, retrying with jittered exponential back-off while SQLite reports a lock."""
    delay, deadline = 0.05, time.monotonic() + LOCKED_RETRY_S
    while True:
        try:
            return write(*args, **kwargs)
        except Exception as exc:
            if not is_locked_error(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)
