"""The study's database: opening it, the heartbeat that shows a worker is alive, and recovery
from workers that died in the middle of a trial.

The sweeper asks and tells trials itself (no `Study.optimize`), so it does by hand what
`optimize` does for heartbeats: beat while a trial runs, and fail stale trials (whose worker
stopped beating) before asking new ones. Optuna's retry callback then queues a stale trial's
params again, and the MLflow run the dead worker left RUNNING is closed as FAILED.

The storage is opened once before the sweep's parent run is recorded (`opened_storage`, for
`StudySweeper.check_study`), so a URL that is not a database, or a study it holds that this sweep
cannot continue, is refused with nothing recorded.
"""
from __future__ import annotations

import re
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterator, Optional

from lvsweep.errors import LvsweepError

if TYPE_CHECKING:
    import optuna
    from mlflow.tracking import MlflowClient

SQLITE_BUSY_TIMEOUT_S = 60
STORAGE = "hydra.sweeper.storage"
# What the storage may be, for every refusal of it.
STORAGE_FORMS = ("a database URL: sqlite:///optuna.db (a path relative to the launch directory), "
                 "sqlite:////absolute/path/optuna.db, postgresql://user:password@host/db or mysql://user@host/db; "
                 "or null for a study kept in memory")
SCHEME = re.compile(r"[A-Za-z][\w+.-]*:")  # how a URL starts (`sqlite:`), where a path does not
# Beats a live worker's trial may miss before it counts as dead; optuna's own default grace.
MISSED_BEATS = 2


