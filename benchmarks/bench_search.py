"""What pruning and asynchronous slots buy a search, measured through the real CLI:
`python -m benchmarks.bench_search` (about 20 minutes on 2 cores; `--quick` for a smoke run,
`--only pruning` or `--only slots` for one half).

1. Pruning. The same study (same sampler seed, same trials asked while nothing is pruned) without
   and with `search=optuna_pruned`'s median pruner, for several sampler seeds: the best objective
   each reached and the epochs it trained (a pruned trial counts the epochs it ran). Target: the
   pruned search's best within the spread of the unpruned bests over seeds, with at most half the
   epochs.
2. Slots. Trials of mixed length (`trainer.epochs` a choice of a short and a long value, drawn by
   a seeded random sampler, so both modes run the same trials) on joblib with two workers, in
   batches of two and in asynchronous slots: trials per minute. Target: slots ≥ 1.3× batches.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

OBJECTIVE = "align/anticorrelation"
FAST = ["analysis.figures=false", "analysis.log_model=false"]


def cli(cwd: Path, *args: str) -> float:
    """One CLI run in `cwd`; its wall time. A failed trial is fine (exit 1), a refused command is not."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lvsweep", "-m", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"lvsweep failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - start


def study(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/mlruns/optuna.db")


def epochs_trained(s: optuna.Study, epochs: int) -> int:
    """Epochs each trial ran: all of them when it completed, up to its last report when pruned."""
    total = 0
    for t in s.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            total += epochs
        elif t.state == TrialState.PRUNED:
            total += max(t.intermediate_values)
    return total


def pruning(trials: int, seeds: list[int], epochs: int) -> bool:
    print(f"1. pruning: {trials} trials of TPE per study, {epochs} epochs each, sampler seeds {seeds}")
    print(f"   {'seed':>4}  {'best (no pruning)':>18}  {'best (pruned)':>14}  {'epochs':>8}  {'epochs pruned':>13}  pruned")
    plain_best, pruned_best, plain_epochs, pruned_epochs = [], [], 0, 0
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            common = [f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.sampler.seed={seed}",
                      f"trainer.epochs={epochs}", *FAST]
            cli(cwd, "search=optuna", "hydra.sweeper.study_name=plain", *common)
            cli(cwd, "search=optuna_pruned", "hydra.sweeper.study_name=pruned", *common)
            a, b = study(cwd, "plain"), study(cwd, "pruned")
            n_pruned = sum(t.state == TrialState.PRUNED for t in b.get_trials(deepcopy=False))
            ea, eb = epochs_trained(a, epochs), epochs_trained(b, epochs)
            plain_best.append(a.best_value)
            pruned_best.append(b.best_value)
            plain_epochs += ea
            pruned_epochs += eb
            print(f"   {seed:>4}  {a.best_value:>18.4f}  {b.best_value:>14.4f}  {ea:>8}  {eb:>13}  {n_pruned}/{trials}")
    low, high = min(plain_best), max(plain_best)
    mean_pruned = statistics.mean(pruned_best)
    same_best = mean_pruned >= low  # no worse than the unpruned search's own spread over seeds
    ratio = pruned_epochs / plain_epochs
    print(f"   best without pruning: mean {statistics.mean(plain_best):.4f}, range [{low:.4f}, {high:.4f}]; "
          f"with pruning: mean {mean_pruned:.4f}  -> {'within' if same_best else 'BELOW'} the range")
    print(f"   epochs with pruning / without: {ratio:.2f}  (target <= 0.50: {'met' if ratio <= 0.5 else 'NOT met'})")
    return same_best and ratio <= 0.5


def slots(trials: int, short: int, long: int) -> bool:
    print(f"2. slots: {trials} trials on joblib with 2 workers, trainer.epochs a random choice of {short} or {long}")
    rates = {}
    for mode in ("batch", "async", "batch", "async"):  # interleaved: drift on a shared machine hits both
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            seconds = cli(cwd, "search=optuna", "hydra.sweeper.study_name=slots", f"hydra.sweeper.n_trials={trials}",
                          "hydra.sweeper.n_jobs=2", f"hydra.sweeper.slots={mode}", "hydra/launcher=joblib",
                          "hydra.launcher.n_jobs=2", "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler",
                          f"trainer.epochs=choice({short}, {long})", *FAST)
            drawn = [t.params["trainer.epochs"] for t in study(cwd, "slots").get_trials(deepcopy=False)]
            rates.setdefault(mode, []).append(trials / seconds * 60)
            print(f"   {mode:<5}  {seconds:6.1f} s  {trials / seconds * 60:5.1f} trials/min  "
                  f"({drawn.count(long)} long of {trials})")
    ratio = statistics.median(rates["async"]) / statistics.median(rates["batch"])
    print(f"   asynchronous slots / batches, trials per minute: {ratio:.2f}  "
          f"(target >= 1.30: {'met' if ratio >= 1.3 else 'NOT met'})")
    return ratio >= 1.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few trials, one seed")
    parser.add_argument("--only", choices=("pruning", "slots"), help="one of the two comparisons")
    args = parser.parse_args()
    ok = True
    if args.only != "slots":
        ok &= pruning(6, [0], 600) if args.quick else pruning(16, [0, 1, 2], 2000)
    if args.only != "pruning":
        ok &= slots(4, 100, 3000) if args.quick else slots(8, 200, 20000)
    print("every target met" if ok else "some targets not met")


if __name__ == "__main__":
    main()
