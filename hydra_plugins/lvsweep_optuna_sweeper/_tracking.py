"""Tracking of the study itself: its summary and figures on the sweep's MLflow parent run, and
the links between trials and runs in both directions (each child run is tagged `optuna_study` and
`optuna_trial`; each trial gets the user attribute `mlflow_run_id`)."""
from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import matplotlib
import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hydra_plugins.lvsweep_optuna_sweeper._storage import storage_label
from lvsweep.metric_names import ALIGN_ANTICORRELATION, ALIGN_TRAINING_GAIN, BEST
from lvsweep.tracking.runs import PARENT_RUN_ENV, PARENT_TAG, open_store, resolve_uri, run_link, write_batch

RUN_ID_ATTR = "mlflow_run_id"  # the trial's user attribute naming its MLflow run
RUN_URL_ATTR = "mlflow_url"  # the same run's page in `mlflow ui`, a link optuna-dashboard's table shows in full
IMPORTANCE_SEED = 0  # fANOVA's random forest: the same trials give the same importances every time
FEW_TRIALS = 20  # under this many complete trials, importances change from one trial to the next
VERDICT_TAG = "lvsweep.verdict"  # on the parent run: what the objective rewarded, when that is not learning
TRIAL_TAG, STUDY_TAG = "optuna_trial", "optuna_study"  # the run's tags naming its trial