@dataclass(frozen=True)
class FaultSettings:
    """Optuna's RDBStorage heartbeat options, under the same names."""

    heartbeat_interval: Optional[int] = None  # seconds between beats; None: no heartbeat
    grace_period: Optional[int] = None  # silence after which a RUNNING trial is stale (optuna: 2 beats)
    max_retry: Optional[int] = None  # times a stale trial's params are queued again; None: always

    def check(self) -> None:
        """A grace period shorter than two beats fails live trials: beats come `heartbeat_interval`
        apart plus however long the database takes to take one (a SQLite writer waits for the
        others' locks), so with grace <= interval every live trial looks dead just before its next
        beat, and another worker fails it, reruns its params and leaves its owner a trial it
        cannot tell. Two beats (optuna's default) means a trial is failed only once a whole beat
        is missing."""
        for name in ("heartbeat_interval", "grace_period"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LvsweepError(f"hydra.sweeper.{name}", f"must be a whole number of seconds >= 1 or null, got {value}")
        interval, grace = self.heartbeat_interval, self.grace_period
        if interval is not None and grace is not None and grace < MISSED_BEATS * interval:
            raise LvsweepError("hydra.sweeper.grace_period",
                               f"must be at least {MISSED_BEATS} x hydra.sweeper.heartbeat_interval "
                               f"({MISSED_BEATS * interval} s), or null for exactly that, got {grace}: a live "
                               "worker beats every heartbeat_interval seconds plus the time a beat takes, so a "
                               "shorter grace makes other workers fail its running trials and run them again")
        if self.max_retry is not None and self.max_retry < 0:
            raise LvsweepError("hydra.sweeper.max_retry", f"must be >= 0 or null (no limit), got {self.max_retry}")


def check_storage_url(url: str) -> None:
    """The URL's form, before anything is opened: a path, a URL SQLAlchemy cannot parse, an
    unknown kind of database, or an in-memory SQLite database (each connection has its own, so
    the jobs and a second worker would never see the study) is refused naming the storage."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from lvsweep.tracking.stores import mask_password

    shown = mask_password(url)
    if "://" not in url and not SCHEME.match(url):
        hint = f" (for a SQLite file there, sqlite:///{url})" if url.strip() else ""
        what = "a path" if url.strip() else "empty"
        raise LvsweepError(STORAGE, f"'{shown}' is {what}, not a database URL{hint}; the storage is {STORAGE_FORMS}")
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except NoSuchModuleError as exc:
        kind = url.partition("://")[0] or "(none)"
        raise LvsweepError(STORAGE, f"unknown kind of database '{kind}' in '{shown}'; the storage is "
                                    f"{STORAGE_FORMS}") from exc
    except (ArgumentError, ValueError) as exc:
        raise LvsweepError(STORAGE, f"'{shown}' is not a well-formed database URL; the storage is "
                                    f"{STORAGE_FORMS}") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise LvsweepError(STORAGE, f"'{shown}' is an in-memory SQLite database, which each connection makes "
                                    f"anew (a SQLite file is sqlite:///path/optuna.db, three slashes before a "
                                    f"relative path); the storage is {STORAGE_FORMS}")


def open_storage(url: Optional[str], faults: FaultSettings) -> Any:
    """Optuna storage for a URL, with the heartbeat and the retry of stale trials; a new SQLite
    file is created by one worker at a time, and SQLite writers wait for each other's locks.
    Whatever stops it opening (the URL, the folder, a file that is not a database, the server,
    its driver) is one line naming the storage."""
    if url is None:
        return None
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from lvsweep.tracking.stores import check_reachable, check_sqlite_place, creation_lock, mask_password, sqlite_path

    check_storage_url(url)
    kwargs: dict[str, Any] = {}
    if faults.heartbeat_interval is not None:
        kwargs = {"heartbeat_interval": faults.heartbeat_interval, "grace_period": faults.grace_period}
    db = sqlite_path(url)
    if db is None:
        check_reachable(url, STORAGE)
    else:
        check_sqlite_place(db, STORAGE)
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LvsweepError(STORAGE, f"cannot make the study's folder {db.parent}: {exc.strerror or exc}") from exc
        check_sqlite_place(db, STORAGE)
        check_sqlite_file(db)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    try:
        with warnings.catch_warnings(), creation_lock(url):
            warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat and retry are "experimental"
            if faults.heartbeat_interval is not None:
                kwargs["heartbeat_stale_trial_callback"] = RetryHeartbeatStaleTrialCallback(max_retry=faults.max_retry)
            return RDBStorage(url, **kwargs)
    except Exception as exc:  # any driver's or SQLAlchemy's error: not a study database, no driver, ...
        cause = getattr(exc, "orig", None) or exc  # the driver's own words, without SQLAlchemy's wrapping
        why = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise LvsweepError(STORAGE, f"cannot open the study's database {mask_password(url)}: {why}; "
                                    f"the storage is {STORAGE_FORMS}") from exc


def check_sqlite_file(db: Path) -> None:
    """A file at the study's SQLite path must be a SQLite database (or empty, to be made one):
    opening anything else fails deep inside optuna, after the sweep would have been recorded."""
    if not db.is_file() or db.stat().st_size == 0:
        return
    with open(db, "rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise LvsweepError(STORAGE, f"{db} is not a SQLite database; move it away or give another path; "
                                    f"the storage is {STORAGE_FORMS}")


@contextmanager
def opened_storage(url: Optional[str]) -> Iterator[Any]:
    """The storage opened as the sweep will open it (None: in memory), for checks made before the
    sweep is recorded; its connections are closed again afterwards."""
    storage = open_storage(url, FaultSettings())
    try:
        yield storage
    finally:
        if storage is not None:
            storage.engine.dispose()


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
    worker's parent run would otherwise stay RUNNING forever). A run whose process is alive on
    this host is no orphan, though its trial was failed (as stale, its beats late): its job closes
    it with its own result. Returns the trial numbers closed."""
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
        if states.get(number) != TrialState.FAIL or owner_alive_here(run):
            continue
        why = f"the worker stopped during trial {number} of study '{study.study_name}' without closing its run"
        close_run(client, run.info.run_id, "FAILED", f"{why}; Optuna has the trial as FAIL")
        parent = run.data.tags.get(PARENT_TAG)
        if parent and client.get_run(parent).info.status == "RUNNING":
            close_run(client, parent, "FAILED", why)
        print(f"  trial {number}: its worker had stopped; MLflow run {run.info.run_id} closed as FAILED")
        closed.append(number)
    return closed


def owner_alive_here(run: Any) -> bool:
    """True when another process of this host that is still alive opened the run: its job is
    running, whatever Optuna says of its trial. This process's own runs, and other hosts' (which
    cannot be seen from here), are not."""
    import os
    import socket

    from lvsweep.tracking.processes import process_gone
    from lvsweep.tracking.runs import HOST_TAG, PID_TAG, START_TAG

    tags = run.data.tags
    pid = tags.get(PID_TAG, "")
    if tags.get(HOST_TAG) != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not process_gone(int(pid), tags.get(START_TAG))
