"""A Hydra callback that gives every multirun one MLflow parent run and a closing table.

The parent's id travels to the jobs in an environment variable, which in-process launchers see
directly and process-based launchers inherit when they start their workers.

Before the parent opens, the callback checks what can be checked up front: every swept value
composes (and, for a search, validates) into a job's config, and the Optuna sweeper's settings and
storage hold, so bad input is refused with nothing recorded.
"""
from __future__ import annotations

import copy
import math
import os
from typing import TYPE_CHECKING, Any, Optional, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lvsweep.cli import register_resolvers
from lvsweep.errors import LvsweepError
from lvsweep.tracking.overview import log_sweep_overview
from lvsweep.metric_names import BEST, ALIGN_ANTICORRELATION, ALIGN_EXCESS, ALIGN_PEARSON, ALIGN_PVALUE, ALIGN_SPEARMAN, ALIGN_TRAINING_GAIN, PERTURB_LOW_OVER_HIGH, VAL_LOSS, VAL_NOISY_MSE, VAL_R2

if TYPE_CHECKING:
    from lvsweep.tracking.runs import RunRecorder

OPTUNA_SWEEPER = "hydra_plugins.lvsweep_optuna_sweeper."
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
SWEPT_TAG = "lvsweep.swept"  # comma-separated params that vary across the sweep's child runs
SWEPT_METRIC = "swept/"  # + param: a numeric swept param again, as a metric the UI can plot and rounds
FAILED_JOBS: list[str] = []  # read by the entry point to choose the exit status
ACTIVE: list["MlflowSweepCallback"] = []  # the sweep under way, for the entry point to close on a fault
# A launcher's worker resolves its job's directory from the sweep's config in a process of its own,
# which imports this module when it receives the sweep's callbacks (Hydra ships them to every job).
register_resolvers()


class SweepAborted(BaseException):
    """A multirun that cannot be recorded must not start its jobs. Hydra turns an `Exception`
    raised by a callback into a warning and launches the jobs anyway, so the callback raises
    this instead, and the entry point reports the error it carries."""

    def __init__(self, error: LvsweepError) -> None:
        super().__init__(str(error))
        self.error = error


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent: Optional[RunRecorder] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._open_parent(config)
        except LvsweepError as exc:
            raise SweepAborted(exc) from exc

    def _open_parent(self, config: DictConfig) -> None:
        from lvsweep.tracking.stores import check_reachable

        target = str(config.hydra.sweeper.get("_target_", ""))
        if target.startswith(OPTUNA_SWEEPER):  # Hydra builds the sweeper only after this callback
            from hydra_plugins.lvsweep_optuna_sweeper.lvsweep_optuna_sweeper import check_before_recording

            check_before_recording(config, lambda overrides: compose_job(config, overrides, validated=True))
        else:
            if target == BASIC_SWEEPER:
                check_swept_values(config)
            storage = config.hydra.sweeper.get("storage")  # another database-backed sweeper's study
            if isinstance(storage, str):
                check_reachable(storage, "hydra.sweeper.storage")  # before anything is recorded
        from lvsweep.tracking.provenance import REPLAY_TAG
        from lvsweep.tracking.replay import REPLAY_PARENT_ENV
        from lvsweep.tracking.runs import PARENT_RUN_ENV, RunRecorder, open_store, resolve_uri  # MLflow: seconds

        client, experiment_id = open_store(resolve_uri(config.tracking.uri), config.tracking.experiment)
        overrides = " ".join(config.hydra.overrides.task)
        name, tags = f"sweep {overrides}".strip(), {}
        replayed = os.environ.get(REPLAY_PARENT_ENV)
        if replayed:  # python -m lvsweep.replay --all: the replay of a sweep, named after it
            name, tags = f"replay of {client.get_run(replayed).info.run_name}", {REPLAY_TAG: replayed}
        self.parent = RunRecorder(client, experiment_id, run_name=name,
                                  tags={"lvsweep.kind": "sweep", "lvsweep.overrides": overrides,
                                        "lvsweep.sweep_dir": str(config.hydra.sweep.dir), **tags})
        self.experiment_id = experiment_id
        os.environ[PARENT_RUN_ENV] = self.parent.run_id
        ACTIVE[:] = [self]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from lvsweep.tracking.runs import PARENT_RUN_ENV, child_runs, resolve_uri, run_link, ui_link

        if self.parent is None:
            return
        from lvsweep.tracking import closing

        closing.settle()  # the last job's run, and any other whose figures were still being drawn
        self.close_lost("FAILED", all_jobs_returned=True)
        children = child_runs(self.parent.client, self.experiment_id, self.parent.run_id)
        mark_swept(self.parent.client, self.parent.run_id, children)
        failed = [r.info.run_name for r in children if r.info.status != "FINISHED" and not was_pruned(r)]
        FAILED_JOBS[:] = failed
        scores = [r.data.metrics.get(ALIGN_ANTICORRELATION, math.nan) for r in children]
        finite = [s for s in scores if math.isfinite(s)]
        summary = {"sweep/jobs": len(children), "sweep/failed": len(failed),
                   "sweep/pruned": sum(map(was_pruned, children))}
        # A study's sweeper has logged its best (over every invocation of the study) under the same name.
        if finite and BEST + ALIGN_ANTICORRELATION not in self.parent.client.get_run(self.parent.run_id).data.metrics:
            summary[BEST + ALIGN_ANTICORRELATION] = max(finite)
        self.parent.log_metrics(summary, 0)
        log_sweep_overview(self.parent.client, self.parent.run_id, children)  # never raises: a warning at most
        self.parent.finish(status="FINISHED" if len(failed) < len(children) or not children else "FAILED")
        os.environ.pop(PARENT_RUN_ENV, None)
        ACTIVE.clear()
        print(format_table(children, self.parent.run_id))
        from lvsweep.tracking.provenance import origin

        print(f"  recorded with {origin(self.parent.client.get_run(self.parent.run_id).data.tags)}")
        uri = resolve_uri(config.tracking.uri)
        print(f"  browse with: mlflow ui --backend-store-uri {uri}\n"
              f"    then open {run_link(self.experiment_id, self.parent.run_id)}  (the sweep's parent run)\n"
              f"    or {ui_link(self.experiment_id)}  (all runs; the sweep's fold under {self.parent.run_id[:8]})")

    def close_lost(self, status: str, all_jobs_returned: bool, own_reason: Optional[str] = None) -> None:
        """Close the children no job will close. `own_reason`: why this process is stopping (a
        signal), for its own job's run, which the signal may have caught before the job's handler."""
        from lvsweep.tracking.runs import close_lost_children

        assert self.parent is not None
        close_lost_children(self.parent.client, self.experiment_id, self.parent.run_id, status,
                            "lost: the job's process ended without closing its run (killed, or dropped by "
                            "the launcher)", all_jobs_returned, own_reason)