@dataclass
class StudySummary:
    text: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def study_summary(study: optuna.Study, objectives: Sequence[str],
                  best_metrics: Optional[Mapping[str, float]] = None) -> StudySummary:
    """The study's best (over every invocation and worker) as text and as MLflow params/metrics/tags.
    `best_metrics`, the best trial's run's metrics, let it say when the objective rewards not training."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    head = (f"optuna study '{study.study_name}': {len(trials)} trial(s), {len(complete)} complete, "
            f"{pruned} pruned, {failed} failed")
    tags = {"optuna_n_trials": str(len(trials)), "optuna_n_complete": str(len(complete)),
            "optuna_n_pruned": str(pruned), "optuna_n_failed": str(failed)}
    if not complete:
        return StudySummary(head + "; no complete trial yet", tags=tags)
    if len(study.directions) == 1:
        best = study.best_trial
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        tags["optuna_best_trial"] = str(best.number)
        text = f"{head}\n  best {objectives[0]} = {best.value:.4g} (trial {best.number}): {shown}"
        verdict = untrained_verdict(objectives[0], best.number, best_metrics or {})
        if verdict:
            tags.update({VERDICT_TAG: verdict, "mlflow.note.content": verdict})
            text += f"\n  ⇒ {verdict}"
        return StudySummary(text, {f"best.{k}": v for k, v in best.params.items()},
                            {BEST + objectives[0]: float(best.value)}, tags)
    front = study.best_trials
    metrics = {}
    for i, (name, direction) in enumerate(zip(objectives, study.directions)):
        pick = max if direction.name == "MAXIMIZE" else min
        metrics[BEST + name] = float(pick(t.values[i] for t in front))
    tags["optuna_pareto_trials"] = ",".join(str(t.number) for t in front)
    lines = [f"  trial {t.number}: " + ", ".join(f"{n} {v:.4g}" for n, v in zip(objectives, t.values))
             for t in front]
    return StudySummary(f"{head}\n  Pareto front ({len(front)} trial(s)):\n" + "\n".join(lines),
                        metrics=metrics, tags=tags)


def untrained_verdict(objective: str, number: int, metrics: Mapping[str, float]) -> str:
    """A plain sentence when the best trial's anticorrelation is below its own untrained model's:
    maximising it then rewards training that changed the attention least, not learnt sensitivity."""
    gain = metrics.get(ALIGN_TRAINING_GAIN, math.nan)
    if objective != ALIGN_ANTICORRELATION or not gain < 0:
        return ""
    trained = metrics.get(ALIGN_ANTICORRELATION, math.nan)
    return (f"the best trial ({number}) anticorrelates less after training than its own untrained model "
            f"({trained:.3f} trained, {trained - gain:.3f} untrained): maximising {objective} here rewards "
            f"training that changes the attention least; search {ALIGN_TRAINING_GAIN} (search=optuna_gain) for "
            "what training adds")


def study_figures(study: optuna.Study, objectives: Sequence[str], out_dir: Path) -> list[Path]:
    """Optuna's matplotlib plots of the study as PNGs; a plot optuna cannot draw yet is skipped."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    matplotlib.use("Agg")
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)  # choice(20, 3000) is categorical on purpose
    multi = len(study.directions) > 1
    target: Optional[Callable[[Any], float]] = (lambda t: t.values[0]) if multi else None
    named = {"target": target, "target_name": objectives[0]}
    names = list(dict.fromkeys(n for t in study.get_trials(deepcopy=False) for n in t.params))
    makers: dict[str, Callable[[], Any]] = {
        "param_importances": lambda: importances(study, plots, named),
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


def importances(study: optuna.Study, plots: Any, named: Mapping[str, Any]) -> Any:
    """fANOVA importances with a fixed seed, titled with how many trials they rest on and, under
    `FEW_TRIALS`, that they are not yet stable (another seed, or one trial more, can reorder them)."""
    from optuna.importance import FanovaImportanceEvaluator

    axes = plots.plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=IMPORTANCE_SEED), **named)
    n = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    caveat = f"\nonly {n} complete trials (< {FEW_TRIALS}): unstable, read as a hint" if n < FEW_TRIALS else ""
    for loc in ("center", "right"):  # optuna titles it on the left; one title, there
        axes.set_title("", loc=loc)
    axes.set_title(f"Hyperparameter importances (fANOVA, seed {IMPORTANCE_SEED}, {n} trials){caveat}", loc="left")
    return axes


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
        """The study's summary and figures on the parent run, and in optuna-dashboard's study note."""
        from hydra_plugins.lvsweep_optuna_sweeper._notes import write_study_note

        write_study_note(study, summary.text, run_link(self.experiment_id, self.run_id) if self.run_id else None)
        if self.run_id is None:
            return
        self._log(params=summary.params, metrics=summary.metrics, tags=summary.tags)
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return  # optuna's plots need complete trials
        with tempfile.TemporaryDirectory() as tmp:
            for path in study_figures(study, objectives, Path(tmp)):
                self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def link_trials(self, study: optuna.Study, trials: Sequence[optuna.trial.Trial]) -> dict[int, str]:
        """Give each of `trials` (launched, not yet told) the user attribute `mlflow_run_id` of its
        run; returns {trial number: run id}. One search of the store per batch: the store is shared
        by every launcher, unlike a job's output directory, and a job's return value is the
        objective the sampler reads. A trial whose job recorded no run gets no attribute, nor does
        one another worker has ended meanwhile (optuna keeps a finished trial as it is); its run
        still names it in its tags."""
        if self.client is None or self.experiment_id is None or not trials:
            return {}
        name = study.study_name.replace("'", "\\'")
        where = f"tags.`{STUDY_TAG}` = '{name}'"
        if self.run_id:
            where += f" and tags.`{PARENT_TAG}` = '{self.run_id}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=where,
                                       order_by=["attributes.start_time ASC"], max_results=10_000)
        by_number = {r.data.tags.get(TRIAL_TAG): r.info.run_id for r in runs}  # a later run of a number wins
        found: dict[int, str] = {}
        for trial in trials:
            run_id = by_number.get(str(trial.number))
            if run_id is None:
                continue
            try:
                trial.set_user_attr(RUN_ID_ATTR, run_id)
                trial.set_user_attr(RUN_URL_ATTR, run_link(self.experiment_id, run_id))
            except UpdateFinishedTrialError:
                continue
            found[trial.number] = run_id
        return found

    def best_metrics(self, study: optuna.Study) -> dict[str, float]:
        """The final metrics of the best trial's run (single objective; empty when it has none)."""
        if self.client is None or len(study.directions) > 1:
            return {}
        try:
            run_id = study.best_trial.user_attrs.get(RUN_ID_ATTR)
        except ValueError:  # no complete trial
            return {}
        return dict(self.client.get_run(run_id).data.metrics) if run_id else {}

    def _log(self, params: Optional[Mapping[str, Any]] = None, metrics: Optional[Mapping[str, float]] = None,
             tags: Optional[Mapping[str, str]] = None) -> None:
        if self.run_id is not None:
            write_batch(self.client, self.run_id, params=params, metrics=metrics, tags=tags)
