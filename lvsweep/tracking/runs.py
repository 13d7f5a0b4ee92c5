"""MLflow tracking: the store, one run per job, parent runs for sweeps, batched metric writes.

Every write to the SQLite store costs ~10 ms whatever its size, so metrics are buffered and sent
with `log_batch` at most every few seconds and always when a run ends, failed or not: nothing a
run measured before it failed is lost.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from lvsweep import interrupts, slurm
from lvsweep.tracking import provenance
from lvsweep.errors import LvsweepError
from lvsweep.tracking.processes import process_gone, process_stamp
from lvsweep.tracking.stores import (check_reachable, check_sqlite_place, create_sqlite, creation_lock, mask_password,
                                     new_sqlite, retry_locked, sqlite_path)


T = TypeVar("T")
DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
PARENT_RUN_ENV = "LVSWEEP_PARENT_RUN_ID"
PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "lvsweep.error"
NOTE_TAG = "mlflow.note.content"  # the Markdown note the UI shows at the top of a run's page
HOST_TAG, PID_TAG = "lvsweep.host", "lvsweep.pid"  # which process owns a run, to tell a lost one
START_TAG = "lvsweep.pid_start"  # when that process started: a later process given the same pid is not it
_LOST_CHECKED: set[tuple[str, str]] = set()  # (store, experiment) already checked for lost runs by this process
# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, an assistant);
# this kind opens the training runs table, which is what every lvsweep experiment holds.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
STORE_TABLES = {"alembic_version", "experiments", "runs", "metrics", "params", "tags"}  # a whole store has these


def ui_link(experiment_id: str, host: str = "http://127.0.0.1:5000") -> str:
    """The experiment's runs table in `mlflow ui`. MLflow 3's UI opens an experiment in its GenAI
    view unless the link asks for the model-training view (it ignores the experiment's kind tag)."""
    return f"{host}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def run_link(experiment_id: str, run_id: str, host: str = "http://127.0.0.1:5000") -> str:
    """One run's page in `mlflow ui` (a sweep's parent: its children are listed there), in the
    model-training view for the same reason as `ui_link`."""
    return f"{host}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def resolve_uri(uri: Optional[str]) -> str:
    """`tracking.uri`, else $MLFLOW_TRACKING_URI, else the SQLite store under the launch directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def open_store(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """A client and the experiment id, creating the default store and the experiment if needed.

    A server that does not answer is reported in seconds; a SQLite store's place is checked before
    anything is written (a file in the way of its folder, a read-only folder), and a new one is
    created by one process at a time (others wait on a lock file beside it, then find it made) and
    atomically, so a command stopped while it creates the store leaves none rather than half of one."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # store creation and migration chatter
    # Its database errors, logged with a traceback, reach lvsweep as exceptions and are told in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    db = sqlite_path(uri)
    artifact_location = None
    if db is None:
        check_reachable(uri, "tracking.uri")
    else:
        check_sqlite_place(db, "tracking.uri")
        if uri == DEFAULT_URI:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LvsweepError("tracking.uri", f"cannot make the store's folder {db.parent}: "
                                                   f"{exc.strerror or exc}") from exc
            check_sqlite_place(db, "tracking.uri")
        elif not db.parent.is_dir():
            raise LvsweepError("tracking.uri", f"the store's directory {db.parent} does not exist "
                                               f"(uri {uri}); create it or use the default {DEFAULT_URI}")
        artifact_location = (db.parent.resolve() / "artifacts").as_uri()
    with creation_lock(uri):
        if db is not None:
            prepare_sqlite_store(db, uri)
        client, experiment_id = _open_experiment(uri, experiment, artifact_location)
    if (uri, experiment_id) not in _LOST_CHECKED:  # once per process: one query each time a command starts
        _LOST_CHECKED.add((uri, experiment_id))
        report_lost_runs(client, experiment_id)
    return client, experiment_id


def prepare_sqlite_store(db: Path, uri: str) -> None:
    """Make a new store atomically, and make anew one whose creation an earlier version left
    unfinished (a signal during its migration: leftover migration tables and no runs), keeping the
    old file beside it. Anything else that is not a whole store is refused in one line, untouched:
    it may hold runs that a repair could lose. Call it holding the store's creation lock."""
    if db.name == ":memory:":
        return
    if new_sqlite(db):
        create_sqlite(db, _make_mlflow_store)
        return
    try:
        with open(db, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except (OSError, sqlite3.DatabaseError) as exc:
        problem = (f"{db} is not a SQLite database" if isinstance(exc, sqlite3.DatabaseError) and header != SQLITE_HEADER
                   else f"cannot read the store {db}: {exc}")
        raise LvsweepError("tracking.uri", f"{problem} (uri {uri}); restore it from a copy, move it away or "
                                           "choose another tracking.uri") from exc
    leftovers = any(t.startswith("_alembic_tmp_") for t in tables)  # a migration cut short
    if STORE_TABLES <= tables and not leftovers:
        return  # a whole store (MLflow checks its schema's version itself)
    if not leftovers and "alembic_version" not in tables:
        raise LvsweepError("tracking.uri", f"{db} is a SQLite database but not an MLflow store (it has no "
                                           f"{', '.join(sorted(STORE_TABLES - tables))} table); move it away "
                                           "or choose another tracking.uri")
    if runs:
        raise LvsweepError("tracking.uri", f"the store {db} is half-migrated and holds {runs} run(s); "
                                           f"repair it with `mlflow db upgrade {uri}` or restore it from a copy")
    aside = db.with_name(f"{db.name}.unfinished-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(db, aside)
    create_sqlite(db, _make_mlflow_store)
    print(f"lvsweep: the store {db} was left unfinished by an interrupted creation and held no runs: "
          f"made anew (the old file is {aside.name})")


def _make_mlflow_store(uri: str) -> None:
    """MLflow's schema and its default experiment in a new database, as MLflow's client would make
    them, its connections closed again so the file can be moved into place.

    MLflow makes a schema by running every migration since its first (2-5 s on a laptop), the same
    every time for one MLflow version: so the empty store it made is kept (`store_template`) and
    later stores are a copy of it, with the one thing that differs made their own (the default
    experiment's artifact location, which MLflow resolves against the working directory, and its
    creation time). A template that cannot be read or written is ignored: MLflow makes the store."""
    db = Path(uri[len("sqlite:///"):])
    template = store_template()
    if template is not None and _copy_template(template, db):
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, MLFLOW_ARTIFACT_ROOT)
    store.engine.dispose()
    SqlAlchemyStore._engine_map.pop(uri, None)  # the class's engine cache: this URI is never used again
    if template is not None:
        _keep_template(db, template)


MLFLOW_ARTIFACT_ROOT = "./mlruns"  # MLflow's default artifact root for a database store
STORE_CACHE_ENV = "LVSWEEP_STORE_CACHE"  # where the empty-store template lives; "off" makes every store anew


def store_template() -> Optional[Path]:
    """The empty store this MLflow version made, in the user's cache (`$LVSWEEP_STORE_CACHE`, or
    `$XDG_CACHE_HOME/lvsweep`, or `~/.cache/lvsweep`), or None when templates are off."""
    import mlflow

    where = os.environ.get(STORE_CACHE_ENV)
    if where == "off":
        return None
    folder = Path(where) if where else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lvsweep"
    return folder / f"mlflow-{mlflow.__version__}-empty-store.db"


def _copy_template(template: Path, db: Path) -> bool:
    """`db` as a copy of a whole template, its default experiment made its own; False (and no `db`)
    when the template is missing or not a whole store."""
    from mlflow.utils.time import get_current_time_millis
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    try:
        shutil.copyfile(template, db)
        with closing(sqlite3.connect(db)) as con, con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            empty = STORE_TABLES <= tables and con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
            now = get_current_time_millis()
            changed = con.execute(
                "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                "WHERE experiment_id = 0", (append_to_uri_path(resolve_uri_if_local(MLFLOW_ARTIFACT_ROOT), "0"),
                                            now, now)).rowcount
            if empty and changed == 1 and con.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 1:
                return True
    except (OSError, sqlite3.Error):
        pass
    db.unlink(missing_ok=True)
    return False


def _keep_template(db: Path, template: Path) -> None:
    """A copy of the store MLflow just made, as the template (atomically; skipped if it cannot be written)."""
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        tmp = template.with_name(f".{template.name}.{os.getpid()}")
        shutil.copyfile(db, tmp)
        os.replace(tmp, template)
    except OSError:
        pass


def _open_experiment(uri: str, experiment: str, artifact_location: Optional[str]) -> tuple[MlflowClient, str]:
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                return client, client.create_experiment(experiment, artifact_location=artifact_location,
                                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except MlflowException as exc:  # another worker created it a moment ago
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(experiment)
        if exp.lifecycle_stage == "active" and EXPERIMENT_KIND_TAG not in exp.tags:  # made before the tag was set
            retry_locked(client.set_experiment_tag, exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except (MlflowException, SQLAlchemyError, sqlite3.Error, OSError) as exc:  # whatever layer found it
        raise LvsweepError("tracking.uri", f"cannot open the store {mask_password(uri)}: {first_line(exc)}") from exc
    if exp.lifecycle_stage != "active":
        raise LvsweepError("tracking.experiment", f"experiment '{experiment}' is deleted in {mask_password(uri)}; "
                                                  "restore it in the MLflow UI or choose another name")
    return client, exp.experiment_id


def first_line(exc: BaseException) -> str:
    """An error's own first line: the database driver's, without MLflow's and SQLAlchemy's
    wrapping and the link to a help page."""
    cause = next((getattr(e, "orig") for e in _chain(exc) if getattr(e, "orig", None) is not None), exc)
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first."""
    seen: set[int] = set()
    inner: Optional[BaseException] = exc
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        yield inner
        inner = inner.__cause__ or inner.__context__


def refused_write(exc: BaseException) -> bool:
    """True when the database or the disk under it refused a write (full, read-only, gone), as
    opposed to MLflow refusing what was written: the store is at fault, not lvsweep."""
    return any(isinstance(e, (sqlite3.Error, SQLAlchemyError, OSError)) for e in _chain(exc))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → {"dotted.key": leaf}; lists stay whole (one param each)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def write_batch(client: MlflowClient, run_id: str, *, params: Optional[Mapping[str, Any]] = None,
                metrics: Optional[Mapping[str, float] | list[Metric]] = None,
                tags: Optional[Mapping[str, str]] = None, step: int = 0) -> None:
    """One `log_batch` of params, metrics and tags: every write to a SQLite store costs about the
    same whatever its size, so everything lvsweep writes goes through here, retried while locked."""
    if isinstance(metrics, Mapping):
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    if params or metrics or tags:
        store_write(client.log_batch, run_id, metrics=list(metrics or []),
                    params=[Param(k, str(v)) for k, v in (params or {}).items()],
                    tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])


def store_write(write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One write to the store, retried while SQLite reports a lock; a write that the database or
    the disk refuses (full, read-only, damaged) becomes one line naming `tracking.uri`."""
    try:
        return retry_locked(write, *args, **kwargs)
    except Exception as exc:
        if refused_write(exc):
            raise LvsweepError("tracking.uri", f"the store refused a write ({first_line(exc)})") from exc
        raise


class RunRecorder:
    """One MLflow run: params once, metrics buffered, artifacts and a terminal status at the end."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_name: Optional[str],
                 parent_run_id: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
                 flush_every_s: float = 3.0, lead: Optional[str] = None) -> None:
        all_tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), **provenance.run_tags(),
                    **slurm.run_tags(), **(tags or {})}
        stamp = process_stamp(os.getpid())
        if stamp is not None:
            all_tags[START_TAG] = stamp
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = store_write(client.create_run, experiment_id, run_name=run_name, tags=all_tags).info.run_id
        self.flush_every_s = flush_every_s
        self.closed = False
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self._provenance_logged = False
        # The metric written first (the run's objective): MLflow's compare page opens its charts on
        # the first metric the chosen runs share in the order the store returns them, which is the
        # order of the first writes. Until it, or a history step past 0, has been logged, nothing is
        # written; then it goes first. None once written.
        self._lead = lead

    def log_params(self, params: Mapping[str, Any]) -> None:
        write_batch(self.client, self.run_id, params=params)

    def log_tags(self, tags: Mapping[str, str]) -> None:
        write_batch(self.client, self.run_id, tags=tags)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        interrupts.check()  # a job logs often: a stop signal that was swallowed on its way stops it here
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        held = self._lead is not None and self._lead not in metrics and step == 0
        if not held and time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            if self._lead is not None:
                lead = [m for m in self._pending if m.key == self._lead]
                self._pending = lead + [m for m in self._pending if m.key != self._lead]
                self._lead = None
            write_batch(self.client, self.run_id, metrics=self._pending)
            self._pending = []
        self._last_flush = time.monotonic()

    def log_artifacts(self, paths: Iterable[Path], root: Path) -> None:
        """Each file at its path under `root`, once. (Figures are not copied to the artifact root for
        MLflow's compare-runs page, which cannot show a sweep's figures at laptop size: a sweep is
        compared in its parent's `sweep_overview.png`, `lvsweep.tracking.overview`.)"""
        for path in paths:
            sub = path.parent.relative_to(root).as_posix()
            store_write(self.client.log_artifact, self.run_id, str(path), artifact_path=None if sub == "." else sub)

    def log_model(self, model: Any, model_input: Any, params: Optional[Mapping[str, Any]] = None) -> None:
        """The trained model as the run's `model` (see `log_model`); nothing when there is none."""
        if model is not None:
            log_model(self.client, self.run_id, model, model_input, params=params)

    def finish(self, error: Optional[BaseException] = None, status: Optional[str] = None) -> None:
        """Flush, then close as FINISHED, or FAILED/KILLED with the reason as a tag. Only the first
        call that gets through counts: a signal landing just after a run FINISHED (while the summary
        prints) must not turn it into KILLED; one landing inside this call leaves it open, and the
        interrupt path's call then closes it.

        A flush the store refuses (a full disk) loses only what it held: the run is still closed,
        FAILED, with how many values were lost and why, and the caller is told in one line. If the
        store refuses the close too, the line says the run is left RUNNING."""
        if self.closed:
            return
        try:
            self.flush()
            self.log_provenance()
        except Exception as exc:
            lost = f"{len(self._pending)} metric value(s) could not be written ({first_line(exc)})"
            self._pending = []
            reason = f"{describe_error(error)}; {lost}" if error is not None else lost
            self._close("FAILED" if error is None else status or "FAILED", reason, exc)
            if error is None:  # the caller thinks the run succeeded: it did not
                raise LvsweepError("tracking.uri", f"the store refused a write: {lost}; run {self.run_id} "
                                                   "is closed FAILED") from exc
            return
        if error is not None:
            self._close(status or "FAILED", describe_error(error))
        else:
            self._close(status or "FINISHED", None)

    def log_provenance(self) -> None:
        """`environment.json` (and `code.diff` for a source tree with uncommitted changes) at the
        artifact root, written as the run closes, when its job has loaded what it computes with."""
        if self._provenance_logged:
            return
        with tempfile.TemporaryDirectory(prefix="lvsweep-provenance-") as folder:
            files = provenance.write_files(Path(folder))
            self.log_artifacts(files, Path(folder))
        self._provenance_logged = True

    def _close(self, status: str, reason: Optional[str], why: Optional[BaseException] = None) -> None:
        try:
            if reason is None:
                store_write(self.client.set_terminated, self.run_id, status=status)
            else:
                close_run(self.client, self.run_id, status, reason)
        except Exception as exc:
            raise LvsweepError("tracking.uri", f"the store refused a write ({first_line(why or exc)}), so run "
                                               f"{self.run_id} is left RUNNING; the next command in this store "
                                               "closes it as lost") from exc
        self.closed = True


def describe_error(error: BaseException) -> str:
    return str(error) or type(error).__name__


def close_run(client: MlflowClient, run_id: str, status: str, reason: str) -> None:
    """End a run as FAILED or KILLED with the reason where the UI shows it."""
    write_batch(client, run_id, tags={ERROR_TAG: reason[:5000],
                                      NOTE_TAG: f"{status.title()}: {reason}"[:5000]})
    store_write(client.set_terminated, run_id, status=status)


def _owner_is_gone(run: Any) -> bool:
    """True when the process that opened the run was this one or has ended, on this host. A run
    owned elsewhere, or by a process still alive, may yet be closed by its owner."""
    tags = run.data.tags
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    pid = int(tags[PID_TAG])
    return pid == os.getpid() or process_gone(pid, tags.get(START_TAG))


def close_lost_runs(client: MlflowClient, experiment_id: str) -> list[Any]:
    """Close as FAILED every run of this host left RUNNING by a process that is gone (SIGKILL, the
    out-of-memory killer, a crash of the interpreter): nothing of that process can close it any
    more. Runs of live processes and of other hosts are never touched: from here those cannot be
    told dead from slow. One query, narrowed by status and host; returns the runs closed."""
    host = socket.gethostname()
    quoted = host.replace("'", "\\'")
    running = client.search_runs([experiment_id], max_results=10_000,
                                 filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{quoted}'")
    closed = []
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid() or not process_gone(int(pid), run.data.tags.get(START_TAG)):
            continue
        # The owner is gone, so the status cannot change under us any more: read it again, for a
        # run that its owner closed between the query and its end is not lost.
        if client.get_run(run.info.run_id).info.status != "RUNNING":
            continue
        close_run(client, run.info.run_id, "FAILED",
                  f"lost: process {pid} on host {host} is gone and left this run RUNNING (killed by SIGKILL "
                  f"or the out-of-memory killer, or crashed); closed by process {os.getpid()}")
        closed.append(run)
    return closed


def report_lost_runs(client: MlflowClient, experiment_id: str) -> None:
    """Close lost runs, saying so; a failure here must not stop the command that opened the store."""
    try:
        closed = close_lost_runs(client, experiment_id)
    except Exception as exc:
        print(f"lvsweep: warning: lost runs were not checked: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    for run in closed:
        print(f"run {run.info.run_id} ({run.info.run_name}) was left RUNNING by process "
              f"{run.data.tags[PID_TAG]}, which is gone: closed as FAILED (lost)")


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, where: str = "") -> list[Any]:
    """A sweep's child runs, oldest first, optionally narrowed by an MLflow filter."""
    both = f"tags.`{PARENT_TAG}` = '{parent_run_id}'" + (f" and {where}" if where else "")
    return client.search_runs([experiment_id], filter_string=both, order_by=["attributes.start_time ASC"],
                              max_results=10_000)


def close_lost_children(client: MlflowClient, experiment_id: str, parent_run_id: str, status: str,
                        reason: str, all_jobs_returned: bool, own_reason: Optional[str] = None) -> list[str]:
    """Close the sweep's child runs still RUNNING whose job can no longer close them (a launcher
    lost the job: its worker was killed). When the launcher says every job returned, any RUNNING
    child is lost; otherwise only those whose owning process is known to have ended. A run of this
    very process gets `own_reason` when one is given (the signal that is stopping it)."""
    running = child_runs(client, experiment_id, parent_run_id, "attributes.status = 'RUNNING'")
    # A run of a SLURM job that the accounting says has ended is lost on whatever host it ran.
    ended = slurm.final_states(r.data.tags[slurm.JOB_TAG] for r in running if slurm.JOB_TAG in r.data.tags)
    lost = []
    for run in running:
        job = run.data.tags.get(slurm.JOB_TAG)
        mine = run.data.tags.get(PID_TAG) == str(os.getpid())
        if job in ended:
            why = (f"lost: SLURM job {job} ended {ended[job]} (sacct) without closing this run (killed "
                   "before its handler could, or its node was lost)")
        elif all_jobs_returned or _owner_is_gone(run):
            why = own_reason if mine and own_reason else reason
        else:
            continue
        if client.get_run(run.info.run_id).info.status == "RUNNING":  # its job may have closed it meanwhile
            close_run(client, run.info.run_id, status, why)
            lost.append(run)
    return [r.info.run_name for r in lost]


def log_model(client: MlflowClient, run_id: str, model: Any, model_input: Any, name: str = "model",
              params: Optional[Mapping[str, Any]] = None) -> None:
    """The trained model as an MLflow PyTorch model of the run, under `name`, loadable with
    `mlflow.pytorch.load_model("runs:/<run id>/model")`.

    The signature and the input example are the run's own noisy input ([T, d], or [R, T, d] with
    replicates) and the reconstruction it gives, so a reader of the store knows what to feed it.
    Pickled, not exported to pt2: an exported program keeps only `forward`, and the point of the
    model is its `attention(...)` (loading needs lvsweep importable, for the classes). The
    requirements are given rather than inferred, which would import the model in a subprocess.

    The logged model is created here, in the run's experiment: left to itself, MLflow's fluent
    API would file it under the process's active experiment (the store's default one), where
    `runs:/` cannot find it. The fluent call also reads the global tracking URI, set to this
    client's (every lvsweep job of a process writes to one store).

    `params` (the run's config) are the logged model's own, so its page in the experiment's Models
    tab says what it was trained with (one write). Every model keeps the name `model`: MLflow
    resolves `runs:/<run id>/model` by the logged model's name, so a name per run would change the
    URI every run prints and the docs promise.
    """
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    example = np.asarray(model_input, dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
    finally:
        model.train(was_training)
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    experiment_id = retry_locked(client.get_run, run_id).info.experiment_id
    logged = retry_locked(client.create_logged_model, experiment_id, name=name, source_run_id=run_id,
                          params={k: str(v) for k, v in (params or {}).items()} or None)
    mlflow.set_tracking_uri(client.tracking_uri)
    # Its warning that pickles run code when loaded is this choice's known cost; once per run it is noise.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    # MLflow checks the requirements against the installed packages, when it saves the model and
    # again when it loads it back to try the input example, and for that maps the files of every
    # installed distribution, once per process: most of the 1.7-3.2 s a process's first model cost.
    # These requirements are the running torch's and mlflow's own versions, which that check cannot
    # find wanting: it is skipped for this call, and the requirements are written as given.
    import mlflow.pyfunc
    from mlflow.utils import environment as mlflow_environment

    checks = {module: module.warn_dependency_requirement_mismatches for module in (mlflow_environment, mlflow.pyfunc)
              if hasattr(module, "warn_dependency_requirement_mismatches")}
    for module in checks:
        module.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        retry_locked(mlflow.pytorch.log_model, model, name=name, run_id=run_id, model_id=logged.model_id,
                     signature=infer_signature(example, output), input_example=example,
                     pip_requirements=requirements, serialization_format="pickle")
    finally:
        for module, check in checks.items():
            module.warn_dependency_requirement_mismatches = check
