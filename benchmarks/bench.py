"""Speed, measured side by side in one process: `python -m benchmarks.bench`.

Timings on shared machines drift, so every comparison is a ratio of runs interleaved in the same
process (median of `--repeats`), never an absolute number checked by a test. Each ratio is printed
beside its target, with whether it is met:

- training (lvsweep's Lightning set-up, callbacks included) within 1.15x a bare PyTorch loop;
- a whole run with 32 replicates within 1.5x one with a single replicate;
- `python -m lvsweep` (the default run: figures and the model logged) within 1.3x its import floor,
  the time a fresh interpreter takes to import torch, pytorch_lightning, mlflow, hydra,
  scipy.integrate and matplotlib;
- each further job of `python -m lvsweep -m noise=0,1,2,4` within 1.0 s on a quiet 2-core machine,
  where the import floor takes 5.21 s: measured as (4-job sweep - 1-job sweep) / 3, and judged as a
  share of the floor measured beside it (1.0 s / 5.21 s = 0.19x), which load slows alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytorch_lightning as pl
import torch

from lvsweep.app import compose_config
from lvsweep.training.callbacks import AlignmentCallback, LossHistory
from lvsweep.data.trajectory import TrajectoryDataModule, make_data, make_replicate_data, replicate_seed
from lvsweep.models import LinearAttention, make_replicates
from lvsweep.pipeline import run_experiment
from lvsweep.analysis.sensitivity import sensitivity_profile
from lvsweep.systems.simulate import simulate
from lvsweep.systems import make_system
from lvsweep.training.trainer import Steps, fit, make_trainer


def bare_loop(dm: TrajectoryDataModule, epochs: int, lr: float) -> float:
    """The same model, optimiser and full-batch steps, with nothing around them."""
    torch.manual_seed(0)
    model = LinearAttention(2, lr=lr)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(dm.train_batch)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


class _DefaultLightning(LinearAttention):
    """The textbook Lightning version: automatic optimisation, one Lightning step per epoch."""

    def __init__(self, lr: float) -> None:
        super().__init__(2, lr=lr)
        self.automatic_optimization = True

    def training_step(self, batch, batch_idx):  # type: ignore[override]
        return self.loss(batch)


def lightning_textbook(dm: TrajectoryDataModule, epochs: int, lr: float, lean: bool) -> float:
    """Default Trainer (its CSV logger, checkpointing), or `lean`: lvsweep's Trainer flags but
    still automatic optimisation and one Lightning step per epoch."""
    torch.manual_seed(0)
    model = _DefaultLightning(lr)
    with tempfile.TemporaryDirectory() as tmp:
        if lean:
            trainer = make_trainer(SimpleNamespace(epochs=epochs, log_every=1, val_every=epochs, align_every=1), [])
            data = Steps(dm.train_dataloader(), epochs)  # one Lightning epoch of `epochs` steps
        else:
            trainer = pl.Trainer(max_epochs=epochs, default_root_dir=tmp, enable_progress_bar=False,
                                 limit_val_batches=0)
            data = dm.train_dataloader()  # `epochs` Lightning epochs of one step
        start = time.perf_counter()
        trainer.fit(model, train_dataloaders=data)
        return time.perf_counter() - start


def framework(dm: TrajectoryDataModule, cfg, sensitivity) -> float:
    """lvsweep's own training: Lightning with validation, loss history and the alignment callback."""
    torch.manual_seed(0)
    model = LinearAttention(2, lr=cfg.model.lr, epochs=cfg.trainer.epochs, log_every=cfg.trainer.log_every)
    sink: list = []
    callbacks = [LossHistory(lambda m, s: sink.append((m, s)), dm.train_batch, dm.val_batch),
                 AlignmentCallback(dm.train_batch[0], sensitivity, cfg.trainer.align_every,
                                   lambda m, s: sink.append((m, s)))]
    start = time.perf_counter()
    fit(model, dm, cfg.trainer, callbacks)
    return time.perf_counter() - start


