"""The store helpers against real SQLite files and real sockets (in process, fast)."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from lvsweep.errors import LvsweepError
from lvsweep.tracking.runs import STORE_CACHE_ENV, prepare_sqlite_store, store_template
from lvsweep.tracking.stores import check_reachable, creation_lock, mask_password, retry_locked
from helpers.cli import HANG_S
from helpers.servers import free_port


def test_a_write_that_meets_a_locked_database_is_retried_until_the_lock_goes(tmp_path):
    db = tmp_path / "x.db"
    sqlite3.connect(db).execute("CREATE TABLE t (v INTEGER)")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's write transaction
    attempts = []

    def write() -> None:
        attempts.append(1)
        if len(attempts) == 3:  # the lock goes after two refused attempts, however slow the machine
            holder.execute("COMMIT")
        with sqlite3.connect(db, timeout=0) as conn:  # no busy wait: SQLite answers "locked" at once
            conn.execute("INSERT INTO t VALUES (1)")

    retry_locked(write)
    assert len(attempts) == 3
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_other_errors_are_not_retried(tmp_path):
    calls = []

    def write() -> None:
        calls.append(1)
        sqlite3.connect(tmp_path / "y.db").execute("INSERT INTO missing VALUES (1)")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_locked(write)
    assert len(calls) == 1


def test_the_creation_lock_lets_one_holder_in_at_a_time(tmp_path):
    uri = f"sqlite:///{tmp_path}/s.db"
    order: list[str] = []

    trying = threading.Event()

    def second() -> None:
        trying.set()
        with creation_lock(uri):
            order.append("second")

    with creation_lock(uri):
        thread = threading.Thread(target=second)
        thread.start()
        assert trying.wait(HANG_S)
        thread.join(0.3)  # time for it to get in, were the lock not held
        assert thread.is_alive()  # waiting on the lock file
        order.append("first")
    thread.join(HANG_S)
    assert order == ["first", "second"] and (tmp_path / "s.db.lock").exists()


def test_unreachable_servers_are_named_with_the_password_masked():
    port = free_port()
    for uri in (f"postgresql://lv:hunter2@127.0.0.1:{port}/db", f"http://127.0.0.1:{port}"):
        with pytest.raises(LvsweepError) as err:
            check_reachable(uri, "tracking.uri")
        assert err.value.field == "tracking.uri" and "hunter2" not in str(err.value)
        assert f"cannot reach {mask_password(uri)}:" in str(err.value)
    assert mask_password(f"postgresql://lv:hunter2@h:{port}/db") == f"postgresql://lv:***@h:{port}/db"


def _contents(db) -> dict:
    """Schema and rows of a store, the default experiment's times left out."""
    with sqlite3.connect(db) as con:
        # Each statement's lines sorted: MLflow's migrations write a table's constraints in an order
        # that changes from one process to the next (hash seeds), the same schema either way.
        schema = sorted(sorted(line.strip().rstrip(",") for line in (row[0] or "").splitlines())
                        for row in con.execute("SELECT sql FROM sqlite_master"))
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables if t != "experiments"}
        rows["experiments"] = con.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage "
                                          "FROM experiments").fetchall()
        times = con.execute("SELECT creation_time, last_update_time FROM experiments").fetchall()
    return {"schema": schema, "rows": rows, "times": times}


def test_a_store_copied_from_the_template_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv(STORE_CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # MLflow resolves the default experiment's location against it
    template = store_template()
    made, copied = tmp_path / "made.db", tmp_path / "copied.db"
    prepare_sqlite_store(made, f"sqlite:///{made}")  # no template yet: MLflow makes it, and it is kept
    assert template.is_file()
    kept = template.stat().st_mtime_ns
    time.sleep(0.01)
    prepare_sqlite_store(copied, f"sqlite:///{copied}")
    assert template.stat().st_mtime_ns == kept  # copied, not made again
    a, b = _contents(made), _contents(copied)
    assert a["schema"] == b["schema"] and a["rows"] == b["rows"]
    assert a["rows"]["experiments"] == [(0, "Default", str(tmp_path / "mlruns" / "0"), "active")]
    assert b["times"][0][0] > a["times"][0][0]  # the copy's default experiment was made when it was

    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    moved = other / "moved.db"
    prepare_sqlite_store(moved, f"sqlite:///{moved}")
    assert _contents(moved)["rows"]["experiments"][0][2] == str(other / "mlruns" / "0")


def test_a_broken_template_is_made_anew_and_off_keeps_none(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    template = store_template()
    template.parent.mkdir()
    template.write_bytes(b"not a database")
    db = tmp_path / "a.db"
    prepare_sqlite_store(db, f"sqlite:///{db}")
    assert _contents(db)["rows"]["experiments"][0][1] == "Default"
    assert _contents(template)["schema"] == _contents(db)["schema"]  # replaced by a whole one

    monkeypatch.setenv(STORE_CACHE_ENV, "off")
    assert store_template() is None
    db = tmp_path / "b.db"
    prepare_sqlite_store(db, f"sqlite:///{db}")
    assert _contents(db)["schema"] == _contents(template)["schema"]
