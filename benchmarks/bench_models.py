"""Cost of each model: `python -m benchmarks.bench_models`.

Time per epoch (one full-batch Adam step, the unit `trainer.epochs` counts) at the default
T = 1000, and the peak memory of training the transformer on a 100 000-step trajectory with the
default window. Peak memory is read from `ru_maxrss` in a fresh subprocess per measurement: the
high-water mark of a process only ever rises, and torch allocates outside Python's tracemalloc.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from lvsweep.app import compose_config
from lvsweep.data.trajectory import TrajectoryDataModule, make_data
from lvsweep.models import AttentionModel, make_model
from lvsweep.systems.simulate import simulate

MODELS = ("linear", "multihead", "transformer")
LONG_T = 100_000


def _setup(name: str, n_steps: int) -> tuple[AttentionModel, Any, torch.optim.Optimizer]:
    """The model as the CLI would build it on the default trajectory (noise 2.0), one thread."""
    cfg = compose_config(f"model={name}", f"system.n_steps={n_steps}")
    torch.set_num_threads(cfg.trainer.threads)
    data = TrajectoryDataModule(make_data(simulate(cfg.system), cfg.noise.kind, cfg.noise.level, cfg.seed))
    torch.manual_seed(cfg.seed)
    model = make_model(cfg.model, len(cfg.system.state_names), cfg.trainer.epochs, cfg.trainer.log_every)
    if hasattr(model, "fit_input_stats"):
        model.fit_input_stats(data.train_batch[0])
    return model, data.train_batch, torch.optim.Adam(model.parameters(), lr=model.lr)


def _epoch(model: AttentionModel, batch: Any, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    model.loss(batch).backward()
    opt.step()


def epoch_seconds(name: str, n_steps: int = 1000, epochs: int = 20) -> float:
    """Median wall time of one epoch after two warm-up epochs."""
    model, batch, opt = _setup(name, n_steps)
    for _ in range(2):
        _epoch(model, batch, opt)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        _epoch(model, batch, opt)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def peak_training_memory(name: str, n_steps: int, epochs: int) -> dict[str, float]:
    """In this process: resident-memory high-water mark before and after `epochs` epochs."""
    model, batch, opt = _setup(name, n_steps)
    before = _maxrss_mb()
    start = time.perf_counter()
    for _ in range(epochs):
        _epoch(model, batch, opt)
    seconds = (time.perf_counter() - start) / epochs
    return {"before_mb": before, "peak_mb": _maxrss_mb(), "epoch_s": seconds}


def measure_in_subprocess(name: str, n_steps: int, epochs: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "lvsweep.bench_models", "--peak", name, str(n_steps), str(epochs)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_models(epochs: int = 20, long_epochs: int = 2) -> list[str]:
    """Printable lines: time per epoch of each model at T = 1000, memory of the transformer at T = 100 000."""
    cfg = compose_config("model=transformer")
    lines = [f"time per epoch at T = 1000 (one full-batch Adam step, {cfg.trainer.threads} thread, "
             f"median of {epochs}):"]
    for name in MODELS:
        lines.append(f"  {name:<12} {1000 * epoch_seconds(name, 1000, epochs):8.1f} ms")
    m = measure_in_subprocess("transformer", LONG_T, long_epochs)
    lines.append(f"transformer at T = {LONG_T} (window {cfg.model.window}, {long_epochs} epochs): "
                 f"{m['epoch_s']:.2f} s per epoch, peak memory {m['peak_mb']:.0f} MB "
                 f"(+{m['peak_mb'] - m['before_mb']:.0f} MB for training, ru_maxrss)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="timed epochs per model at T = 1000")
    parser.add_argument("--peak", nargs=3, metavar=("MODEL", "T", "EPOCHS"),
                        help="(internal) measure peak memory in this process and print it as JSON")
    args = parser.parse_args()
    if args.peak:
        name, n_steps, epochs = args.peak
        print(json.dumps(peak_training_memory(name, int(n_steps), int(epochs))))
        return
    print("\n".join(bench_models(args.epochs)))


if __name__ == "__main__":
    main()
