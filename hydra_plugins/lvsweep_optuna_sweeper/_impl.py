"""The Optuna sweeper: ask trials, launch them as Hydra jobs, tell optuna what they returned.

Hydra imports every plugin on every start, single runs included, so optuna, MLflow and
matplotlib are imported only once a sweep actually begins.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.lvsweep_optuna_sweeper.storage import FaultSettings, Heartbeat, open_storage, recover, storage_label
from lvsweep.errors import LvsweepError

if TYPE_CHECKING:
    import optuna
    from hydra.core.utils import JobReturn
    from mlflow.tracking import MlflowClient
    from optuna.distributions import BaseDistribution

DIRECTIONS = ("maximize", "minimize")
FAILURE_ATTR = "lvsweep.failure"  # user attr of a failed trial: why it failed
TAGS = {"interval": {"log", "int"}, "range": {"log"}, "choice": set()}
PLAIN_STRING = re.compile(r"[A-Za-z_][\w\-./]*")


# ---------------------------------------------------------------- search space

@dataclass
class SearchSpace:
    """What to sample (name → distribution) and the overrides every trial shares."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    override_keys: dict[str, str] = field(default_factory=dict)  # name → key with its +/++ prefix
    fixed: dict[str, str] = field(default_factory=dict)  # key → full override line

    def trial_overrides(self, params: Mapping[str, Any]) -> list[str]:
        return [*self.fixed.values(),
                *(f"{self.override_keys[name]}={format_value(v)}" for name, v in params.items())]


