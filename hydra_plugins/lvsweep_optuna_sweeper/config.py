"""The sweeper's config schema, registered as `hydra/sweeper: lvsweep_optuna`.

Field names follow the upstream hydra-optuna-sweeper so its configs and habits carry over; the
sampler stays a plain `_target_` mapping (not instantiated by Hydra) because the sweeper builds a
freshly seeded sampler for every trial. (No `from __future__ import annotations`: Hydra runs this
module before registering it in `sys.modules`, where dataclasses look string annotations up.)
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"


@dataclass
class OptunaSweeperConf:
    # The sweeper class Hydra instantiates.
    _target_: str = "hydra_plugins.lvsweep_optuna_sweeper.lvsweep_optuna_sweeper.LvsweepOptunaSweeper"
    # Keep `sampler` and `params` as configs: the sweeper instantiates the sampler itself.
    _recursive_: bool = False
    # "maximize" / "minimize", or a list of them (one per entry of `objectives`) for multi-objective.
    direction: Any = "maximize"
    # Database URL of the study (null: in memory, nothing kept); SQLite directories are created.
    storage: Optional[str] = DEFAULT_STORAGE
    # Same name + same storage = same study: rerunning continues it, concurrent workers share it.
    study_name: Optional[str] = None
    # Trials this invocation adds to the study (null: no cap, then target_complete ends the search).
    n_trials: Optional[int] = 20
    # Study-wide goal: stop once the study holds this many COMPLETE trials, counting every worker
    # and every earlier invocation (null: no goal, n_trials alone decides). Both set: whichever first.
    target_complete: Optional[int] = None
    # Trials run at once (> 1 needs a parallel launcher: joblib, submitit_local or slurm).
    n_jobs: int = 1
    # async: a new trial starts as soon as any running one ends; batch: ask n_jobs, wait for all.
    slots: str = "async"
    # Any optuna sampler; a `seed` is mixed with each trial's number so resumed and parallel runs differ.
    sampler: Dict[str, Any] = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0})
    # Fault tolerance, as in optuna.storages.RDBStorage: the sweeper beats every heartbeat_interval
    # seconds while its trials run; a RUNNING trial silent for grace_period seconds (null: two
    # beats) is failed by the next worker that starts or finishes a batch, and its params are
    # queued again up to max_retry times (null: no limit). heartbeat_interval null: no heartbeat.
    heartbeat_interval: Optional[int] = 60
    # Seconds without a heartbeat after which a RUNNING trial counts as dead (null: two beats).
    grace_period: Optional[int] = None
    # Times a dead worker's trial is queued again with the same params (null: no limit).
    max_retry: Optional[int] = 3
    # Any optuna pruner as a `_target_` mapping, e.g. {_target_: optuna.pruners.MedianPruner}
    # (null: no pruning). Each job reports `monitor` to its trial as training goes and stops when
    # this pruner, rebuilt in the job, says so. Needs a storage; single-objective studies only.
    pruner: Any = None  # typed Any: a mapping given on the command line replaces null
    # The metric reported to the pruner, one logged during training (null: the objective).
    monitor: Optional[str] = None
    # Trials run first, once per study: a list of {param: value} mappings inside the search space.
    enqueue: List[Dict[str, Any]] = field(default_factory=list)
    # Seconds a trial may run (null: no limit); past it the job stops at its next training step,
    # the trial is FAIL ("timeout after N s") and its run KILLED, and the study goes on.
    trial_timeout: Optional[float] = None
    # Search space in Hydra's sweep syntax: interval(...), choice(...), range(...), tag(log, ...).
    params: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="lvsweep_optuna", node=OptunaSweeperConf,
                             provider="lvsweep_optuna_sweeper")
