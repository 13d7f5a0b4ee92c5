"""Load benchmark: N sweep workers at once on one Optuna study, against SQLite files and against
PostgreSQL with an MLflow tracking server; trials per minute, and what was lost or doubled.

    python -m benchmarks.bench_scale                 # 4 workers x 10 trials on each backend
    python -m benchmarks.bench_scale --workers 2 --trials 5 --backends sqlite

Each worker is the real CLI (`python -m lvsweep -m search=optuna ...`), all started together in
one directory with the same study name. Short trials (few epochs, a short trajectory) on purpose:
the stores, not the training, are under load. Servers are throwaway, on 127.0.0.1
(`tests/helpers/servers.py`); PostgreSQL needs its server binaries installed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TRIAL = ["trainer.epochs=100", "system.n_steps=300", "analysis.figures=false", "analysis.perturb.k=5"]
STUDY = "bench"


@dataclass
class LoadResult:
    backend: str
    wall_s: float
    complete: int
    trials_lost: int
    trials_doubled: int
    runs_lost: int
    runs_doubled: int
    runs_not_finished: int
    failed_workers: int

    def line(self) -> str:
        return (f"  {self.backend:<26}{self.wall_s:8.1f} s {self.complete / self.wall_s * 60:9.1f} trials/min   "
                f"trials lost {self.trials_lost}, doubled {self.trials_doubled}; runs lost {self.runs_lost}, "
                f"doubled {self.runs_doubled}, not FINISHED {self.runs_not_finished}; "
                f"workers failed {self.failed_workers}")


def run_workers(cwd: Path, workers: int, trials: int, storage: str, env: dict[str, str]) -> tuple[float, int]:
    """Start the workers together; (wall seconds until the last ends, how many exited non-zero)."""
    cmd = [sys.executable, "-m", "lvsweep", "-m", "search=optuna", f"hydra.sweeper.storage={storage}",
           f"hydra.sweeper.study_name={STUDY}", f"hydra.sweeper.n_trials={trials}", *TRIAL]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    failed = 0
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            failed += 1
            print(f"    a worker failed ({proc.returncode}): {err.strip().splitlines()[-1:]}", file=sys.stderr)
    return time.perf_counter() - start, failed


def audit(backend: str, wall_s: float, failed: int, expected: int, storage: str, tracking_uri: str) -> LoadResult:
    """Compare what the study and the tracking store hold with what the workers were asked to do."""
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    numbers = Counter(t.number for t in trials)
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = [r for r in client.search_runs([client.get_experiment_by_name("lvsweep").experiment_id],
                                          filter_string=f"tags.optuna_study = '{STUDY}'", max_results=10_000)
            if "optuna_trial" in r.data.tags]  # trial runs, not the workers' parent runs
    per_trial = Counter(int(r.data.tags["optuna_trial"]) for r in runs)
    return LoadResult(
        backend=backend, wall_s=wall_s, complete=sum(t.state == TrialState.COMPLETE for t in trials),
        trials_lost=max(expected - len(numbers), 0),
        trials_doubled=sum(n - 1 for n in numbers.values()) + max(len(numbers) - expected, 0),
        runs_lost=sum(1 for n in numbers if n not in per_trial),
        runs_doubled=sum(n - 1 for n in per_trial.values()),
        runs_not_finished=sum(r.info.status != "FINISHED" for r in runs), failed_workers=failed)


def bench_sqlite(workers: int, trials: int) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="lvsweep-bench-") as tmp:
        cwd = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        wall, failed = run_workers(cwd, workers, trials, "sqlite:///mlruns/optuna.db", env)
        return audit("SQLite study + SQLite store", wall, failed, workers * trials,
                     f"sqlite:///{cwd}/mlruns/optuna.db", f"sqlite:///{cwd}/mlruns/mlflow.db")


def bench_postgres(workers: int, trials: int) -> LoadResult:
    from tests.helpers.servers import MlflowServer, PostgresCluster

    cluster = PostgresCluster().start()
    try:
        storage = cluster.create_database("optuna")
        with tempfile.TemporaryDirectory(prefix="lvsweep-bench-") as tmp:
            server = MlflowServer(cluster.create_database("mlflow"), Path(tmp) / "artifacts").start()
            try:
                env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
                wall, failed = run_workers(Path(tmp), workers, trials, storage, env)
                return audit("PostgreSQL + MLflow server", wall, failed, workers * trials, storage, server.url)
            finally:
                server.stop()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=10, help="trials per worker")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    args = parser.parse_args()
    print(f"{args.workers} workers x {args.trials} trials, one study, started together "
          f"({os.cpu_count()} CPUs; trial: {' '.join(TRIAL)})")
    runners = {"sqlite": bench_sqlite, "postgres": bench_postgres}
    for backend in args.backends:
        print(runners[backend](args.workers, args.trials).line(), flush=True)


if __name__ == "__main__":
    main()
