"""The job's side of an Optuna trial: report the monitored metric to the live trial as training
goes, stop when the study's pruner says so, and stop when the trial's time is up.

The sweeper hands each job `tracking.trial` (the study's storage, name and trial number, the
pruner's config, the monitored metric, the time limit). The job opens its own trial through the
storage, so reporting works wherever the launcher ran it (in process, a joblib worker, a
submitit or SLURM job): a `FrozenTrial` in the sweeper could not receive reports. Optuna does not
store the pruner with the study, so the job rebuilds it from the same config.

Both stops happen between training steps, where the metric sink is called, never in the middle
of a write: the run is then closed KILLED with everything logged so far, and the job returns a
`TrialStop` that the sweeper turns into a PRUNED (or, for a timeout, FAIL) trial.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    import optuna

    from lvsweep.training.callbacks import MetricSink

PRUNED_TAG = "lvsweep.pruned_at_step"  # on a pruned trial's run: the step its pruner stopped it at
PRUNED, TIMEOUT = "pruned", "timeout"


@dataclass(frozen=True)
class TrialStop:
    """What a job returns to the sweeper when its trial stopped early (picklable for any launcher)."""

    kind: str  # PRUNED or TIMEOUT
    step: int  # the training step it stopped at (epochs done)
    reason: str  # the sentence recorded on the run and the trial


class TrialStopped(Exception):
    """Raised from the metric sink, between training steps, to end the job's experiment early."""

    def __init__(self, stop: TrialStop) -> None:
        super().__init__(stop.reason)
        self.stop = stop


def timeout_reason(seconds: float) -> str:
    return f"timeout after {seconds:g} s"


class TrialLink:
    """The live trial a job runs, its pruner and its clock."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.monitor: Optional[str] = settings.get("monitor")
        self.timeout: Optional[float] = settings.get("timeout")
        self.started = time.monotonic()
        self._trial: Optional[optuna.Trial] = None

    @classmethod
    def of(cls, settings: Optional[Mapping[str, Any]]) -> Optional[TrialLink]:
        """The link when the job has something to do for its trial (a pruner or a time limit)."""
        if not settings or (settings.get("pruner") is None and settings.get("timeout") is None):
            return None
        return cls(settings)

    def trial(self) -> optuna.Trial:
        """The live trial, opened on first use: the storage costs its imports only in jobs that prune."""
        if self._trial is None:
            import optuna
            from hydra.utils import instantiate

            from hydra_plugins.lvsweep_optuna_sweeper._storage import FaultSettings, open_storage

            storage = open_storage(str(self.settings["storage"]), FaultSettings())
            study = optuna.load_study(study_name=str(self.settings["study"]), storage=storage,
                                      pruner=instantiate(self.settings["pruner"]))
            number = int(self.settings["number"])
            trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
            self._trial = optuna.Trial(study, trial_id)
        return self._trial

    def check_time(self, step: int) -> None:
        if self.timeout is not None and time.monotonic() - self.started > self.timeout:
            raise TrialStopped(TrialStop(TIMEOUT, step, timeout_reason(self.timeout)))

    def report(self, metrics: Mapping[str, float], step: int) -> None:
        """Report the monitored metric (when `metrics` has it) and stop if the pruner says so."""
        if self.settings.get("pruner") is None or self.monitor not in metrics:
            return
        value = float(metrics[self.monitor])
        if not math.isfinite(value):
            return  # a NaN history point is the job's failure to report, not the pruner's to judge
        trial = self.trial()
        from optuna.exceptions import UpdateFinishedTrialError

        from lvsweep.tracking.stores import retry_locked

        try:
            retry_locked(trial.report, value, step)
        except UpdateFinishedTrialError:  # another worker took the trial for dead and failed it:
            self.settings["pruner"] = None  # nothing to report to; the job's result stays in its run
            return
        if retry_locked(trial.should_prune):
            raise TrialStopped(TrialStop(PRUNED, step, f"pruned at step {step} ({self.monitor} {value:.4g})"))

    def sink(self, inner: MetricSink) -> MetricSink:
        """`inner`, then the trial's checks: what was logged stays logged when the trial stops."""
        def write(metrics: Mapping[str, float], step: int) -> None:
            inner(metrics, step)
            self.check_time(step)
            self.report(metrics, step)
        return write