def compose_job(config: DictConfig, overrides: Sequence[str], validated: bool) -> DictConfig:
    """Compose one job's config from the sweep's config and the job's overrides as its launcher
    will (Hydra's `load_sweep_config`), and, `validated`, check it as the job will; an error is
    raised as the one line a single run with these overrides would give."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from lvsweep.config import validate

    try:
        job = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
        if validated:
            with open_dict(job):
                del job["hydra"]
            validate(job)
    except (HydraException, OmegaConfBaseException) as exc:
        raise composition_error(exc) from exc
    return job


def composition_error(exc: Exception) -> LvsweepError:
    """A composition error as the one line a single run gives."""
    from lvsweep.cli import one_line

    field, _, problem = one_line(exc).partition(": ")
    return LvsweepError(field, problem)


def apply_value(job: DictConfig, override: Any) -> None:
    """Set one value override on a composed job as Hydra's composition does last (its own
    `_apply_overrides_to_config`, so the error is the one composing would give): a value key does
    not change which configs are composed, so this is the whole of what composing again would check,
    at a fraction of its cost (a job composes in about 0.1 s; a sweep pays that once per job in its
    launcher already)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        ConfigLoaderImpl._apply_overrides_to_config([override], job)
    except (HydraException, OmegaConfBaseException) as exc:
        raise composition_error(exc) from exc


