"""Noisy observations of a clean orbit, and the LightningDataModule that serves them.

Training and validation copies are independent noise draws of the same clean orbit, so the
validation loss measures denoising, not memorisation of one draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pytorch_lightning as pl
import torch

from lvsweep.config.schema import NoiseKind
from lvsweep.errors import LvsweepError
from lvsweep.systems.simulate import Orbit

Batch = tuple[torch.Tensor, torch.Tensor]


def add_noise(clean: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """`gaussian`: x + level·ε; `relative`: x + level·σ·ε, σ each state's standard deviation over
    the clean orbit (so one level means the same signal-to-noise ratio on systems of any scale);
    `multiplicative`: x·(1 + level·ε); `none`: x."""
    eps = rng.standard_normal(clean.shape)
    if kind == "gaussian":
        return clean + level * eps
    if kind == "relative":
        return clean + level * clean.std(axis=0) * eps
    if kind == "multiplicative":
        return clean * (1.0 + level * eps)
    if kind == "none":
        return clean.copy()
    raise LvsweepError("noise.kind", f"unknown kind '{kind}'; allowed: {', '.join(k.value for k in NoiseKind)}")


@dataclass(frozen=True)
class TrajectoryData:
    t: np.ndarray  # [T]
    clean: np.ndarray  # [T, d]
    noisy_train: np.ndarray  # [T, d], or [R, T, d] for R replicates
    noisy_val: np.ndarray  # [T, d], or [R, T, d]

    def replicates_train(self) -> np.ndarray:
        """The training input as [R, T, d] whatever the number of replicates."""
        return self.noisy_train.reshape(-1, *self.clean.shape)


def make_data(orbit: Orbit, kind: str, level: float, seed: int) -> TrajectoryData:
    # Both draws come from one generator seeded by `seed`: same seed, same data.
    rng = np.random.default_rng(seed)
    train = add_noise(orbit.x, kind, level, rng)
    val = add_noise(orbit.x, kind, level, rng)
    if not (np.all(np.isfinite(train)) and np.all(np.isfinite(val))):
        raise LvsweepError("noise.level", f"level {level} makes the noisy data non-finite; use a smaller level")
    return TrajectoryData(orbit.t, orbit.x, train, val)


def replicate_seed(seed: int, replicate: int) -> int:
    """Replicate 0 uses `seed` itself, so a replicates=1 run is unchanged; replicate r > 0 uses a
    seed derived from (seed, r) by NumPy's SeedSequence, so runs with nearby seeds (a sweep over
    `seed`) share no replicate. A replicates=1 run with this seed reproduces replicate r."""
    if replicate == 0:
        return seed
    return int(np.random.SeedSequence([seed, replicate]).generate_state(1)[0])


def make_replicate_data(orbit: Orbit, kind: str, level: float, seeds: list[int]) -> TrajectoryData:
    """One independent noise draw (train and validation) per seed; the noisy arrays gain a leading
    replicate axis when there is more than one seed."""
    draws = [make_data(orbit, kind, level, s) for s in seeds]
    if len(draws) == 1:
        return draws[0]
    return TrajectoryData(orbit.t, orbit.x, np.stack([d.noisy_train for d in draws]),
                          np.stack([d.noisy_val for d in draws]))


class _Repeat:
    """The whole trajectory as one batch, `n` times: the data loader of full-batch training."""

    def __init__(self, batch: Batch, n: int = 1) -> None:
        self.batch, self.n = batch, n

    def __iter__(self) -> Iterator[Batch]:
        return (self.batch for _ in range(self.n))

    def __len__(self) -> int:
        return self.n


class TrajectoryDataModule(pl.LightningDataModule):
    """Full-batch data: each training batch is the whole noisy sequence with its clean target."""

    def __init__(self, data: TrajectoryData) -> None:
        super().__init__()
        self.data = data
        as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        clean = as_t(data.clean)
        self.train_batch: Batch = (as_t(data.noisy_train), clean)
        self.val_batch: Batch = (as_t(data.noisy_val), clean)

    def train_dataloader(self) -> Any:
        return _Repeat(self.train_batch)

    def val_dataloader(self) -> Any:
        return _Repeat(self.val_batch)
