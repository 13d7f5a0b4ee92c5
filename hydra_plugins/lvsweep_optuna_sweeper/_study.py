"""The study loop: ask trials, launch them as Hydra jobs, tell optuna what they returned.

With `n_jobs` > 1 the trials run in asynchronous slots: each launch is one trial in a thread of
its own, and a new trial is asked as soon as any running one ends, so a slow trial holds one slot,
not the whole batch (`slots: batch` keeps the older ask-n, wait-for-all behaviour).

Imported only through the facade once a sweep begins, so optuna is imported at the top here;
the study's MLflow side (`_tracking`: MLflow, matplotlib, seconds of imports) only once the sweep
runs, so that settings refused before anything is recorded are refused quickly.
"""
from __future__ import annotations

import math
import os
import queue
import signal
import threading
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import numpy as np
import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, check_distribution_compatibility
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

from hydra_plugins.lvsweep_optuna_sweeper._edits import format_value, value_text
from hydra_plugins.lvsweep_optuna_sweeper._progress import Progress, launcher_log
from hydra_plugins.lvsweep_optuna_sweeper._search_space import SearchSpace, parse_search_space, suggest, sweep_text
from hydra_plugins.lvsweep_optuna_sweeper._storage import (FaultSettings, Heartbeat, absolute_storage, open_storage,
                                                           opened_storage, recover, storage_label)
from lvsweep.errors import LvsweepError
from lvsweep.interrupts import note, stop_detail
from lvsweep.metric_names import HISTORY_METRICS
from lvsweep.trial import PRUNED, TrialStop

if TYPE_CHECKING:
    from hydra_plugins.lvsweep_optuna_sweeper._tracking import ParentRun

DIRECTIONS = ("maximize", "minimize")
SLOTS = ("async", "batch")
PARALLEL_LAUNCHERS = "hydra/launcher=joblib, submitit_local or slurm"
STOP_GRACE_S = 60.0  # after a stop, how long the jobs of running trials get to close their runs
FAILURE_ATTR = "lvsweep.failure"  # user attr of a failed trial: why it failed
PRUNED_ATTR = "lvsweep.pruned"  # user attr of a pruned trial: at which step, on which value
Compose = Callable[[Sequence[str]], None]  # composes and validates one job's config from its overrides, or raises


def check_directions(study_name: str, found: list[str], wanted: list[str]) -> None:
    """A study keeps the directions it was created with: continuing it with others would mix
    values optimised the other way."""
    if found != wanted:
        raise LvsweepError("hydra.sweeper.direction",
                           f"study '{study_name}' already exists with direction(s) {', '.join(found)}; give "
                           f"hydra.sweeper.direction={found[0] if len(found) == 1 else '[' + ','.join(found) + ']'} "
                           "to continue it, or another hydra.sweeper.study_name")


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


def make_pruner(cfg: Optional[Mapping[str, Any]]) -> Optional[optuna.pruners.BasePruner]:
    if cfg is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # e.g. WilcoxonPruner
        return instantiate(cfg)


def check_target(cfg: Mapping[str, Any], field: str, kind: str, example: str, make: Any) -> None:
    """Build a sampler or pruner once before anything is recorded: a wrong `_target_`, argument
    or seed is then one line naming the field, not an instantiation error after the sweep opened."""
    target = cfg.get("_target_")
    if not isinstance(target, str) or not target:
        raise LvsweepError(f"{field}._target_", f"must name an optuna {kind} class, e.g. {example}")
    try:
        built = make(cfg)
    except Exception as exc:
        inner: BaseException = exc
        while inner.__cause__ is not None:  # Hydra wraps the class's own error
            inner = inner.__cause__
        why = " ".join(str(inner).split()) or type(inner).__name__
        raise LvsweepError(field, f"cannot build {target}: {why}") from exc
    base = optuna.samplers.BaseSampler if kind == "sampler" else optuna.pruners.BasePruner
    if not isinstance(built, base):
        raise LvsweepError(field, f"{target} is not an optuna {kind}")


def check_sampler(cfg: Mapping[str, Any]) -> None:
    check_target(cfg, "hydra.sweeper.sampler", "sampler", "optuna.samplers.TPESampler", make_sampler)


