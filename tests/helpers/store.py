"""The one reader of what the CLI recorded: the MLflow store (a SQLite file under `<cwd>/mlruns`,
or a server's URI) and the Optuna study beside it, and waits on what appears there."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import optuna
from mlflow.tracking import MlflowClient

from lvsweep.tracking.stores import creation_lock

from .cli import HANG_S

EXPERIMENT = "lvsweep"
PARENT_TAG = "mlflow.parentRunId"
T = TypeVar("T")
Store = Path | str  # a launch directory (its mlruns/mlflow.db) or a tracking URI


def lvsweep_made_store(root: Path) -> Path:
    """`root/mlruns` holding a new empty store exactly as the CLI makes one in a directory that has
    none (its own `prepare_sqlite_store`): copied into a test's directory, it spares that test's
    first run MLflow's schema migrations (seconds) where the store's creation is not what is checked.
    The tests of the creation itself (signals while it is made, first runs at once, stores left
    unmade) and the first single run, sweep and study of tests/test_cli.py and
    tests/test_optuna_sweeper.py start in empty directories."""
    from lvsweep.tracking.runs import prepare_sqlite_store

    db = root / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True)
    prepare_sqlite_store(db, f"sqlite:///{db}")
    return db.parent


def with_store(template: Path, cwd: Path) -> Path:
    """`cwd` (made if need be) holding a copy of the store `template` (see `lvsweep_made_store`)."""
    import shutil

    cwd.mkdir(parents=True, exist_ok=True)
    shutil.copytree(template, cwd / "mlruns")
    return cwd


def store_uri(store: Store) -> str:
    """The tracking URI of the SQLite store a CLI run in this directory writes, or the URI given."""
    return store if isinstance(store, str) else f"sqlite:///{store}/mlruns/mlflow.db"


def client_for(store: Store) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(store))


def all_runs(store: Store, where: str = "") -> list:
    """Every run of the `lvsweep` experiment (narrowed by an MLflow filter), oldest first, or none
    while the store or the experiment does not exist yet."""
    uri = store_uri(store)
    if isinstance(store, Path):
        if not (store / "mlruns" / "mlflow.db").exists():
            return []
        with creation_lock(uri):  # a CLI may be creating the store right now
            exp = client_for(store).get_experiment_by_name(EXPERIMENT)
    else:
        exp = client_for(store).get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    return client_for(store).search_runs([exp.experiment_id], where, max_results=1000,
                                         order_by=["attributes.start_time ASC"])


def parents_and_children(store: Store) -> tuple[list, list]:
    """(runs that no run is parent of: single runs and sweeps' parents, the sweeps' jobs)."""
    runs = all_runs(store)
    return [r for r in runs if PARENT_TAG not in r.data.tags], [r for r in runs if PARENT_TAG in r.data.tags]


def child_runs(store: Store, parent_id: Optional[str] = None) -> list:
    """The jobs of every sweep in the store, or of the sweep whose parent run is `parent_id`."""
    return [r for r in parents_and_children(store)[1]
            if parent_id is None or r.data.tags[PARENT_TAG] == parent_id]


def sweep_parents(store: Store) -> list:
    """The parent runs of the sweeps (tagged `lvsweep.kind=sweep`), oldest first."""
    return all_runs(store, "tags.`lvsweep.kind` = 'sweep'")


def load_study(cwd: Path, name: str) -> optuna.Study:
    """The study a `search=...` sweep in `cwd` wrote to its default storage, mlruns/optuna.db."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/mlruns/optuna.db")


def dashboard_notes(study: optuna.Study) -> tuple[str, dict[int, str]]:
    """optuna-dashboard's notes as the dashboard itself reads them from the study's system
    attributes: (the study's note, {trial number: that trial's note}); "" where none was written."""
    from optuna_dashboard._note import get_note_from_system_attrs

    attrs = study._storage.get_study_system_attrs(study._study_id)
    return (get_note_from_system_attrs(attrs, None)["body"],
            {t.number: get_note_from_system_attrs(attrs, t._trial_id)["body"] for t in study.get_trials(deepcopy=False)})


def live_trials(cwd: Path, name: str) -> list:
    """The trials of a study a CLI in `cwd` is running, or none while its database or the study
    does not exist yet; read under the lock the CLI holds while it creates the database."""
    db = cwd / "mlruns" / "optuna.db"
    if not db.exists():  # opening it would create it, racing the CLI
        return []
    with creation_lock(f"sqlite:///{db}"):
        try:
            return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
        except KeyError:  # the study is not created yet
            return []


def wait_until(condition: Callable[[], T], proc: Optional[subprocess.Popen], what: str) -> T:
    """Poll `condition` until it returns something truthy, and return that. A CLI that exits first
    fails the test at once with its stderr, rather than leaving it to wait for the limit."""
    deadline = time.monotonic() + HANG_S
    while True:
        found = condition()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the CLI exited ({proc.returncode}) before {what}: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"still no {what} after {HANG_S:.0f} s: the CLI hangs")
        time.sleep(0.1)


def wait_for_run(cwd: Path, proc: Optional[subprocess.Popen], where: str, status: str = "RUNNING") -> Any:
    """The first run matching `where` (an MLflow filter) with this status, once the store has it."""
    return wait_until(lambda: next(iter(all_runs(cwd, f"attributes.status = '{status}' and {where}")), None),
                      proc, f"{status} run with {where}")


def wait_for_metric(cwd: Path, proc: Optional[subprocess.Popen], run_id: str, key: str) -> list:
    """The history of a metric, once the run has written at least one value of it to the store."""
    return wait_until(lambda: client_for(cwd).get_metric_history(run_id, key), proc, f"metric {key} in run {run_id}")