def check_swept_values(config: DictConfig) -> None:
    """A plain multirun's jobs must compose: Hydra's basic sweeper composes each batch once the
    sweep is recorded, and one value it cannot compose (an unknown group option, a word for a
    number) stops the whole sweep there. So each swept value is composed here first, in turn, the
    other swept keys at their first value (a range at both ends), and refused in the line a single
    run gives. A value that composes but is out of range is left to its job, which records a
    FAILED run saying why while the other jobs go on."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import RangeSweep
    from hydra.errors import HydraException

    from hydra_plugins.lvsweep_optuna_sweeper._edits import value_text

    batch = config.hydra.sweeper.get("max_batch_size")
    if batch is not None and not batch >= 1:  # Hydra asserts it only once the sweep is recorded
        raise LvsweepError("hydra.sweeper.max_batch_size", f"must be a number of jobs >= 1, or null for all jobs "
                                                           f"in one batch, got {batch}")
    params = config.hydra.sweeper.get("params") or {}
    lines = [(f"hydra.sweeper.params.{key}", f"{key}={value}") for key, value in params.items()]
    lines += [(line.partition("=")[0].lstrip("~+"), line) for line in config.hydra.overrides.task]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    axes: dict[str, list[str]] = {}  # as the basic sweeper reads them: a later override of a key wins
    for field, line in lines:
        try:  # the sweeper's params are text Hydra parses only once the sweep is recorded
            override = parser.parse_override(line)
        except HydraException as exc:
            raise LvsweepError(field, " ".join(str(exc).split())) from exc
        key = override.get_key_element()
        if not override.is_sweep_override():
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
            continue
        if not override.is_discrete_sweep():
            raise LvsweepError(override.key_or_group,
                               f"{value_text(override.value())} is a range of real numbers, which only a "
                               "search samples (search=optuna); a plain multirun takes a list of values: a,b,c, "
                               "choice(a, b), range(start, stop, step) or glob(pattern)")
        values = [f"{key}={value}" for value in override.sweep_string_iterator()]
        if values:  # an empty range gives no jobs at all
            axes[key] = values[:1] + values[-1:] if isinstance(override.value(), RangeSweep) else values
    first = [values[0] for values in axes.values()]
    job = compose_job(config, first, validated=False)
    repository = GlobalHydra.instance().config_loader().repository
    for i, values in enumerate(axes.values()):
        for value in values[1:]:
            override = parser.parse_override(value)
            plain_value = (override.package is None and not (override.is_add() or override.is_delete())
                           and not repository.group_exists(override.key_or_group))
            if plain_value:
                apply_value(copy.deepcopy(job), override)  # a shallow copy shares nested nodes
            else:  # a config group's option, or an edit of the config's keys: composed whole
                compose_job(config, [*first[:i], value, *first[i + 1:]], validated=False)


def close_gone_jobs() -> None:
    """Close the runs of the sweep under way whose jobs have ended without closing them (the
    scheduler's accounting says so, or their process on this host is gone); for a launcher to
    call once a batch of jobs is back."""
    if ACTIVE:
        ACTIVE[0].close_lost("FAILED", all_jobs_returned=False)


def was_pruned(run: Any) -> bool:
    """A run its study's pruner stopped: KILLED on purpose, not a failure of the sweep."""
    from lvsweep.trial import PRUNED_TAG

    return PRUNED_TAG in run.data.tags


def mark_swept(client: Any, parent_run_id: str, children: list[Any]) -> list[str]:
    """Tag the parent and every child with the params that vary across the children, and log each
    numeric one on the children as the metric `swept/<param>`.

    Params are strings in MLflow: the UI shows `model.lr=0.00016899790776699308` in full (cut off
    in table cells) and its compare page plots params in alphabetical order, so a sweep's factors
    hide among ~60 fixed ones. The tag names the factors for the runs table and `tags.` filters;
    the metric copy is rounded for display and offered where metrics are plotted. The params
    themselves are the record and stay as they are."""
    from mlflow.entities import Metric

    from lvsweep.tracking.report import varying_params
    from lvsweep.tracking.runs import write_batch

    with_params = [r for r in children if r.data.params]
    swept = varying_params(with_params) if len(with_params) > 1 else []
    if not swept:
        return []
    tag = {SWEPT_TAG: ",".join(swept)}
    write_batch(client, parent_run_id, tags=tag)
    for run in with_params:
        metrics = []
        for key in swept:
            try:
                value = float(run.data.params[key])
            except (TypeError, ValueError):  # a choice such as model.name: the tag names it, no metric
                continue
            if math.isfinite(value):
                metrics.append(Metric(f"{SWEPT_METRIC}{key}", value, run.info.start_time or 0, 0))
        write_batch(client, run.info.run_id, metrics=metrics, tags=tag)
    return swept


# The closing table's columns: header, metric, format. Every column has fixed decimals, so the
# numbers of a column line up and compare by eye (a general format would mix 0.1234 with 1.2e-05).
TABLE_COLUMNS = (
    ("pearson", ALIGN_PEARSON, "+.3f"),
    ("spearman", ALIGN_SPEARMAN, "+.3f"),
    ("gain", ALIGN_TRAINING_GAIN, "+.3f"),
    ("excess", ALIGN_EXCESS, "+.3f"),
    ("p", ALIGN_PVALUE, ".3f"),
    ("low/high", PERTURB_LOW_OVER_HIGH, ".3f"),
    (VAL_LOSS, VAL_LOSS, ".3f"),
    ("input mse", VAL_NOISY_MSE, ".3f"),
    ("R²", VAL_R2, "+.3f"),
)


def format_table(children: list[Any], parent_id: str) -> str:
    """One row per job: status and the numbers that say what it found, each column right-aligned
    at fixed decimals; a metric a job did not log (it failed) shows as `-`."""
    def cell(run: Any, key: str, fmt: str) -> str:
        value = run.data.metrics.get(key, math.nan)
        return format(value, fmt) if math.isfinite(value) else "-"

    cells = [[cell(r, key, fmt) for _, key, fmt in TABLE_COLUMNS] for r in children]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, (header, _, _) in enumerate(TABLE_COLUMNS)]
    width = max([len(r.info.run_name or "") for r in children] + [3])
    lines = [f"\nsweep parent run {parent_id}: {len(children)} jobs "
             "(gain: anticorrelation trained − untrained; excess: over the strongest baseline; "
             "input mse: the noisy input's own error)",
             f"  {'job':<{width}}  {'status':<8}" + "".join(f"  {h:>{w}}" for (h, _, _), w in zip(TABLE_COLUMNS, widths))]
    for r, row in zip(children, cells):
        status = "PRUNED" if was_pruned(r) else r.info.status
        lines.append(f"  {r.info.run_name or '':<{width}}  {status:<8}"
                     + "".join(f"  {c:>{w}}" for c, w in zip(row, widths)))
    return "\n".join(lines)
