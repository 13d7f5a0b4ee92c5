"""MLflow tracking: the store, one run per job, parent runs for sweeps, batched metric writes.

Every write to the SQLite store costs ~10 ms whatever its size, so metrics are buffered and sent
with `log_batch` at most every few seconds and always when a run ends, failed or not: nothing a
run measured before it failed is lost.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lvsweep.errors import LvsweepError

logging.getLogger("mlflow").setLevel(logging.WARNING)  # store creation and migration chatter

DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
PARENT_RUN_ENV = "LVSWEEP_PARENT_RUN_ID"
PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "lvsweep.error"


def resolve_uri(uri: Optional[str]) -> str:
    """`tracking.uri`, else $MLFLOW_TRACKING_URI, else the SQLite store under the launch directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def mask_password(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _sqlite_path(uri: str) -> Optional[Path]:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def open_store(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    """A client and the experiment id, creating the default store and the experiment if needed."""
    db = _sqlite_path(uri)
    artifact_location = None
    if db is not None:
        if uri == DEFAULT_URI:
            db.parent.mkdir(parents=True, exist_ok=True)
        elif not db.parent.is_dir():
            raise LvsweepError("tracking.uri", f"the store's directory {db.parent} does not exist "
                                               f"(uri {uri}); create it or use the default {DEFAULT_URI}")
        artifact_location = (db.parent.resolve() / "artifacts").as_uri()
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return client, client.create_experiment(experiment, artifact_location=artifact_location)
    except MlflowException as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LvsweepError("tracking.uri", f"cannot open the store {mask_password(uri)}: {first_line}") from exc
    if exp.lifecycle_stage != "active":
        raise LvsweepError("tracking.experiment", f"experiment '{experiment}' is deleted in {mask_password(uri)}; "
                                                  "restore it in the MLflow UI or choose another name")
    return client, exp.experiment_id


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


class RunRecorder:
    """One MLflow run: params once, metrics buffered, artifacts and a terminal status at the end."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_name: Optional[str],
                 parent_run_id: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
                 flush_every_s: float = 3.0) -> None:
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        self.client = client
        self.run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
        self.flush_every_s = flush_every_s
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []
        self._last_flush = time.monotonic()

    def log_artifacts(self, paths: Iterable[Path], root: Path) -> None:
        for path in paths:
            sub = path.parent.relative_to(root).as_posix()
            self.client.log_artifact(self.run_id, str(path), artifact_path=None if sub == "." else sub)

    def finish(self, error: Optional[BaseException] = None, status: Optional[str] = None) -> None:
        """Flush, then close as FINISHED, or FAILED/KILLED with the reason as a tag."""
        self.flush()
        if error is not None:
            reason = str(error) or type(error).__name__
            self.client.set_tag(self.run_id, ERROR_TAG, reason[:5000])
            self.client.set_tag(self.run_id, "mlflow.note.content", f"Failed: {reason}"[:5000])
        final = status or ("FAILED" if error is not None else "FINISHED")
        self.client.set_terminated(self.run_id, status=final)