def to_distribution(key: str, sweep: Any) -> BaseDistribution:
    """One sweep expression → the optuna distribution it means; anything else is a user error."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    where = f"hydra.sweeper.params.{key}"
    kind = {IntervalSweep: "interval", RangeSweep: "range", ChoiceSweep: "choice"}.get(type(sweep))
    if kind is None:
        raise LvsweepError(where, f"'{type(sweep).__name__}' cannot be searched; use interval(a, b), "
                                  "choice(a, b, ...), range(a, b, step) or tag(log, interval(a, b))")
    unknown = set(sweep.tags) - TAGS[kind]
    if unknown:
        allowed = ", ".join(sorted(TAGS[kind])) or "none"
        raise LvsweepError(where, f"unknown tag(s) {', '.join(sorted(unknown))} for {kind}; allowed: {allowed}")
    log = "log" in sweep.tags
    try:
        if isinstance(sweep, ChoiceSweep):
            bad = [v for v in sweep.list if v is not None and not isinstance(v, (str, int, float, bool))]
            if not sweep.list or bad:
                raise ValueError(f"choice needs one or more plain values (numbers, strings, booleans, null), "
                                 f"got {sweep.list}")
            return CategoricalDistribution(list(sweep.list))
        if isinstance(sweep, IntervalSweep):
            low, high = sweep.start, sweep.end
            if not low < high:
                raise ValueError(f"interval({low:g}, {high:g}) needs start < end")
            if "int" in sweep.tags:
                if low != int(low) or high != int(high):
                    raise ValueError(f"tag(int, interval({low:g}, {high:g})) needs whole-number bounds")
                return IntDistribution(int(low), int(high), log=log)
            return FloatDistribution(float(low), float(high), log=log)
        start, stop, step = sweep.start, sweep.stop, 1 if sweep.step is None else sweep.step
        if step <= 0 or not start < stop:
            raise ValueError(f"range({start}, {stop}, {step}) needs start < stop and step > 0")
        # Hydra's range is half-open like Python's; optuna's bounds are inclusive.
        last = start + (math.ceil((stop - start) / step - 1e-9) - 1) * step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, last, step=step, log=log)
        return FloatDistribution(float(start), round(float(last), 12), step=float(step), log=log)
    except ValueError as exc:
        raise LvsweepError(where, str(exc)) from exc


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """Config `params` first, then command-line overrides: a sweep there joins the search space."""
    parser = OverridesParser.create()
    space = SearchSpace()
    for line in [*(f"{key}={value}" for key, value in params.items()), *arguments]:
        try:
            override = parser.parse_override(line)
        except HydraException as exc:  # the parser raises it for any syntax error
            key = line.partition("=")[0]
            raise LvsweepError(f"hydra.sweeper.params.{key}", " ".join(str(exc).split())) from exc
        add_override(space, override)
    return space


def add_override(space: SearchSpace, override: Override) -> None:
    """A later override of the same key replaces an earlier one, searched or fixed."""
    name = override.get_key_element()
    prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
    space.distributions.pop(name, None)
    space.fixed.pop(name, None)
    if override.is_sweep_override():
        space.distributions[name] = to_distribution(name, override.value())
        space.override_keys[name] = prefix + name
    else:
        space.fixed[name] = override.input_line


def format_value(value: Any) -> str:
    """A sampled value as Hydra override text that parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if PLAIN_STRING.fullmatch(text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


# ---------------------------------------------------------------- study

def normalize_directions(direction: Any) -> list[str]:
    items = list(direction) if isinstance(direction, (list, tuple, ListConfig)) else [direction]
    names = [str(d).lower() for d in items]
    if not names or any(n not in DIRECTIONS for n in names):
        raise LvsweepError("hydra.sweeper.direction",
                           f"must be maximize, minimize or a list of them, got {direction}")
    return names


def trial_seed(seed: int, trial_number: int) -> int:
    """The seed mixed with the trial number: nearby seeds of numpy's generator can start with
    nearly equal draws (0 and 3 do), which would make trials 0 and 3 sample almost the same point."""
    import numpy as np

    return int(np.random.SeedSequence([seed % 2**32, trial_number]).generate_state(1)[0])


def make_sampler(cfg: Mapping[str, Any], trial_number: Optional[int] = None) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded per trial so that a resumed study or a second worker does not
    replay the draws of the first trials, while a fresh study stays reproducible."""
    from hydra.utils import instantiate
    from optuna.exceptions import ExperimentalWarning

    seed = cfg.get("seed")
    kwargs = {} if trial_number is None or seed is None else {"seed": trial_seed(int(seed), trial_number)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # e.g. BruteForceSampler, once per trial
        return instantiate(cfg, **kwargs)


def job_outcome(ret: JobReturn, n_values: int) -> tuple[Optional[list[float]], str]:
    """(values, "") for a usable result, else (None, why the trial failed)."""
    try:
        value = ret.return_value
    except Exception as exc:  # the job raised: Hydra re-raises it here
        return None, f"{type(exc).__name__}: {exc}"
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        return None, f"the job returned {value!r}, not a number"
    if len(values) != n_values:
        return None, f"the job returned {len(values)} value(s) for {n_values} direction(s)"
    if not all(math.isfinite(v) for v in values):
        return None, "objective is not finite: the job failed (its MLflow run has the reason)"
    return values, ""


class OptunaSweeper(Sweeper):
    """Ask `n_jobs` trials, launch them as one batch, tell the results; repeat until `n_trials`
    were added or the study holds `target_complete` COMPLETE trials, whichever comes first."""

    def __init__(self, direction: Any, storage: Optional[str], study_name: Optional[str], n_trials: Optional[int],
                 n_jobs: int, sampler: Any, params: Any, target_complete: Optional[int] = None,
                 heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                 max_retry: Optional[int] = None) -> None:
        self.directions = normalize_directions(direction)
        if n_trials is not None and n_trials < 0:
            raise LvsweepError("hydra.sweeper.n_trials", f"must be >= 0 or null, got {n_trials}")
        if target_complete is not None and target_complete < 1:
            raise LvsweepError("hydra.sweeper.target_complete", f"must be >= 1 or null, got {target_complete}")
        if n_trials is None and target_complete is None:
            raise LvsweepError("hydra.sweeper.n_trials", "null needs hydra.sweeper.target_complete, "
                                                         "else the search would never end")
        if n_jobs < 1:
            raise LvsweepError("hydra.sweeper.n_jobs", f"must be >= 1, got {n_jobs}")
        self.faults = FaultSettings(heartbeat_interval, grace_period, max_retry)
        self.faults.check()
        self.storage_url = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.target_complete = target_complete
        self.n_jobs = n_jobs
        self.sampler_cfg: dict[str, Any] = _plain(sampler)
        self.params: dict[str, Any] = _plain(params)
        self.objectives: list[str] = []
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.objectives = self.objective_names(config)

    def objective_names(self, config: DictConfig) -> list[str]:
        """The task's `objectives`, one per direction (placeholders when the task names none)."""
        objectives = [str(o) for o in config.get("objectives") or []]
        if objectives and len(objectives) != len(self.directions):
            raise LvsweepError("hydra.sweeper.direction",
                               f"{len(self.directions)} direction(s) for {len(objectives)} objective(s) "
                               f"({', '.join(objectives)}): give one direction per objective")
        return objectives or [f"objective{i}" for i in range(len(self.directions))]

    def sweep(self, arguments: list[str]) -> optuna.Study:
        import optuna

        space = parse_search_space(self.params, arguments)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_url, self.faults)
        study = optuna.create_study(storage=storage, study_name=self.study_name,
                                    sampler=make_sampler(self.sampler_cfg), directions=self.directions,
                                    load_if_exists=True)
        found = [d.name.lower() for d in study.directions]
        if found != self.directions:
            raise LvsweepError("hydra.sweeper.direction",
                               f"study '{study.study_name}' already exists with direction(s) {found}; "
                               "use those or another study_name")
        tracker = ParentRun.find(self.config)
        tracker.describe(study, self.storage_url, self.sampler_cfg)
        recover(study, self.storage_url, tracker.client, tracker.experiment_id)
        print(f"optuna study '{study.study_name}': {len(study.trials)} trial(s) so far, {self._goal()}")
        done = 0
        while (size := self._batch_size(study, done)) > 0:
            trials = [self._ask(study, space) for _ in range(size)]
            done += len(trials)
            with Heartbeat(storage, trials):
                exhausted = self._run_batch(study, trials, space)
            if exhausted:
                print("the sampler has covered the whole search space; stopping")
                break
            recover(study, self.storage_url, tracker.client, tracker.experiment_id)
        summary = study_summary(study, self.objectives)
        print(summary.text)
        tracker.record(summary, study, self.objectives)
        return study

    def _goal(self) -> str:
        goals = [f"adding up to {self.n_trials}"] if self.n_trials is not None else []
        if self.target_complete is not None:
            goals.append(f"until {self.target_complete} are COMPLETE")
        return ", ".join(goals)

    def _batch_size(self, study: optuna.Study, done: int) -> int:
        """Trials to ask next. Other workers' RUNNING trials count towards `target_complete` as
        on their way (stale ones were failed just before), so workers together do not overshoot."""
        from optuna.trial import TrialState

        size = self.n_jobs if self.n_trials is None else min(self.n_jobs, self.n_trials - done)
        if self.target_complete is not None:
            states = [t.state for t in study.get_trials(deepcopy=False)]
            size = min(size, self.target_complete - states.count(TrialState.COMPLETE)
                       - states.count(TrialState.RUNNING))
        return max(size, 0)

    def _ask(self, study: optuna.Study, space: SearchSpace) -> optuna.Trial:
        from optuna.trial import TrialState

        with warnings.catch_warnings():  # the sweeper beats itself (storage.Heartbeat), as optimize would
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
            trial = study.ask()
        if self.sampler_cfg.get("seed") is not None:
            study.sampler = make_sampler(self.sampler_cfg, trial.number)
        for name, dist in space.distributions.items():
            try:
                suggest(trial, name, dist)
            except ValueError as exc:  # the study searched this name with another kind of distribution
                study.tell(trial, state=TrialState.FAIL)
                raise LvsweepError(f"hydra.sweeper.params.{name}",
                                   f"{exc} Study '{study.study_name}' already searched it as another kind "
                                   "(float, int or choice); use another hydra.sweeper.study_name") from exc
        return trial

    def _overrides(self, study: optuna.Study, trial: optuna.Trial, space: SearchSpace) -> list[str]:
        """The trial's params plus tags that tie its MLflow child run to the trial."""
        return [*space.trial_overrides(trial.params),
                f"++tracking.tags.optuna_trial={trial.number}",
                f"++tracking.tags.optuna_study={format_value(study.study_name)}",
                f"++tracking.tags.optuna_storage={format_value(storage_label(self.storage_url))}",
                f"tracking.run_name=trial_{trial.number}"]

    def _run_batch(self, study: optuna.Study, trials: list[optuna.Trial], space: SearchSpace) -> bool:
        """Launch and tell one batch; True when the sampler says the search space is exhausted."""
        overrides = [self._overrides(study, t, space) for t in trials]
        try:
            returns = self._launch(trials, overrides)
        except Exception as exc:  # a sampled value Hydra cannot compose (e.g. an unknown group option)
            return any([self._tell(study, t, None, f"{type(exc).__name__}: {exc}") for t in trials])
        except BaseException as exc:  # Ctrl-C or SIGTERM (Lightning turns them into SystemExit): keep the study clean
            from lvsweep.interrupts import stop_reason

            for trial in trials:
                self._tell(study, trial, None, f"{stop_reason()} ({type(exc).__name__})")
            raise
        exhausted = False
        for trial, ret in zip(trials, returns):
            values, reason = job_outcome(ret, len(self.directions))
            exhausted |= self._tell(study, trial, values, reason)
        return exhausted

    def _launch(self, trials: list[optuna.Trial], overrides: list[list[str]]) -> list[JobReturn]:
        """Job number = trial number (so output dirs of parallel workers never clash): one launch per
        run of consecutive trial numbers, which is the whole batch unless another worker interleaved."""
        returns: list[JobReturn] = []
        start = 0
        for end in range(1, len(trials) + 1):
            if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                returns += self.launcher.launch(overrides[start:end], initial_job_idx=trials[start].number)
                start = end
        return returns

    def _tell(self, study: optuna.Study, trial: optuna.Trial, values: Optional[list[float]], reason: str) -> bool:
        """Record one result; True when the sampler asked to stop (its search space is exhausted)."""
        from optuna.trial import TrialState

        if values is None:
            trial.set_user_attr(FAILURE_ATTR, reason[:2000])
            print(f"  trial {trial.number}: FAIL ({reason})")
        else:
            print(f"  trial {trial.number}: " + ", ".join(f"{n} {v:.4g}" for n, v in zip(self.objectives, values)))
        try:
            if values is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, values)
        except RuntimeError as exc:
            # Grid-like samplers call `Study.stop()` once every point is taken; outside
            # `Study.optimize` that raises, after the trial is stored. Stop the sweep instead.
            if "Study.stop" not in str(exc):
                raise
            return True
        return False


