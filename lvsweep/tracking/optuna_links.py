"""Links between an Optuna study and the MLflow runs of its trials, for the two UIs.

optuna-dashboard labels objectives "Objective 0, 1, …" unless the study names them, and a
trial knows nothing of the MLflow run that measured it. The sweeper tags every child run with
`optuna_study` and `optuna_trial`; these functions add the other direction. They are meant to
be called by the sweeper (hydra_plugins/lvsweep_optuna_sweeper):

- `name_objectives(study, self.objectives)` in `OptunaSweeper.sweep`, right after
  `optuna.create_study(...)` (and the direction check);
- `link_trials(study, trials, tracker.client, tracker.experiment_id, tracker.run_id)` in
  `OptunaSweeper._run_batch`, after `self._launch(...)` returned and before the results are told:
  Optuna refuses user attributes on a finished trial. `_run_batch` needs the `ParentRun` for it
  (pass `tracker` from `sweep`, or keep it on `self`).

The run id is found by searching the store, not from the job's return value or a file in its
output directory: the return value is the objective the sampler reads (Hydra's launchers pass it
through unchanged, but any extra field would have to be unpacked in `job_outcome`), and a file
needs the worker's output directory on a shared file system. The store is shared by every
launcher already, and one search per batch finds every trial of it, failed ones included.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

RUN_ID_ATTR = "mlflow_run_id"
TRIAL_TAG, STUDY_TAG = "optuna_trial", "optuna_study"


def name_objectives(study: Any, objectives: Sequence[str]) -> None:
    """Name the study's objectives after the metrics they are (`align/anticorrelation`, …), so
    optuna-dashboard's plots and tables say what was optimised. Names that do not match the
    directions one to one are left out rather than mislabel a study."""
    if len(objectives) == len(study.directions) and study.metric_names != list(objectives):
        study.set_metric_names(list(objectives))


def link_trials(study: Any, trials: Sequence[Any], client: Any, experiment_id: Optional[str],
                parent_run_id: Optional[str]) -> dict[int, str]:
    """Give each of `trials` (still RUNNING: launched, not yet told) the user attribute
    `mlflow_run_id` of its MLflow run; returns {trial number: run id} for the runs found.

    The runs are looked up among the sweep's child runs when there is a parent run (one worker's
    batch), else in the whole experiment by the study's tag. A trial whose job recorded no run
    (the store was unreachable) gets no attribute."""
    if client is None or experiment_id is None or not trials:
        return {}
    from lvsweep.tracking.runs import PARENT_TAG

    name = study.study_name.replace("'", "\\'")
    where = f"tags.`{STUDY_TAG}` = '{name}'"
    if parent_run_id:
        where += f" and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    runs = client.search_runs([experiment_id], filter_string=where, order_by=["attributes.start_time ASC"],
                              max_results=10_000)
    by_number = {r.data.tags.get(TRIAL_TAG): r.info.run_id for r in runs}  # a later run of a number wins
    found: dict[int, str] = {}
    for trial in trials:
        run_id = by_number.get(str(trial.number))
        if run_id is not None:
            trial.set_user_attr(RUN_ID_ATTR, run_id)
            found[trial.number] = run_id
    return found
