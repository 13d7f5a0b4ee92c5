"""Tables of inputs through the real CLI: each row one command in a directory of its own, its
outcome checked against the promise (one stderr line naming the field, the exit status, no
traceback, no internal name, the store's runs before untouched and the new ones as expected).

`tests/test_bad_input.py` holds the bad values of settings; `tests/test_hostile_*.py` the rows
that need a prepared directory (a broken store, a data file, a read-only folder): a row's `setup`
prepares it before the command runs, and `store_runs` reads the store as SQLite itself does, so a
row whose store is not a database reads as one with no runs.

A row runs in a fresh interpreter of its own (not forked from one that imported the CLI: what a
command prints while it imports is part of what a row checks) unless it is marked `in_process` (`entry_calls(...)` marks a
group): then the CLI's entry function is called here (`helpers.inprocess.call_cli`), with the same
checks, a fraction of a second instead of seconds of imports. That is for rows refused before any
store is opened, of a kind that at least one row in its own process also covers: what only a
process shows (its exit status as the shell sees it, warnings printed while it imports, what the
interpreter prints as it shuts down) is the same for every row of one kind, and those rows check it.
A call that opens a store in its directory is reported as a problem of the row.
"""
from __future__ import annotations

import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from helpers.cli import run_cli
from helpers.inprocess import InProcessError, call_cli

INTERNAL_NAMES = ("Traceback", "LvsweepConfig", "TrainerConfig", "NoiseConfig", "SystemConfig", "ModelConfig",
                  "OptunaSweeperConf", "powered by Hydra", "Exception ignored")

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Row:
    args: tuple[str, ...]
    field: str  # what the stderr line must start with after "lvsweep: error: "
    exit: int = 2
    expects_run: Optional[str] = None  # None: the store gains no run; else the status of one new run
    says: str = ""  # a further substring the line must hold
    module: str = "lvsweep"  # or "lvsweep.report"
    setup: Optional[Setup] = None  # prepares the row's directory (after the seeded store is copied in)
    seeded: bool = True  # False: the directory starts empty (no store copied in)
    label: str = ""  # what the setup did, for the failure message
    in_process: bool = False  # True: the entry function is called in this process (see the module's doc)

    @property
    def name(self) -> str:
        where = " (in process)" if self.in_process else ""
        return f"{self.label + ': ' if self.label else ''}{self.module} {' '.join(self.args)}{where}"


def entry_calls(*rows: Row) -> list[Row]:
    """These rows, each run by calling the CLI's entry function in this process."""
    return [replace(row, in_process=True) for row in rows]


def store_runs(cwd: Path) -> list[tuple[str, str, str]]:
    """(run id, status, lvsweep.error tag) of every run, read straight from the SQLite file; none
    when there is no file or it is not a store."""
    db = cwd / "mlruns" / "mlflow.db"
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT r.run_uuid, r.status, COALESCE(t.value, '') FROM runs r LEFT JOIN tags t "
                               "ON t.run_uuid = r.run_uuid AND t.key = 'lvsweep.error' "
                               "ORDER BY r.start_time").fetchall()
    except sqlite3.DatabaseError:
        return []


def check_row(row: Row, cwd: Path, before: list[tuple[str, str, str]]) -> list[str]:
    """Run one row; the list of what is wrong with its outcome (empty: all as promised)."""
    start = time.monotonic()
    try:
        proc = (call_cli(cwd, *row.args, module=row.module) if row.in_process
                else run_cli(cwd, *row.args, module=row.module, timeout=240, fresh=True))
    except InProcessError as exc:
        return [f"[{row.name}] {exc}"]
    took = time.monotonic() - start
    lines = proc.stderr.strip().splitlines()
    problems = []
    if proc.returncode != row.exit:
        problems.append(f"exit {proc.returncode}, expected {row.exit}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, expected 1")
    elif not lines[0].startswith(f"lvsweep: error: {row.field}"):
        problems.append(f"the line does not start with 'lvsweep: error: {row.field}'")
    if row.says and row.says not in proc.stderr:
        problems.append(f"the line does not say {row.says!r}")
    problems += [f"stderr names {word!r}" for word in INTERNAL_NAMES if word in proc.stderr]
    after = store_runs(cwd)
    if after[:len(before)] != before:
        problems.append(f"runs recorded before changed: {before} -> {after[:len(before)]}")
    new = after[len(before):]
    if row.expects_run is None and new:
        problems.append(f"{len(new)} new run(s) in the store, expected none")
    if row.expects_run is not None:
        if len(new) != 1 or new[0][1] != row.expects_run:
            problems.append(f"new runs {[(r[1]) for r in new]}, expected one {row.expects_run}")
        elif row.field.split(":")[0] not in new[0][2]:
            problems.append(f"the run's reason {new[0][2]!r} does not name {row.field.split(':')[0]}")
    if problems:
        problems.insert(0, f"[{row.name}] ({took:.1f} s) stderr={proc.stderr.strip()[-600:]!r}")
    return problems


def check_rows(rows: list[Row], seeded_store: Path, tmp_path: Path, workers: int = 4) -> list[str]:
    """Every row in its own directory (a copy of `seeded_store` unless the row says otherwise, then
    its setup): the rows in processes of their own several at once, and meanwhile those in process
    one after another in this thread (the entry function installs signal handlers, which only the
    main thread may). Every problem found, each prefixed by its row, in the table's order."""
    def one(i_row: tuple[int, Row]) -> list[str]:
        i, row = i_row
        cwd = tmp_path / f"row{i}"
        cwd.mkdir()
        if row.seeded:
            shutil.copytree(seeded_store, cwd / "mlruns")
        if row.setup is not None:
            row.setup(cwd)
        return check_row(row, cwd, store_runs(cwd))

    numbered = list(enumerate(rows))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        own = {i: pool.submit(one, (i, row)) for i, row in numbered if not row.in_process}
        here = {i: one((i, row)) for i, row in numbered if row.in_process}
        found = {**here, **{i: future.result() for i, future in own.items()}}
    return [p for i, _ in numbered for p in found[i]]


def seed_store(cwd: Path) -> Path:
    """A store in `cwd` holding one FINISHED run, made with MLflow itself: what a user already recorded."""
    from helpers.store import client_for

    (cwd / "mlruns").mkdir()
    client = client_for(cwd)
    run = client.create_run(client.create_experiment("lvsweep"), run_name="earlier")
    client.log_param(run.info.run_id, "seed", "0")
    client.set_terminated(run.info.run_id, "FINISHED")
    return cwd / "mlruns"

