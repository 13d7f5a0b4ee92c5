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

    from hydra_plugins.lvsweep_optuna_sweeper._study import Compose, StudySweeper


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
    objectives against the directions, the search space."""
    configured(config).check(config)


def check_before_recording(config: DictConfig, compose: Compose) -> None:
    """Everything the sweep can check before anything is recorded, for the sweep callback to run
    before it opens the sweep's parent run (Hydra builds the sweeper only after that callback):
    the settings (`check_settings`), every searched value in a trial's config (`compose` builds
    and validates one), and the storage with the study it may already hold. A refusal then leaves
    nothing behind in the store."""
    sweeper = configured(config)
    space = sweeper.check(config)
    sweeper.check_values(space, compose)
    sweeper.check_study(space)


def configured(config: DictConfig) -> StudySweeper:
    """The study loop as Hydra would build it from `hydra.sweeper` (its settings checked on the way)."""
    from hydra_plugins.lvsweep_optuna_sweeper._study import StudySweeper

    settings = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    assert isinstance(settings, dict)
    return StudySweeper(**{k: v for k, v in settings.items() if not str(k).startswith("_")})