@dataclass(frozen=True)
class Outcome:
    """What a job's return means for its trial: the state to tell, the values, why not COMPLETE."""

    state: TrialState
    values: Optional[list[float]] = None
    reason: str = ""


def job_outcome(ret: JobReturn, n_values: int) -> Outcome:
    """COMPLETE with values for a usable result; PRUNED for a job its pruner stopped; else FAIL and why."""
    try:
        value = ret.return_value
    except Exception as exc:  # the job raised: Hydra re-raises it here
        return failed(exc)
    if isinstance(value, TrialStop):
        return Outcome(TrialState.PRUNED if value.kind == PRUNED else TrialState.FAIL, reason=value.reason)
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        return Outcome(TrialState.FAIL, reason=f"the job returned {value!r}, not a number")
    if len(values) != n_values:
        return Outcome(TrialState.FAIL, reason=f"the job returned {len(values)} value(s) for {n_values} direction(s)")
    if not all(math.isfinite(v) for v in values):
        return Outcome(TrialState.FAIL, reason="objective is not finite: the job failed (its MLflow run has the reason)")
    return Outcome(TrialState.COMPLETE, values)


def failed(exc: BaseException) -> Outcome:
    return Outcome(TrialState.FAIL, reason=f"{type(exc).__name__}: {exc}")