def check_settings(config: DictConfig) -> None:
    """Every check of the sweeper's settings that needs no storage: the constructor's, the
    objectives against the directions, the search space. The sweep callback runs this before it
    opens the sweep's parent run, so a rejected setting leaves nothing behind in the store."""
    settings = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    assert isinstance(settings, dict)
    sweeper = OptunaSweeper(**{k: v for k, v in settings.items() if not str(k).startswith("_")})
    sweeper.objective_names(config)
    parse_search_space(sweeper.params, list(config.hydra.overrides.task))


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node or {})


# ---------------------------------------------------------------- tracking

@dataclass
class StudySummary:
    text: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def study_summary(study: optuna.Study, objectives: Sequence[str]) -> StudySummary:
    """The study's best (over every invocation and worker) as text and as MLflow params/metrics/tags."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    head = f"optuna study '{study.study_name}': {len(trials)} trial(s), {len(complete)} complete, {failed} failed"
    tags = {"optuna_n_trials": str(len(trials)), "optuna_n_complete": str(len(complete))}
    if not complete:
        return StudySummary(head + "; no complete trial yet", tags=tags)
    if len(study.directions) == 1:
        best = study.best_trial
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        tags["optuna_best_trial"] = str(best.number)
        return StudySummary(f"{head}\n  best {objectives[0]} = {best.value:.4g} (trial {best.number}): {shown}",
                            {f"best.{k}": v for k, v in best.params.items()},
                            {f"best/{objectives[0]}": float(best.value)}, tags)
    front = study.best_trials
    metrics = {}
    for i, (name, direction) in enumerate(zip(objectives, study.directions)):
        pick = max if direction.name == "MAXIMIZE" else min
        metrics[f"best/{name}"] = float(pick(t.values[i] for t in front))
    tags["optuna_pareto_trials"] = ",".join(str(t.number) for t in front)
    lines = [f"  trial {t.number}: " + ", ".join(f"{n} {v:.4g}" for n, v in zip(objectives, t.values))
             for t in front]
    return StudySummary(f"{head}\n  Pareto front ({len(front)} trial(s)):\n" + "\n".join(lines),
                        metrics=metrics, tags=tags)


def study_figures(study: optuna.Study, objectives: Sequence[str], out_dir: Path) -> list[Path]:
    """Optuna's matplotlib plots of the study as PNGs; a plot optuna cannot draw yet is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as plots

    multi = len(study.directions) > 1
    target: Optional[Callable[[Any], float]] = (lambda t: t.values[0]) if multi else None
    named = {"target": target, "target_name": objectives[0]}
    names = list(dict.fromkeys(n for t in study.get_trials(deepcopy=False) for n in t.params))
    makers: dict[str, Callable[[], Any]] = {
        "param_importances": lambda: plots.plot_param_importances(study, **named),
        "slice": lambda: plots.plot_slice(study, **named),
    }
    if multi:
        makers["pareto_front"] = lambda: plots.plot_pareto_front(study, target_names=list(objectives))
    else:
        makers["optimization_history"] = lambda: plots.plot_optimization_history(study, target_name=objectives[0])
    if len(names) >= 2:
        makers["contour"] = lambda: plots.plot_contour(study, params=names[:2], **named)
    written = []
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
                axes = make()
            fig = np.asarray(axes).ravel()[0].figure
            path = out_dir / f"{name}.png"
            fig.savefig(path, dpi=100, bbox_inches="tight")
            written.append(path)
        except Exception as exc:  # e.g. importances need two complete trials with distinct params
            print(f"  figure {name} skipped: {type(exc).__name__}: {exc}")
        finally:
            plt.close("all")
    return written


