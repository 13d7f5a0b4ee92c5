"""A store that fails, through the real CLI: not a database, damaged, in the way of a file, on a
full disk, half made by an older version; and an outputs folder that cannot be made. Each is one line naming `tracking.uri`, and nothing the
store held is changed; a store on a full disk still gets its run closed, with the reason."""
from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
from pathlib import Path

import pytest

from helpers.cli import Outcomes, error_line, finish_cli, run_cli, start_cli, together
from helpers.overrides import QUICK, QUICK_SWEEP
from helpers.store import all_runs, wait_for_run
from helpers.table import Row, check_rows, store_runs

DB = Path("mlruns") / "mlflow.db"


def text_store(cwd: Path) -> None:
    (cwd / "mlruns").mkdir(exist_ok=True)
    (cwd / DB).write_text("my notes, not a store\n")


def truncated_store(cwd: Path) -> None:
    """A copy cut short (a full disk while copying): SQLite's header, most of its pages gone."""
    data = (cwd / DB).read_bytes()
    (cwd / DB).write_bytes(data[:8192])


def foreign_database(cwd: Path) -> None:
    (cwd / "mlruns").mkdir(exist_ok=True)
    with sqlite3.connect(cwd / DB) as con:
        con.execute("CREATE TABLE notes (text TEXT)")


def half_migrated_with_runs(cwd: Path) -> None:
    """A store that holds a run but lost a table: never repaired behind the user's back."""
    with sqlite3.connect(cwd / DB) as con:
        con.execute("DROP TABLE params")


def mlruns_is_a_file(cwd: Path) -> None:
    (cwd / "mlruns").write_text("x\n")


def store_is_a_folder(cwd: Path) -> None:
    (cwd / DB).mkdir(parents=True)


def notes_file(cwd: Path) -> None:
    (cwd / "notes.txt").write_text("x\n")


def outputs_is_a_file(cwd: Path) -> None:
    (cwd / "outputs").write_text("x\n")


def read_only_store_folder(cwd: Path) -> None:
    os.chmod(cwd / "mlruns", 0o555)


STORE = "tracking.uri"
ROWS = [
    Row(tuple(QUICK), STORE, setup=text_store, seeded=False, says="not a SQLite database",
        label="text file as the store"),
    Row(tuple(QUICK), STORE, setup=truncated_store, label="truncated store"),
    Row(tuple(QUICK), STORE, setup=foreign_database, seeded=False, says="not an MLflow store",
        label="another program's database"),
    Row(tuple(QUICK), STORE, setup=half_migrated_with_runs, says="holds 1 run", label="half-migrated store"),
    Row(tuple(QUICK), STORE, setup=mlruns_is_a_file, seeded=False, says="is a file, not a folder",
        label="mlruns is a file"),
    Row(tuple(QUICK), STORE, setup=store_is_a_folder, seeded=False, says="is not a file", label="store is a folder"),
    Row((*QUICK, "tracking.uri=sqlite:///notes.txt/x.db"), STORE, setup=notes_file, says="is a file, not a folder",
        label="store under a file"),
    Row(("-m", "noise=0,1", *QUICK_SWEEP), STORE, setup=text_store, seeded=False, says="not a SQLite database",
        label="sweep, text file as the store"),
    Row(("-m", "search=optuna", "hydra.sweeper.n_trials=1", *QUICK_SWEEP), STORE, setup=text_store, seeded=False,
        says="not a SQLite database", label="study, text file as the store"),
    Row(("-m", "noise=0,1", *QUICK_SWEEP), STORE, setup=truncated_store, label="sweep, truncated store"),
    # the outputs' folder, beside the store: a single run is refused before its run opens; a sweep
    # makes its folder once its parent is open, which then records why it failed
    Row(tuple(QUICK), "hydra.run.dir", setup=outputs_is_a_file, says="Not a directory", label="outputs is a file"),
    Row(("-m", "noise=0,1", *QUICK_SWEEP), "hydra.sweep.dir", setup=outputs_is_a_file, expects_run="FAILED",
        label="sweep, outputs is a file"),
]
if os.geteuid() != 0:  # root writes through permissions
    ROWS.append(Row(tuple(QUICK), STORE, setup=read_only_store_folder, says="cannot write in",
                    label="read-only store folder"))