class StudySweeper:
    """Ask trials, launch them, tell the results, until `n_trials` were added or the study holds
    `target_complete` COMPLETE trials, whichever comes first; `n_jobs` trials run at once."""

    def __init__(self, direction: Any, storage: Optional[str], study_name: Optional[str], n_trials: Optional[int],
                 n_jobs: int, sampler: Any, params: Any, target_complete: Optional[int] = None,
                 heartbeat_interval: Optional[int] = None, grace_period: Optional[int] = None,
                 max_retry: Optional[int] = None, pruner: Any = None, monitor: Optional[str] = None,
                 enqueue: Any = None, trial_timeout: Optional[float] = None, slots: str = "async") -> None:
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
        if slots not in SLOTS:
            raise LvsweepError("hydra.sweeper.slots", f"must be one of {', '.join(SLOTS)}, got {slots}")
        if trial_timeout is not None and not trial_timeout > 0:
            raise LvsweepError("hydra.sweeper.trial_timeout", f"must be seconds > 0 or null, got {trial_timeout}")
        self.faults = FaultSettings(heartbeat_interval, grace_period, max_retry)
        self.faults.check()
        self.storage_url = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.target_complete = target_complete
        self.n_jobs = n_jobs
        self.slots = slots
        self.sampler_cfg: dict[str, Any] = _plain(sampler)
        self.pruner_cfg: Optional[dict[str, Any]] = None if pruner is None else _plain(pruner)
        self.monitor = monitor
        self.enqueue: list[dict[str, Any]] = [_plain(e) for e in (enqueue or [])]
        self.trial_timeout = trial_timeout
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

    def check(self, config: DictConfig) -> SearchSpace:
        """The checks that need the task's config but no storage: objectives against directions,
        the search space, the sampler and pruner, the launcher for parallel slots, the warm start
        (the constructor has checked the settings themselves). Returns the search space."""
        objectives = self.objective_names(config)
        space = parse_search_space(self.params, list(config.hydra.overrides.task))
        check_sampler(self.sampler_cfg)
        self.check_pruner(objectives)
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if self.n_jobs > 1 and launcher.endswith("BasicLauncher"):
            raise LvsweepError("hydra.sweeper.n_jobs", f"{self.n_jobs} trials at once need a launcher that runs "
                                                       f"jobs in parallel ({PARALLEL_LAUNCHERS}); the basic "
                                                       "launcher runs one job at a time")
        for i, params in enumerate(self.enqueue):
            check_point(space, params, f"hydra.sweeper.enqueue[{i}]")
        return space

    def check_values(self, space: SearchSpace, compose: Compose) -> None:
        """Compose and validate a trial's config for every value a searched param may take, before
        the sweep is recorded: each choice of a categorical and both ends of a range, in turn, the
        other params at their first such value. A choice Hydra cannot compose (an unknown group
        option, a word for a number) or a range reaching past what the config allows is refused in
        one line naming the param and the value, as a single run with that value would be, instead
        of failing trials one after another (the ones that do not compose without even a run)."""
        probes = {name: probe_values(dist) for name, dist in space.distributions.items()}
        first = {name: values[0] for name, values in probes.items()}
        try:
            compose(space.trial_overrides(first))
        except LvsweepError as exc:
            if exc.field not in probes:
                raise  # a fixed override's or the preset's own problem, said as a single run says it
            raise searched_value_error(exc.field, first[exc.field], space.distributions[exc.field], exc) from exc
        for name, values in probes.items():
            for value in values[1:]:
                try:
                    compose(space.trial_overrides({**first, name: value}))
                except LvsweepError as exc:
                    raise searched_value_error(name, value, space.distributions[name], exc) from exc

    def check_study(self, space: SearchSpace) -> None:
        """Open the storage as the sweep will, before the sweep is recorded, and hold the study of
        this name it may already have against this sweep: the same directions, and every searched
        param searched as before (optuna refuses another kind of distribution, or other choices,
        under one name). Nothing is created: a new study is made by the sweep itself."""
        with opened_storage(self.storage_url) as storage:
            if storage is None or self.study_name is None:
                return
            try:
                study_id = storage.get_study_id_from_name(self.study_name)
            except KeyError:  # a new study
                return
            check_directions(self.study_name, [d.name.lower() for d in storage.get_study_directions(study_id)],
                             self.directions)
            check_searched_as_before(self.study_name, storage.get_all_trials(study_id, deepcopy=False), space)

    def check_pruner(self, objectives: list[str]) -> None:
        if self.pruner_cfg is None:
            if self.monitor is not None:
                raise LvsweepError("hydra.sweeper.monitor", "is reported to a pruner only: set hydra.sweeper.pruner "
                                                            "too, or leave monitor null")
            return
        check_target(self.pruner_cfg, "hydra.sweeper.pruner", "pruner", "optuna.pruners.MedianPruner", make_pruner)
        if len(self.directions) > 1:
            raise LvsweepError("hydra.sweeper.pruner", f"optuna cannot prune a study with {len(self.directions)} "
                                                       "objectives; set hydra.sweeper.pruner=null")
        if self.storage_url is None:
            raise LvsweepError("hydra.sweeper.pruner", "needs hydra.sweeper.storage: each job reports to its "
                                                       "trial through the study's database")
        monitor = self.monitor or objectives[0]
        if monitor not in HISTORY_METRICS:
            raise LvsweepError("hydra.sweeper.monitor", f"{monitor} is not logged during training, so a pruner "
                                                        f"would never see it; use one of {', '.join(HISTORY_METRICS)}")
        if monitor != objectives[0] and HISTORY_METRICS[monitor] != self.directions[0]:
            raise LvsweepError("hydra.sweeper.monitor", f"{monitor} is better when it is "
                                                        f"{'higher' if HISTORY_METRICS[monitor] == 'maximize' else 'lower'}"
                                                        f", but the study's direction is {self.directions[0]}: the "
                                                        "pruner would keep the worst trials")

    def sweep(self, arguments: list[str]) -> optuna.Study:
        space = parse_search_space(self.params, arguments)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_url, self.faults)
        study = optuna.create_study(storage=storage, study_name=self.study_name,
                                    sampler=make_sampler(self.sampler_cfg), directions=self.directions,
                                    pruner=make_pruner(self.pruner_cfg), load_if_exists=True)
        check_directions(study.study_name, [d.name.lower() for d in study.directions], self.directions)
        if study.metric_names != self.objectives:  # optuna-dashboard then names what was optimised
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # stable since optuna 3.2, still flagged
                study.set_metric_names(self.objectives)
        from hydra_plugins.lvsweep_optuna_sweeper._tracking import ParentRun, study_summary

        tracker = ParentRun.find(self.config)
        tracker.describe(study, self.storage_url, self.sampler_cfg)
        recover(study, self.storage_url, tracker.client, tracker.experiment_id)
        so_far = len(study.get_trials(deepcopy=False))
        queued = self._enqueue(study)
        print(f"optuna study '{study.study_name}': {so_far} trial(s) so far, {self._goal()}"
              + (f"; {queued} enqueued first" if queued else ""))
        progress = Progress(self.n_trials if self.n_trials is not None else self.target_complete, self.objectives)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)) if self.config is not None else Path.cwd()
        with Heartbeat(storage) as beat, launcher_log(sweep_dir) as log:
            if self.n_jobs > 1 and self.slots == "async":
                exhausted = self._run_slots(study, space, tracker, beat, progress)
            else:
                exhausted = self._run_batches(study, space, tracker, beat, progress)
        if exhausted:
            print("the sampler has covered the whole search space; stopping")
        summary = study_summary(study, self.objectives, tracker.best_metrics(study))
        print(summary.text)
        print(f"  launcher log: {log}")
        tracker.record(summary, study, self.objectives)
        return study

    def _enqueue(self, study: optuna.Study) -> int:
        """Queue the warm-start points; a point the study already holds (any state) is skipped,
        so rerunning the command does not queue it again."""
        before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        for params in self.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before

    def _goal(self) -> str:
        goals = [f"adding up to {self.n_trials}"] if self.n_trials is not None else []
        if self.target_complete is not None:
            goals.append(f"until {self.target_complete} are COMPLETE")
        return ", ".join(goals)

    def _room(self, study: optuna.Study, asked: int) -> int:
        """Trials that may be asked now, given `asked` by this invocation so far. Other workers'
        RUNNING trials count towards `target_complete` as on their way (stale ones were failed
        just before), so workers together do not overshoot."""
        room = self.n_jobs if self.n_trials is None else self.n_trials - asked
        if self.target_complete is not None:
            states = [t.state for t in study.get_trials(deepcopy=False)]
            room = min(room, self.target_complete - states.count(TrialState.COMPLETE) - states.count(TrialState.RUNNING))
        return max(room, 0)

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
        """The trial's params, tags that tie its MLflow child run to the trial, and, when the job
        has something to do for its trial (report to a pruner, keep to a time limit), the link."""
        from hydra_plugins.lvsweep_optuna_sweeper._tracking import STUDY_TAG, TRIAL_TAG

        label = storage_label(self.storage_url)
        lines = [*space.trial_overrides(trial.params),
                 f"++tracking.tags.{TRIAL_TAG}={trial.number}",
                 f"++tracking.tags.{STUDY_TAG}={format_value(study.study_name)}",
                 f"++tracking.tags.optuna_storage={format_value(label)}",
                 f"tracking.run_name={format_value(trial_run_name(trial))}"]
        if self.pruner_cfg is not None or self.trial_timeout is not None:
            link = {"storage": absolute_storage(str(self.storage_url)), "study": study.study_name, "number": trial.number,
                    "pruner": self.pruner_cfg, "monitor": self.monitor or self.objectives[0],
                    "timeout": self.trial_timeout}
            lines.append(f"++tracking.trial={value_text(link)}")
        return lines

    def _run_batches(self, study: optuna.Study, space: SearchSpace, tracker: ParentRun, beat: Heartbeat,
                     progress: Progress) -> bool:
        """Ask `n_jobs` trials, launch them as one batch, wait for all, tell them; repeat.
        True when the sampler says the search space is exhausted."""
        asked = 0
        while (size := min(self.n_jobs, self._room(study, asked))) > 0:
            trials = [self._ask(study, space) for _ in range(size)]
            asked += len(trials)
            for trial in trials:
                beat.add(trial)
            overrides = [self._overrides(study, t, space) for t in trials]
            try:
                returns = self._launch(trials, overrides)
            except Exception as exc:  # a sampled value Hydra cannot compose (e.g. an unknown group option)
                outcomes = [failed(exc)] * len(trials)
            except BaseException as exc:  # Ctrl-C or SIGTERM (Lightning turns them into SystemExit): keep the study clean
                self._stop(study, trials, exc)
                raise
            else:
                tracker.link_trials(study, trials)
                outcomes = [job_outcome(ret, len(self.directions)) for ret in returns]
            exhausted = False
            for trial, outcome in zip(trials, outcomes):
                beat.remove(trial)
                exhausted |= self._tell(study, trial, outcome, progress)
            if exhausted:
                return True
            recover(study, self.storage_url, tracker.client, tracker.experiment_id)
        return False

    def _run_slots(self, study: optuna.Study, space: SearchSpace, tracker: ParentRun, beat: Heartbeat,
                   progress: Progress) -> bool:
        """`n_jobs` slots: each running trial is one launch in a thread of its own, and a new trial
        is asked as soon as any ends. The main thread only asks, waits and tells, so Ctrl-C and
        SIGTERM reach it; the launch threads are daemons that die with the process."""
        ended: queue.Queue[tuple[optuna.Trial, Outcome]] = queue.Queue()
        running: dict[int, optuna.Trial] = {}
        asked, exhausted = 0, False
        try:
            while True:
                while not exhausted and len(running) < self.n_jobs and self._room(study, asked) > 0:
                    trial = self._ask(study, space)
                    asked += 1
                    beat.add(trial)
                    running[trial.number] = trial
                    overrides = self._overrides(study, trial, space)
                    threading.Thread(target=self._launch_one, args=(trial, overrides, ended), daemon=True,
                                     name=f"trial-{trial.number}").start()
                if not running:
                    return exhausted
                trial, outcome = ended.get()
                running.pop(trial.number)
                tracker.link_trials(study, [trial])
                beat.remove(trial)
                exhausted |= self._tell(study, trial, outcome, progress)
                if not exhausted:
                    recover(study, self.storage_url, tracker.client, tracker.experiment_id)
        except BaseException as exc:
            self._stop(study, list(running.values()), exc)
            stop_children()
            for _ in running:  # each job closes its run, then its launch returns: wait for that
                try:
                    ended.get(timeout=STOP_GRACE_S)
                except queue.Empty:
                    break
            raise

    def _launch_one(self, trial: optuna.Trial, overrides: list[str], ended: queue.Queue) -> None:
        """One trial's launch, in its slot's thread; its outcome goes to the main thread's queue."""
        try:
            (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
            outcome = job_outcome(ret, len(self.directions))
        except BaseException as exc:  # the launcher itself failed, or the value could not be composed
            outcome = failed(exc)
        ended.put((trial, outcome))

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

    def _stop(self, study: optuna.Study, trials: list[optuna.Trial], exc: BaseException) -> None:
        """Ctrl-C or SIGTERM while `trials` ran: each is FAIL with the reason, the study stays clean."""
        note(exc)
        why = f"{stop_detail()} ({type(exc).__name__})"
        for trial in trials:
            self._tell(study, trial, Outcome(TrialState.FAIL, reason=why), None)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcome: Outcome, progress: Optional[Progress]) -> bool:
        """Record one result; True when the sampler asked to stop (its search space is exhausted).
        A trial another worker has ended meanwhile (it failed it as stale: this worker's beats came
        late) cannot be told any more: the job's result stays in its run, and the line says so."""
        exhausted = False
        try:
            if outcome.state != TrialState.COMPLETE:
                trial.set_user_attr(FAILURE_ATTR if outcome.state == TrialState.FAIL else PRUNED_ATTR,
                                    outcome.reason[:2000])
            if outcome.state == TrialState.COMPLETE:
                study.tell(trial, outcome.values)
            else:
                study.tell(trial, state=outcome.state)
        except (UpdateFinishedTrialError, ValueError):  # optuna's words for a trial already finished
            ended = ended_elsewhere(study, trial)
            if ended is None:
                raise
            shown = (f"{ended.name} already: another worker ended it, taking it for dead (its heartbeat came "
                     f"late); not told, the job's own result stays in its run: {self._shown(outcome)}")
            print(progress.line(study, trial, shown) if progress is not None else f"  trial {trial.number}: {shown}")
            return False
        except RuntimeError as exc:
            # Grid-like samplers call `Study.stop()` once every point is taken; outside
            # `Study.optimize` that raises, after the trial is stored. Stop the sweep instead.
            if "Study.stop" not in str(exc):
                raise
            exhausted = True
        from hydra_plugins.lvsweep_optuna_sweeper._notes import write_trial_note

        shown = self._shown(outcome)
        write_trial_note(trial, shown)
        print(progress.line(study, trial, shown) if progress is not None else f"  trial {trial.number}: {shown}")
        return exhausted

    def _shown(self, outcome: Outcome) -> str:
        """An outcome as the progress line says it: the values, PRUNED at which step, or FAIL and why."""
        if outcome.state == TrialState.COMPLETE:
            return ", ".join(f"{n} {v:.4g}" for n, v in zip(self.objectives, outcome.values or []))
        if outcome.state == TrialState.PRUNED:  # the reason reads "pruned at step ..."
            return f"PRUNED {outcome.reason.removeprefix('pruned ')}"
        return f"FAIL ({outcome.reason})"


