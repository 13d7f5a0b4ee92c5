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

from lvsweep.errors import LvsweepError
from lvsweep.simulate import Orbit

Batch = tuple[torch.Tensor, torch.Tensor]


def add_noise(clean: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """`gaussian`: x + level·ε; `multiplicative`: x·(1 + level·ε); `none`: x."""
    eps = rng.standard_normal(clean.shape)
    if kind == "gaussian":
        return clean + level * eps
    if kind == "multiplicative":
        return clean * (1.0 + level * eps)
    if kind == "none":
        return clean.copy()
    raise LvsweepError("noise.kind", f"unknown kind '{kind}'; allowed: gaussian, multiplicative, none")


@dataclass(frozen=True)
class TrajectoryData:
    t: np.ndarray  # [T]
    clean: np.ndarray  # [T, d]
    noisy_train: np.ndarray  # [T, d]
    noisy_val: np.ndarray  # [T, d]


def make_data(orbit: Orbit, kind: str, level: float, seed: int) -> TrajectoryData:
    # Both draws come from one generator seeded by `seed`: same seed, same data.
    rng = np.random.default_rng(seed)
    train = add_noise(orbit.x, kind, level, rng)
    val = add_noise(orbit.x, kind, level, rng)
    if not (np.all(np.isfinite(train)) and np.all(np.isfinite(val))):
        raise LvsweepError("noise.level", f"level {level} makes the noisy data non-finite; use a smaller level")
    return TrajectoryData(orbit.t, orbit.x, train, val)


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
