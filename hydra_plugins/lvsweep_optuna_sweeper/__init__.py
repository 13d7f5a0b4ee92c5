"""A Hydra sweeper on optuna >= 4: persistent, resumable, parallel, tracked in MLflow.

Hydra imports only public modules of `hydra_plugins`, so the sweeper class is re-exported here.
"""
from hydra_plugins.lvsweep_optuna_sweeper._impl import OptunaSweeper

__all__ = ["OptunaSweeper"]