def replicated_training(cfg, orbit, sensitivity, replicates: int) -> float:
    """lvsweep's training (callbacks included) of `replicates` models as one vectorised model."""
    seeds = [replicate_seed(cfg.seed, r) for r in range(replicates)]
    dm = TrajectoryDataModule(make_replicate_data(orbit, cfg.noise.kind, cfg.noise.level, seeds))
    noisy = dm.train_batch[0]
    model = make_replicates(cfg.model, 2, cfg.trainer.epochs, cfg.trainer.log_every, seeds,
                            noisy.reshape(-1, *noisy.shape[-2:]))
    sink = lambda m, s: None  # noqa: E731
    callbacks = [LossHistory(sink, dm.train_batch, dm.val_batch),
                 AlignmentCallback(noisy, sensitivity, cfg.trainer.align_every, sink)]
    start = time.perf_counter()
    fit(model, dm, cfg.trainer, callbacks)
    return time.perf_counter() - start


def whole_run(replicates: int, out: Path) -> float:
    """A whole run in-process (simulation, training, controls, perturbation, figures), no tracking."""
    cfg = compose_config(f"replicates={replicates}")
    start = time.perf_counter()
    run_experiment(cfg, lambda m, s: None, out)
    return time.perf_counter() - start


def bench_replicates(cfg, orbit, sensitivity, repeats: int) -> None:
    replicated_training(cfg, orbit, sensitivity, 32)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        t = median_times({
            "train1": lambda: replicated_training(cfg, orbit, sensitivity, 1),
            "train32": lambda: replicated_training(cfg, orbit, sensitivity, 32),
            "run1": lambda: whole_run(1, Path(tmp)),
            "run32": lambda: whole_run(32, Path(tmp)),
        }, repeats)
    print(f"replicates, linear model, vectorised (median of {repeats})")
    print(f"  training, R=1 / R=32                    {t['train1']:6.3f} s / {t['train32']:6.3f} s   "
          f"{t['train32'] / t['train1']:5.2f}x")
    print(f"  whole run in-process, R=1 / R=32        {t['run1']:6.3f} s / {t['run32']:6.3f} s   "
          f"{t['run32'] / t['run1']:5.2f}x   {verdict(t['run32'] / t['run1'], REPLICATES_TARGET)}")