def test_a_store_that_fails_is_one_line_and_stays_as_it_was(seeded_store: Path, tmp_path: Path):
    failures = check_rows(ROWS, seeded_store, tmp_path)
    assert not failures, "\n".join(failures)
    text = tmp_path / "row0" / DB
    assert text.read_text() == "my notes, not a store\n"  # left exactly as it was
    assert sorted(p.name for p in (tmp_path / "row0" / "mlruns").iterdir()) == ["mlflow.db", "mlflow.db.lock"]


def make_half_made(cwd: Path) -> None:
    """A store whose creation an earlier version left unfinished (a signal while MLflow migrated
    its schema): migration tables, a leftover temporary table, no runs."""
    (cwd / "mlruns").mkdir()
    with sqlite3.connect(cwd / DB) as con:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        con.execute("CREATE TABLE experiments (experiment_id INTEGER, name VARCHAR(256))")
        con.execute("CREATE TABLE _alembic_tmp_jobs (id VARCHAR(36))")


def empty_file_store(cwd: Path) -> None:
    (cwd / "mlruns").mkdir()
    (cwd / DB).touch()


def fill_the_disk_while_training(cwd: Path) -> tuple[str, subprocess.Popen, str]:
    """A run whose store may no longer grow once it is training (RLIMIT_FSIZE of the running
    command, as a full filesystem would refuse it): its run id, the CLI (exited) and its stderr."""
    proc = start_cli(cwd, *QUICK, "trainer.epochs=20000")
    run = wait_for_run(cwd, proc, "attributes.status = 'RUNNING'")
    size = (cwd / DB).stat().st_size
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (size, size))
    _, err = finish_cli(proc)
    return run.info.run_id, proc, err


UNMADE = {"half made, no runs": make_half_made, "empty file": empty_file_store}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> Outcomes:
    """The stores left unmade, each run over by a QUICK run, and the full disk, made together
    rather than one test after another, each in a directory of its own: name -> (directory, result)."""
    def unmade(make) -> tuple[Path, subprocess.CompletedProcess]:
        cwd = tmp_path_factory.mktemp("unmade")
        make(cwd)
        return cwd, run_cli(cwd, *QUICK)

    def full_disk() -> tuple[Path, tuple]:
        cwd = tmp_path_factory.mktemp("full")
        return cwd, fill_the_disk_while_training(cwd)

    return together({**{name: (lambda make=make: unmade(make)) for name, make in UNMADE.items()},
                     "full disk": full_disk})


@pytest.mark.parametrize("name", list(UNMADE))
def test_a_store_left_unmade_is_made_anew(outcomes, name: str):
    tmp_path, proc = outcomes[name]
    assert proc.returncode == 0, proc.stderr
    [run] = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    kept = sorted(p.name for p in (tmp_path / "mlruns").glob("mlflow.db.unfinished-*"))
    if UNMADE[name] is make_half_made:
        assert len(kept) == 1 and "made anew" in proc.stdout
        with sqlite3.connect(tmp_path / "mlruns" / kept[0]) as con:  # the old file, untouched
            assert "_alembic_tmp_jobs" in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    else:
        assert kept == [] and "made anew" not in proc.stdout


def test_a_full_disk_still_closes_the_run_with_the_reason(outcomes):
    """The disk fills while the run trains: the store's file may not grow. The metrics that could
    not be written are lost, and said to be; the run is closed FAILED, not left RUNNING for the
    next command."""
    tmp_path, (run_id, proc, err) = outcomes["full disk"]
    line = error_line(subprocess.CompletedProcess(proc.args, proc.returncode, "", err))
    assert line.startswith("lvsweep: error: tracking.uri: the store refused a write")
    [closed] = [r for r in store_runs(tmp_path) if r[0] == run_id]
    assert closed[1] == "FAILED" and ("could not be written" in closed[2] or "refused a write" in closed[2]), closed