def ended_elsewhere(study: optuna.Study, trial: optuna.Trial) -> Optional[TrialState]:
    """The state of a trial that the storage has as finished although this worker never told it
    (another worker failed it as stale); None while it is still running."""
    state = study._storage.get_trial(trial._trial_id).state
    return state if state.is_finished() else None


def probe_values(dist: BaseDistribution) -> list[Any]:
    """The values of a distribution a trial's config is checked with: every choice, or both ends
    of a range (optuna's bounds are inclusive), the low end first."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    low, high = dist.low, dist.high  # type: ignore[attr-defined]  # Float- and IntDistribution
    return [low] if low == high else [low, high]


def searched_value_error(name: str, value: Any, dist: BaseDistribution, error: LvsweepError) -> LvsweepError:
    """The one line for a searched value that a trial's config refuses: the param, the value, why."""
    if isinstance(dist, CategoricalDistribution):
        where = f"with the searched choice {format_value(value)}"
    else:
        where = f"at the {'low' if value == dist.low else 'high'} end of the searched range, {format_value(value)}"  # type: ignore[attr-defined]
    return LvsweepError(f"hydra.sweeper.params.{name}", f"a trial cannot run {where}: {error}")


def check_searched_as_before(study_name: str, trials: Sequence[optuna.trial.FrozenTrial], space: SearchSpace) -> None:
    """A param an existing study has searched must be searched the same way again: optuna refuses
    another kind of distribution, or another set of choices, under the same name."""
    before: dict[str, BaseDistribution] = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            before.setdefault(name, dist)
    for name, dist in space.distributions.items():
        if name not in before:
            continue
        try:
            check_distribution_compatibility(before[name], dist)
        except ValueError as exc:
            raise LvsweepError(f"hydra.sweeper.params.{name}",
                               f"study '{study_name}' already searched it as {sweep_text(before[name])}, and "
                               f"optuna cannot search it as {sweep_text(dist)} in the same study ({exc}); search "
                               "it as before, or give another hydra.sweeper.study_name") from exc