def median_times(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits all variants alike
        for name, fn in fns.items():
            times[name].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


TRAINING_TARGET = 1.15  # lvsweep's training / a bare PyTorch loop
REPLICATES_TARGET = 1.5  # a whole run with 32 replicates / one with 1
RUN_TARGET = 1.3  # python -m lvsweep / its import floor
FURTHER_JOB_S, QUIET_FLOOR_S = 1.0, 5.21  # each further job of a sweep, on the quiet machine whose floor took 5.21 s
FLOOR_IMPORTS = "import torch, pytorch_lightning, mlflow, hydra, scipy.integrate, matplotlib"


def verdict(ratio: float, target: float) -> str:
    return f"target <= {target:.2f}x: {'met' if ratio <= target else 'NOT met'}"


def wall_time(args: list[str], cwd: Path, **env: str) -> float:
    """A fresh interpreter running `args` in `cwd` (with `env` added to this environment), to its exit."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return time.perf_counter() - start


def cli_wall_time(args: list[str], cwd: Path, **env: str) -> float:
    return wall_time(["-m", "lvsweep", *args], cwd, **env)


def bench_cli(repeats: int) -> None:
    """The CLI end to end, figures and model logging on (the defaults), each command in a fresh
    interpreter, interleaved with the import floor."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = iter(range(10 ** 6))

        def fresh() -> Path:  # a directory without a store
            path = root / f"d{next(runs)}"
            path.mkdir()
            return path

        kept = fresh()
        cli_wall_time([], kept)  # the store the "store exists" runs find; also warms the disk cache
        t = median_times({
            "floor": lambda: wall_time(["-c", FLOOR_IMPORTS], root),
            "new store": lambda: cli_wall_time([], fresh()),  # a copy of the empty-store template
            "no template": lambda: cli_wall_time([], fresh(), LVSWEEP_STORE_CACHE="off"),  # MLflow's migrations
            "store exists": lambda: cli_wall_time([], kept),
            "sweep1": lambda: cli_wall_time(["-m", "noise=0"], kept),
            "sweep4": lambda: cli_wall_time(["-m", "noise=0,1,2,4"], kept),
        }, repeats)
    floor = t["floor"]
    further = (t["sweep4"] - t["sweep1"]) / 3
    share = further / floor
    print(f"end to end, wall time including imports (median of {repeats}, interleaved)")
    print(f"  import floor ({FLOOR_IMPORTS[7:]})  {floor:6.2f} s")
    for key in ("new store", "store exists"):
        print(f"  python -m lvsweep ({key}){' ' * (14 - len(key))}{t[key]:6.2f} s   {t[key] / floor:5.2f}x floor   "
              f"{verdict(t[key] / floor, RUN_TARGET)}")
    print(f"  python -m lvsweep (new store made by MLflow's migrations, LVSWEEP_STORE_CACHE=off)  "
          f"{t['no template']:6.2f} s   {t['no template'] / floor:5.2f}x floor")
    print(f"  python -m lvsweep -m noise=0            {t['sweep1']:6.2f} s")
    print(f"  python -m lvsweep -m noise=0,1,2,4      {t['sweep4']:6.2f} s")
    print(f"  each further job: (4 jobs - 1 job) / 3  {further:6.2f} s   {share:5.3f}x floor, "
          f"{share * QUIET_FLOOR_S:.2f} s at the quiet machine's {QUIET_FLOOR_S} s floor   target <= "
          f"{FURTHER_JOB_S:g} s ({FURTHER_JOB_S / QUIET_FLOOR_S:.3f}x floor): "
          f"{'met' if share * QUIET_FLOOR_S <= FURTHER_JOB_S else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cli", action="store_true", help="only the in-process training comparison")
    args = parser.parse_args()

    warnings.filterwarnings("ignore")  # Lightning's advice for the textbook variant is noise here
    cfg = compose_config()
    torch.set_num_threads(cfg.trainer.threads)
    orbit = simulate(cfg.system)
    dm = TrajectoryDataModule(make_data(orbit, cfg.noise.kind, cfg.noise.level, cfg.seed))
    sensitivity = sensitivity_profile(cfg.analysis.sensitivity, make_system(cfg.system), orbit).values
    epochs, lr = cfg.trainer.epochs, cfg.model.lr
    framework(dm, cfg, sensitivity)  # warm-up: first-call costs are not training costs
    t = median_times({
        "bare": lambda: bare_loop(dm, epochs, lr),
        "textbook": lambda: lightning_textbook(dm, epochs, lr, lean=False),
        "lean": lambda: lightning_textbook(dm, epochs, lr, lean=True),
        "lvsweep": lambda: framework(dm, cfg, sensitivity),
    }, args.repeats)
    print(f"training, linear model, T={cfg.system.n_steps}, {epochs} full-batch Adam epochs "
          f"(median of {args.repeats}, threads={cfg.trainer.threads})")
    rows = [("bare PyTorch loop", "bare"),
            ("Lightning, default Trainer (logger, checkpoints)", "textbook"),
            ("Lightning, lean Trainer, 1 epoch per step", "lean"),
            ("lvsweep: lean, manual optimisation, 100 epochs/step, callbacks", "lvsweep")]
    for label, key in rows:
        print(f"  {label:<64}{t[key]:7.3f} s   {t[key] / t['bare']:5.2f}x")
    print(f"  lvsweep / bare: {verdict(t['lvsweep'] / t['bare'], TRAINING_TARGET)}")
    bench_replicates(cfg, orbit, sensitivity, args.repeats)
    if not args.skip_cli:
        bench_cli(args.repeats)


if __name__ == "__main__":
    main()
