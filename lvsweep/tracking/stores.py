"""Database URIs shared by the MLflow store and the Optuna study: check, lock, retry.

Both sides talk to the same kinds of database (a SQLite file, PostgreSQL, an MLflow server), and
both fail the same ways at scale: a server that is not there (MLflow and SQLAlchemy would retry
for minutes before saying so), two processes creating a brand-new SQLite file at once (both run
the schema migration: "duplicate column name"), a process stopped while it creates one (a
signal during the second the migration takes left a half-made file that no later command could
open), and SQLite's single writer ("database is locked" when a reader upgrades to a writer while
another process writes, which its busy timeout does not cover). Each gets one answer here.
"""
from __future__ import annotations

import fcntl
import os
import random
import tempfile
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


def new_sqlite(db: Path) -> bool:
    """True when no database is at `db` yet: no file, or an empty one (`touch`, or a bare connect)."""
    return not db.exists() or (db.is_file() and db.stat().st_size == 0)


def create_sqlite(db: Path, make: Callable[[str], None]) -> None:
    """Make a new SQLite database at `db` so that no one ever finds it half-made: `make` builds it
    at a temporary path beside it (given as a URI), which is then renamed into place in one step.
    A process stopped meanwhile leaves only its temporary file, which the next creator deletes.
    Call it holding `creation_lock`, so the temporary files found are no live process's."""
    for left in db.parent.glob(f".{db.name}.creating-*"):
        left.unlink(missing_ok=True)
    tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        make(f"sqlite:///{tmp}")
        os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)


def check_sqlite_place(db: Path, field: str) -> None:
    """Refuse, naming `field`, a SQLite path whose folder is not one (a plain file in its way) or
    cannot be written (SQLite writes its journal beside the file), or a file that is not a file."""
    if db.name in ("", ":memory:"):
        return
    folder = db.parent
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise LvsweepError(field, f"{above} is a file, not a folder, so the store {db} cannot be made "
                                          "there; move that file away or choose another path")
            break
    if db.exists() and not db.is_file():
        raise LvsweepError(field, f"{db} is not a file; the store must be a SQLite file")
    if folder.is_dir():
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise LvsweepError(field, f"cannot write in {folder} ({exc.strerror or exc}), where the store "
                                      f"{db.name} and its journal live; make it writable or choose another path") from exc
        if db.exists() and not os.access(db, os.W_OK):
            raise LvsweepError(field, f"{db} is read-only; make it writable or choose another path")


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