def check_point(space: SearchSpace, params: Mapping[str, Any], where: str) -> None:
    """A warm-start point names searched params only, each with a value its distribution holds."""
    for name, value in params.items():
        dist = space.distributions.get(name)
        if dist is None:
            searched = ", ".join(space.distributions) or "none"
            raise LvsweepError(f"{where}.{name}", f"is not searched (searched: {searched})")
        try:
            inside = dist._contains(dist.to_internal_repr(value))
        except (ValueError, TypeError):
            inside = False
        if not inside:
            raise LvsweepError(f"{where}.{name}", f"{value!r} is outside the search space {dist}")


def trial_run_name(trial: optuna.Trial) -> str:
    """`trial_2 noise.level=2.25 model.lr=1.7e-4`: the run says which point it is, as a multirun's do."""
    shown = " ".join(f"{k}={compact(v)}" for k, v in trial.params.items())
    return f"trial_{trial.number} {shown}".strip()


def compact(value: Any) -> str:
    """A sampled value in a few characters: 3 significant digits, and a short exponent (`1.7e-4`,
    not `0.000169` or `1.69e-04`) outside [0.001, 10000), where fixed notation is long or hard to read."""
    if not isinstance(value, float):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, _, exponent = f"{value:.2e}".partition("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def stop_children() -> None:
    """Pass a stop on to this process's children (joblib workers, submitit's local jobs), which
    close their runs KILLED themselves; a job on a cluster is the scheduler's to stop."""
    me = os.getpid()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int(entry.joinpath("stat").read_text().rpartition(")")[2].split()[1])
            if ppid == me:
                os.kill(int(entry.name), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            continue


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node or {})
