"""A Hydra sweeper on optuna >= 4 (`hydra/sweeper=lvsweep_optuna`): persistent, resumable, parallel,
tracked in MLflow.

- `config`: the settings' schema, registered with Hydra.
- `lvsweep_optuna_sweeper`: the facade Hydra instantiates, `check_settings` and `check_before_recording`.
- `_search_space`, `_study`, `_storage`, `_tracking`: the search space, the ask–launch–tell loop,
  the study's database with heartbeats and recovery, and the study's record in MLflow.
- `_notes`: optuna-dashboard's notes on the study and its trials (with the `dashboard` extra).
"""
