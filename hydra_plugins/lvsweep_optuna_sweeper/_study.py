"""The study loop: ask a batch of trials, launch them as Hydra jobs, tell optuna what they returned.

Imported only through the facade once a sweep begins, so optuna is imported at the top here.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Optional

import numpy as np
import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from hydra_plugins.lvsweep_optuna_sweeper._search_space import (SearchSpace, format_value, parse_search_space,
                                                                 suggest)
from hydra_plugins.lvsweep_optuna_sweeper._storage import FaultSettings, Heartbeat, open_storage, recover, storage_label
from hydra_plugins.lvsweep_optuna_sweeper._tracking import STUDY_TAG, TRIAL_TAG, ParentRun, study_summary
from lvsweep.errors import LvsweepError
from lvsweep.interrupts import note, stop_detail

DIRECTIONS = ("maximize", "minimize")
FAILURE_ATTR = "lvsweep.failure"  # user attr of a failed trial: why it failed


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
    return int(np.random.SeedSequence([seed % 2**32, trial_number]).generate_state(1)[0])


def make_sampler(cfg: Mapping[str, Any], trial_number: Optional[int] = None) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded per trial so that a resumed study or a second worker does not
    replay the draws of the first trials, while a fresh study stays reproducible."""
    seed = cfg.get("seed")
    kwargs = {} if trial_number is None or seed is None else {"seed": trial_seed(int(seed), trial_number)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # e.g. BruteForceSampler, once per trial
        return instantiate(cfg, **kwargs)


def check_sampler(cfg: Mapping[str, Any]) -> None:
    """Build the sampler once before anything is recorded: a wrong `_target_`, argument or seed is
    then one line naming `hydra.sweeper.sampler`, not an instantiation error after the sweep opened."""
    target = cfg.get("_target_")
    if not isinstance(target, str) or not target:
        raise LvsweepError("hydra.sweeper.sampler._target_", "must name an optuna sampler class, "
                                                             "e.g. optuna.samplers.TPESampler")
    try:
        make_sampler(cfg)
    except Exception as exc:
        inner: BaseException = exc
        while inner.__cause__ is not None:  # Hydra wraps the sampler's own error
            inner = inner.__cause__
        why = " ".join(str(inner).split()) or type(inner).__name__
        raise LvsweepError("hydra.sweeper.sampler", f"cannot build {target}: {why}") from exc


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


class StudySweeper:
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

    def check(self, config: DictConfig) -> None:
        """The checks that need the task's config but no storage: objectives against directions,
        and the search space (the constructor has checked the settings themselves)."""
        self.objective_names(config)
        parse_search_space(self.params, list(config.hydra.overrides.task))
        check_sampler(self.sampler_cfg)

    def sweep(self, arguments: list[str]) -> optuna.Study:
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
        if study.metric_names != self.objectives:  # optuna-dashboard then names what was optimised
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # stable since optuna 3.2, still flagged
                study.set_metric_names(self.objectives)
        tracker = ParentRun.find(self.config)
        tracker.describe(study, self.storage_url, self.sampler_cfg)
        recover(study, self.storage_url, tracker.client, tracker.experiment_id)
        print(f"optuna study '{study.study_name}': {len(study.trials)} trial(s) so far, {self._goal()}")
        done = 0
        while (size := self._batch_size(study, done)) > 0:
            trials = [self._ask(study, space) for _ in range(size)]
            done += len(trials)
            with Heartbeat(storage, trials):
                exhausted = self._run_batch(study, trials, space, tracker)
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
        size = self.n_jobs if self.n_trials is None else min(self.n_jobs, self.n_trials - done)
        if self.target_complete is not None:
            states = [t.state for t in study.get_trials(deepcopy=False)]
            size = min(size, self.target_complete - states.count(TrialState.COMPLETE)
                       - states.count(TrialState.RUNNING))
        return max(size, 0)

    def _ask(self, study: optuna.Study, space: SearchSpace) -> optuna.Trial:
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
                f"++tracking.tags.{TRIAL_TAG}={trial.number}",
                f"++tracking.tags.{STUDY_TAG}={format_value(study.study_name)}",
                f"++tracking.tags.optuna_storage={format_value(storage_label(self.storage_url))}",
                f"tracking.run_name=trial_{trial.number}"]

    def _run_batch(self, study: optuna.Study, trials: list[optuna.Trial], space: SearchSpace,
                   tracker: ParentRun) -> bool:
        """Launch and tell one batch; True when the sampler says the search space is exhausted.
        Each trial is given its MLflow run id before it is told (optuna refuses attributes after)."""
        overrides = [self._overrides(study, t, space) for t in trials]
        try:
            returns = self._launch(trials, overrides)
        except Exception as exc:  # a sampled value Hydra cannot compose (e.g. an unknown group option)
            return any([self._tell(study, t, None, f"{type(exc).__name__}: {exc}") for t in trials])
        except BaseException as exc:  # Ctrl-C or SIGTERM (Lightning turns them into SystemExit): keep the study clean
            note(exc)
            for trial in trials:
                self._tell(study, trial, None, f"{stop_detail()} ({type(exc).__name__})")
            raise
        tracker.link_trials(study, trials)
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


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node or {})
