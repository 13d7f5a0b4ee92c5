"""Cost of each model: `python -m benchmarks.bench_models [--accelerator gpu]`.

Time per epoch (one full-batch Adam step, the unit `trainer.epochs` counts) at the default
T = 1000, and the peak memory of training the transformer on a 100 000-step trajectory with the
default window. Peak memory is read from `ru_maxrss` in a fresh subprocess per measurement: the
high-water mark of a process only ever rises, and torch allocates outside Python's tracemalloc.
With `--accelerator gpu` the model and data live on the CUDA device, each timed epoch ends with a
synchronisation (CUDA kernels run asynchronously), and the peak is the device's
`max_memory_allocated`.
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

from lvsweep.config.keys import MODEL_SCHEMAS
from lvsweep.app import compose_config
from lvsweep.data.trajectory import TrajectoryDataModule, make_data
from lvsweep.models import AttentionModel, make_model
from lvsweep.systems.simulate import simulate

MODELS = tuple(MODEL_SCHEMAS)
LONG_T = 100_000


def _device(accelerator: str) -> torch.device:
    """`cpu`, or the CUDA device for `gpu` (an error when there is none: a GPU timing must not
    silently measure the CPU)."""
    if accelerator == "gpu":
        if not torch.cuda.is_available():
            raise SystemExit("bench_models: --accelerator gpu needs CUDA, which torch does not see here")
        return torch.device("cuda")
    return torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(name: str, n_steps: int, device: torch.device = torch.device("cpu")
           ) -> tuple[AttentionModel, Any, torch.optim.Optimizer]:
    """The model as the CLI would build it on the default trajectory (noise 2.0), one thread, on `device`."""
    cfg = compose_config(f"model={name}", f"system.n_steps={n_steps}")
    torch.set_num_threads(cfg.trainer.threads)
    data = TrajectoryDataModule(make_data(simulate(cfg.system), cfg.noise.kind, cfg.noise.level, cfg.seed))
    torch.manual_seed(cfg.seed)
    model = make_model(cfg.model, len(cfg.system.state_names), cfg.trainer.epochs, cfg.trainer.log_every)
    if hasattr(model, "fit_input_stats"):
        model.fit_input_stats(data.train_batch[0])
    model = model.to(device)
    batch = tuple(b.to(device) for b in data.train_batch)
    return model, batch, torch.optim.Adam(model.parameters(), lr=model.lr)


def _epoch(model: AttentionModel, batch: Any, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    model.loss(batch).backward()
    opt.step()


def epoch_seconds(name: str, n_steps: int = 1000, epochs: int = 20, accelerator: str = "cpu") -> float:
    """Median wall time of one epoch after two warm-up epochs."""
    device = _device(accelerator)
    model, batch, opt = _setup(name, n_steps, device)
    for _ in range(2):
        _epoch(model, batch, opt)
    _sync(device)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        _epoch(model, batch, opt)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def peak_training_memory(name: str, n_steps: int, epochs: int, accelerator: str = "cpu") -> dict[str, float]:
    """In this process: memory high-water mark before and after `epochs` epochs (resident memory
    on the CPU, the device's allocations on a GPU)."""
    device = _device(accelerator)
    model, batch, opt = _setup(name, n_steps, device)
    _sync(device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / 2**20 if on_gpu else _maxrss_mb()
    start = time.perf_counter()
    for _ in range(epochs):
        _epoch(model, batch, opt)
    _sync(device)
    seconds = (time.perf_counter() - start) / epochs
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else _maxrss_mb()
    return {"before_mb": before, "peak_mb": peak, "epoch_s": seconds}


def measure_in_subprocess(name: str, n_steps: int, epochs: int, accelerator: str = "cpu") -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_models", "--accelerator", accelerator,
                          "--peak", name, str(n_steps), str(epochs)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_models(epochs: int = 20, long_epochs: int = 2, accelerator: str = "cpu") -> list[str]:
    """Printable lines: time per epoch of each model at T = 1000, memory of the transformer at T = 100 000."""
    cfg = compose_config("model=transformer")
    where = "GPU (CUDA)" if accelerator == "gpu" else f"CPU, {cfg.trainer.threads} thread"
    lines = [f"time per epoch at T = 1000 (one full-batch Adam step, {where}, median of {epochs}):"]
    for name in MODELS:
        lines.append(f"  {name:<12} {1000 * epoch_seconds(name, 1000, epochs, accelerator):8.1f} ms")
    m = measure_in_subprocess("transformer", LONG_T, long_epochs, accelerator)
    memory = "torch.cuda.max_memory_allocated" if accelerator == "gpu" else "ru_maxrss"
    lines.append(f"transformer at T = {LONG_T} (window {cfg.model.window}, {long_epochs} epochs, {where}): "
                 f"{m['epoch_s']:.2f} s per epoch, peak memory {m['peak_mb']:.0f} MB "
                 f"(+{m['peak_mb'] - m['before_mb']:.0f} MB for training, {memory})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="timed epochs per model at T = 1000")
    parser.add_argument("--long-epochs", type=int, default=2, help="timed epochs of the transformer at T = 100 000")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu",
                        help="where the models train: cpu (one thread), or gpu (CUDA; an error without it)")
    parser.add_argument("--peak", nargs=3, metavar=("MODEL", "T", "EPOCHS"),
                        help="(internal) measure peak memory in this process and print it as JSON")
    args = parser.parse_args()
    if args.peak:
        name, n_steps, epochs = args.peak
        print(json.dumps(peak_training_memory(name, int(n_steps), int(epochs), args.accelerator)))
        return
    print("\n".join(bench_models(args.epochs, args.long_epochs, args.accelerator)))


if __name__ == "__main__":
    main()
