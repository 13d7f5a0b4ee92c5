"""The interface every attention model implements, and the full-batch training step they share.

The alignment callback, perturbation analysis, figures and tracking only ever call `attention()`
and `forward()`, so a new architecture plugs in without touching them.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Iterator

import pytorch_lightning as pl
import torch

from lvsweep.errors import LvsweepError
from lvsweep.metric_names import TRAIN_LOSS

Batch = tuple[torch.Tensor, torch.Tensor]


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off and no graph, then the model back in the mode it was in: what a model scores
    after training is its own, not that of one random dropout mask."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class AttentionModel(pl.LightningModule, ABC):
    """Reconstructs the clean state from a noisy sequence [T, d] through attention over time.

    One epoch is one full-batch Adam step. A Lightning step runs `epochs_per_batch` of them (set by
    `lvsweep.training.trainer.fit` from the validation and alignment cadences): Lightning's per-step
    bookkeeping costs about as much as one step of these small models, so running many epochs per
    step keeps the framework overhead small without changing the maths. `train/loss` is still
    recorded every `log_every` epochs, inside the step (`pending_train_losses`).
    """

    def __init__(self, lr: float, epochs: int, log_every: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.lr = lr
        self.epochs = epochs
        self.log_every = log_every
        self.epochs_per_batch = log_every
        # (epoch the loss was evaluated at, train/loss) recorded during the last Lightning step
        self.pending_train_losses: list[tuple[int, float]] = []
        self.epochs_done = 0
        self.train_loss = math.nan
        self.val_loss = math.nan

    @abstractmethod
    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Reconstruction x̂ [T, d] of the clean states."""

    @abstractmethod
    def attention(self, noisy: torch.Tensor) -> torch.Tensor:
        """Attention each time step receives, [T], non-negative and summing to 1."""

    def prepare(self, noisy: torch.Tensor) -> None:
        """Set anything fitted to the training input before the first step (nothing by default)."""

    def replicate_losses(self, batch: Batch) -> torch.Tensor:
        """MSE of x̂ against the clean states: a scalar here, one per replicate [R] when replicated."""
        noisy, clean = batch
        return torch.mean((self(noisy) - clean) ** 2, dim=(-2, -1))

    def loss(self, batch: Batch) -> torch.Tensor:
        """What Adam minimises: the SUM of the replicates' losses. Adam is elementwise, so each
        replicate's parameters get exactly the update they would get if trained alone."""
        return self.replicate_losses(batch).sum()

    def reported_loss(self, batch: Batch) -> float:
        """`train/loss`, `val/loss`: the mean over replicates (the model's loss when there is one)."""
        return float(self.replicate_losses(batch).mean())

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        opt = self.optimizers(use_pl_optimizer=False)
        done = self.epochs_done  # a local: a module attribute costs a __setattr__ per epoch
        for _ in range(min(self.epochs_per_batch, self.epochs - done)):
            opt.zero_grad(set_to_none=True)
            losses = self.replicate_losses(batch)
            loss = losses.sum()
            loss.backward()
            opt.step()
            done += 1
            if done % self.log_every == 0 or done == self.epochs:
                self.record_train_loss(losses, done)
        self.epochs_done = done
        return loss.detach()

    def record_train_loss(self, losses: torch.Tensor, done: int) -> None:
        """The loss that drove update `done` (evaluated at epoch `done - 1`), checked finite."""
        self.train_loss = float(losses.detach().mean())
        if not math.isfinite(self.train_loss):
            raise LvsweepError(
                TRAIN_LOSS, f"became {self.train_loss} by epoch {done}: the optimisation "
                f"diverged; lower model.lr (now {self.lr:g}) or noise.level")
        self.pending_train_losses.append((done - 1, self.train_loss))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.val_loss = self.reported_loss(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)
