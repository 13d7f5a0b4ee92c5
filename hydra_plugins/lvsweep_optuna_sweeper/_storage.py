"""The study's database: opening it, the heartbeat that shows a worker is alive, and recovery
from workers that died in the middle of a trial.

The sweeper asks and tells trials itself (no `Study.optimize`), so it does by hand what
`optimize` does for heartbeats: beat while a trial runs, and fail stale trials (whose worker
stopped beating) before asking new ones. Optuna's retry callback then queues a stale trial's
params again, and the MLflow run the dead worker left RUNNING is closed as FAILED.
"""
from __future__ import annotations

import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional

from lvsweep.errors import LvsweepError

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

SQLITE_BUSY_TIMEOUT_S = 60


@dataclass(frozen=True)
class FaultSettings:
    """Optuna's RDBStorage heartbeat options, under the same names."""

    heartbeat_interval: Optional[int] = None  # seconds between beats; None: no heartbeat
    grace_period: Optional[int] = None  # silence after which a RUNNING trial is stale (optuna: 2 beats)
    max_retry: Optional[int] = None  # times a stale trial's params are queued again; None: always

    def check(self) -> None:
        for name in ("heartbeat_interval", "grace_period"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LvsweepError(f"hydra.sweeper.{name}", f"must be a whole number of seconds >= 1 or null, got {value}")
        if self.max_retry is not None and self.max_retry < 0:
            raise LvsweepError("hydra.sweeper.max_retry", f"must be >= 0 or null (no limit), got {self.max_retry}")


def open_storage(url: Optional[str], faults: FaultSettings) -> Any:
    """Optuna storage for a URL, with the heartbeat and the retry of stale trials; a new SQLite
    file is created by one worker at a time, and SQLite writers wait for each other's locks."""
    if url is None:
        return None
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from lvsweep.tracking.stores import check_reachable, creation_lock, sqlite_path

    kwargs: dict[str, Any] = {}
    if faults.heartbeat_interval is not None:
        kwargs = {"heartbeat_interval": faults.heartbeat_interval, "grace_period": faults.grace_period}
    db = sqlite_path(url)
    if db is None:
        check_reachable(url, "hydra.sweeper.storage")
    elif db.name and db.name != ":memory:":
        db.parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    with warnings.catch_warnings(), creation_lock(url):
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat and retry are "experimental"
        if faults.heartbeat_interval is not None:
            kwargs["heartbeat_stale_trial_callback"] = RetryHeartbeatStaleTrialCallback(max_retry=faults.max_retry)
        return RDBStorage(url, **kwargs)


class Heartbeat:
    """Beats for the trials under way from the sweeper's process while the launcher runs them.

    The sweeper waits for its jobs wherever they run (in process, joblib workers, submitit), so
    its beat stops exactly when the worker that owns the trials dies. Trials join when they are
    launched and leave when they are told, so with asynchronous slots the set changes as it beats."""

    def __init__(self, storage: Any) -> None:
        self.interval = None if storage is None else storage.get_heartbeat_interval()  # None: in memory
        self.storage = storage
        self._trial_ids: set[int] = set()  # optuna's own heartbeat thread uses the same ids
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, trial: optuna.Trial) -> None:
        """Beat for `trial` from now on, the first beat at once (as optuna's own heartbeat does): a
        worker killed before the thread's next beat still leaves a trial that goes stale."""
        with self._lock:
            self._trial_ids.add(trial._trial_id)
        if self.interval is not None:
            self._record(trial._trial_id)

    def remove(self, trial: optuna.Trial) -> None:
        with self._lock:
            self._trial_ids.discard(trial._trial_id)

    def __enter__(self) -> Heartbeat:
        if self.interval is not None:
            self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        while True:
            with self._lock:
                trial_ids = sorted(self._trial_ids)
            for trial_id in trial_ids:
                self._record(trial_id)
            if self._stop.wait(self.interval):
                return

    def _record(self, trial_id: int) -> None:
        from lvsweep.tracking.stores import retry_locked

        try:
            retry_locked(self.storage.record_heartbeat, trial_id)
        except Exception as exc:  # a missed beat is not fatal; a run of them makes the trial stale
            print(f"  heartbeat for trial id {trial_id} missed: {type(exc).__name__}: {exc}", file=sys.stderr)


def absolute_storage(storage: str) -> str:
    """The URL with a relative SQLite path made absolute: what a job started elsewhere opens."""
    from lvsweep.tracking.stores import sqlite_path

    db = sqlite_path(storage)
    if db is not None and db.name not in ("", ":memory:") and not db.is_absolute():
        return f"sqlite:///{Path.cwd() / db}"
    return storage


def storage_label(storage: Optional[str]) -> str:
    """Which database holds the study, as tagged on runs: password masked, a relative SQLite path
    made absolute, so two studies of one name in different databases are never confused."""
    from lvsweep.tracking.stores import mask_password

    return "in-memory" if storage is None else mask_password(absolute_storage(storage))


def recover(study: optuna.Study, storage: Optional[str], client: Optional[MlflowClient],
            experiment_id: Optional[str]) -> None:
    """Fail the trials of dead workers (Optuna queues their params again), then close the MLflow
    runs those workers left RUNNING. An in-memory study has no other workers to recover from."""
    if storage is None:
        return
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import fail_stale_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)
    if client is not None and experiment_id is not None:
        close_orphan_runs(client, experiment_id, study, storage_label(storage))


def close_orphan_runs(client: MlflowClient, experiment_id: str, study: optuna.Study, label: str) -> list[int]:
    """RUNNING MLflow runs whose trial Optuna has failed were left by a worker that died before it
    could close them: close each as FAILED with the reason, and its sweep's parent run too (a dead
    worker's parent run would otherwise stay RUNNING forever). Returns the trial numbers closed."""
    from optuna.trial import TrialState

    from lvsweep.tracking.runs import PARENT_TAG, close_run

    name, where = (v.replace("'", "\\'") for v in (study.study_name, label))
    open_runs = client.search_runs([experiment_id], max_results=10_000,
                                   filter_string=f"tags.optuna_study = '{name}' and tags.optuna_storage = '{where}' "
                                                 "and attributes.status = 'RUNNING'")
    if not open_runs:
        return []
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    closed = []
    for run in open_runs:
        number = int(run.data.tags.get("optuna_trial", "-1"))
        if states.get(number) != TrialState.FAIL:
            continue
        why = f"the worker stopped during trial {number} of study '{study.study_name}' without closing its run"
        close_run(client, run.info.run_id, "FAILED", f"{why}; Optuna has the trial as FAIL")
        parent = run.data.tags.get(PARENT_TAG)
        if parent and client.get_run(parent).info.status == "RUNNING":
            close_run(client, parent, "FAILED", why)
        print(f"  trial {number}: its worker had stopped; MLflow run {run.info.run_id} closed as FAILED")
        closed.append(number)
    return closed
