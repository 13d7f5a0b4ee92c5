"""The sweeper Hydra instantiates: a thin facade over the study loop in `_study`.

Hydra imports every public module of `hydra_plugins` on every start, single runs included; the
facade imports optuna, MLflow and matplotlib (through `_study`) only once a sweep is set up.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import optuna


class LvsweepOptunaSweeper(Sweeper):
    """Hydra's sweeper interface, delegating to `_study.StudySweeper`."""

    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.lvsweep_optuna_sweeper._study import StudySweeper

        self.sweeper = StudySweeper(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> optuna.Study:
        return self.sweeper.sweep(arguments)


def check_settings(config: DictConfig) -> None:
    """Every check of the sweeper's settings that needs no storage: the settings themselves, the
    objectives against the directions, the search space. The sweep callback runs this before it
    opens the sweep's parent run, so a rejected setting leaves nothing behind in the store."""
    from hydra_plugins.lvsweep_optuna_sweeper._study import StudySweeper

    settings = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    assert isinstance(settings, dict)
    StudySweeper(**{k: v for k, v in settings.items() if not str(k).startswith("_")}).check(config)
