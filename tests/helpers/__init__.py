"""What the tests share, imported as `helpers.<module>` (pyproject.toml puts tests/ on sys.path):

- `overrides`: `QUICK` and `QUICK_SWEEP`, the small-but-real settings every CLI test runs with;
- `cli`: the real CLI in a temp dir (`run_cli`, `start_cli`, `finish_cli`, `cli_env`, `HANG_S`), and
  independent jobs of CLI runs at once (`together`);
- `inprocess`: the CLI's entry functions called in this process (`call_cli`), for refusals of a
  kind that a run in a process of its own also covers;
- `store`: the one reader of the MLflow store the CLI wrote (`all_runs`, `parents_and_children`,
  `wait_for_run`, ...) and of its Optuna study (`load_study`), and a new store as the CLI makes one
  (`lvsweep_made_store`, `with_store`);
- `servers`: throwaway PostgreSQL and MLflow servers on 127.0.0.1.
"""