class ParentRun:
    """The sweep's MLflow parent run (opened by the sweep callback), if there is one."""

    def __init__(self, client: Optional[MlflowClient], experiment_id: Optional[str], run_id: Optional[str]) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = run_id

    @classmethod
    def find(cls, config: Optional[DictConfig]) -> ParentRun:
        """The parent run if the sweep callback opened one; the store in any case, where the
        sweeper closes runs that dead workers left open."""
        from lvsweep.tracking import PARENT_RUN_ENV, open_store, resolve_uri

        if config is None:
            return cls(None, None, None)
        client, experiment_id = open_store(resolve_uri(config.tracking.uri), config.tracking.experiment)
        return cls(client, experiment_id, os.environ.get(PARENT_RUN_ENV))

    def describe(self, study: optuna.Study, storage: Optional[str], sampler_cfg: Mapping[str, Any]) -> None:
        self._log(tags={"optuna_study": study.study_name,
                        "optuna_storage": storage_label(storage),
                        "optuna_directions": ",".join(d.name.lower() for d in study.directions),
                        "optuna_sampler": str(sampler_cfg.get("_target_"))})

    def record(self, summary: StudySummary, study: optuna.Study, objectives: Sequence[str]) -> None:
        if self.run_id is None:
            return
        self._log(params=summary.params, metrics=summary.metrics, tags=summary.tags)
        with tempfile.TemporaryDirectory() as tmp:
            for path in study_figures(study, objectives, Path(tmp)):
                self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def _log(self, params: Optional[Mapping[str, Any]] = None, metrics: Optional[Mapping[str, float]] = None,
             tags: Optional[Mapping[str, str]] = None) -> None:
        """One batched write: each write to the SQLite store costs about the same whatever its size."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        from lvsweep.stores import retry_locked

        now = int(time.time() * 1000)
        retry_locked(self.client.log_batch, self.run_id,
                              metrics=[Metric(k, v, now, 0) for k, v in (metrics or {}).items()],
                              params=[Param(k, str(v)) for k, v in (params or {}).items()],
                              tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])
