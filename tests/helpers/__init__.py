"""What the tests share, imported as `helpers.<module>` (pyproject.toml puts tests/ on sys.path):

- `overrides`: `QUICK` and `QUICK_SWEEP`, the small-but-real settings every CLI test runs with;
- `cli`: the real CLI in a temp dir (`run_cli`, `start_cli`, `finish_cli`, `cli_env`, `HANG_S`);
- `store`: the one reader of the MLflow store the CLI wrote (`all_runs`, `parents_and_children`,
  `wait_for_run`, ...) and of its Optuna study (`load_study`);
- `servers`: throwaway PostgreSQL and MLflow servers on 127.0.0.1.
"""
