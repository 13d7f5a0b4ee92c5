"""One line per trial as it ends: how far the search is, the best so far, time spent and left.

Hydra's launchers log a line per launch and the full overrides of every job, which for a study
are mostly the sweeper's own bookkeeping (`++tracking.tags.optuna_storage=...`); while trials run,
those lines go to `sweeper.log` in the sweep directory instead of the terminal.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import optuna
from optuna.trial import TrialState

# The loggers of the launchers lvsweep uses: Hydra's basic launcher, joblib, submitit (SLURM's too).
LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher",
                    "hydra_plugins.hydra_submitit_launcher", "hydra_plugins.lvsweep_slurm_launcher")


def clock(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts the trials this invocation ended against its goal, and says so once per trial."""

    def __init__(self, total: Optional[int], objectives: Sequence[str]) -> None:
        self.total = total  # trials this invocation adds (n_trials), or the COMPLETE goal; None: unknown
        self.objectives = list(objectives)
        self.ended = 0
        self.started = time.monotonic()

    def line(self, study: optuna.Study, trial: optuna.Trial, outcome: str) -> str:
        """`trial k/N  <outcome>  best <value> (trial j)  elapsed m:ss  eta m:ss`."""
        self.ended += 1
        of = f"/{self.total}" if self.total else ""
        number = "" if trial.number == self.ended - 1 else f" (#{trial.number})"
        elapsed = time.monotonic() - self.started
        parts = [f"trial {self.ended}{of}{number}", outcome]
        best = self.best(study)
        if best:
            parts.append(best)
        parts.append(f"elapsed {clock(elapsed)}")
        if self.total and self.ended < self.total:
            parts.append(f"eta {clock(elapsed / self.ended * (self.total - self.ended))}")
        return "  " + "  ".join(parts)

    def best(self, study: optuna.Study) -> str:
        if len(study.directions) > 1:
            front = study.best_trials if self._any_complete(study) else []
            return f"Pareto front {len(front)} trial(s)" if front else ""
        if not self._any_complete(study):
            return ""
        best = study.best_trial
        value = best.value if best.value is not None else math.nan
        return f"best {value:.4g} (trial {best.number})"

    @staticmethod
    def _any_complete(study: optuna.Study) -> bool:
        return any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


@contextmanager
def launcher_log(sweep_dir: Path) -> Iterator[Path]:
    """Send the launchers' log lines to `<sweep_dir>/sweeper.log` (not the terminal) meanwhile."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / "sweeper.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    saved = []
    for name in LAUNCHER_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield path
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
        handler.close()
