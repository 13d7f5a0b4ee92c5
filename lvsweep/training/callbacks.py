"""Lightning callbacks that turn training progress into metric histories.

They write to a `MetricSink` (any callable taking metrics and a step) rather than to MLflow, so
training knows nothing about tracking and the sink decides how to batch writes.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pytorch_lightning as pl
import torch

from lvsweep.analysis.alignment import alignment_metrics, pearson, spearman
from lvsweep.models.base import evaluating
from lvsweep.metric_names import TRAIN_LOSS, VAL_LOSS

MetricSink = Callable[[Mapping[str, float], int], None]


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (before, after]."""
    return after // every > before // every


def on_device(batch: Any, module: Any) -> Any:
    """A tensor, or a tuple of them, on the module's device: data made outside Lightning (the
    batches and the noisy input the callbacks read attention on) stays on the CPU while the model
    trains wherever `trainer.accelerator` put it."""
    if isinstance(batch, torch.Tensor):
        return batch.to(module.device)
    return tuple(on_device(b, module) for b in batch)


class LossHistory(pl.Callback):
    """`train/loss`, `val/loss` of the untrained model at step 0; then `train/loss` every
    `log_every` epochs, `val/loss` after each validation, both at the end.

    A recorded `train/loss` is the loss that drove an update, so it is logged at the epoch it was
    evaluated at (one before the update's count); the final losses are evaluated after the last update.
    """

    def __init__(self, sink: MetricSink, train_batch: Any, val_batch: Any) -> None:
        self.sink = sink
        self.batches = {TRAIN_LOSS: train_batch, VAL_LOSS: val_batch}
        self.final: dict[str, float] = {}

    def evaluate(self, pl_module: Any) -> dict[str, float]:
        with evaluating(pl_module):
            return {key: pl_module.reported_loss(on_device(b, pl_module)) for key, b in self.batches.items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        initial = self.evaluate(pl_module)
        if pl_module.log_every == 1:  # the first epoch logs the untrained train/loss at 0 itself
            initial.pop(TRAIN_LOSS)
        self.sink(initial, 0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        for step, value in pl_module.pending_train_losses:
            self.sink({TRAIN_LOSS: value}, step)
        pl_module.pending_train_losses.clear()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if pl_module.epochs_done < pl_module.epochs:  # the final value is logged at train end
            self.sink({VAL_LOSS: pl_module.val_loss}, pl_module.epochs_done)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.final = self.evaluate(pl_module)
        self.sink(self.final, pl_module.epochs_done)


class AlignmentCallback(pl.Callback):
    """Correlation of the model's attention with the sensitivity: of the untrained model at step 0
    (so a history starts where training does), every `every` epochs, and at the end."""

    def __init__(self, noisy: torch.Tensor, sensitivity: np.ndarray, every: int, sink: MetricSink) -> None:
        self.noisy = noisy
        self.sensitivity = sensitivity
        self.every = every
        self.sink = sink
        self.last_logged = 0
        self.initial: dict[str, float] = {}
        self.final: dict[str, float] = {}

    def measure(self, pl_module: Any) -> dict[str, float]:
        noisy = on_device(self.noisy, pl_module)
        with torch.no_grad():
            attention = pl_module.attention(noisy).cpu().numpy()
        metrics = alignment_metrics(attention, self.sensitivity)
        if hasattr(pl_module, "head_attention"):
            metrics.update(head_metrics(pl_module, noisy, self.sensitivity))
        return metrics

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.initial = self.measure(pl_module)  # before the first update: the untrained model
        self.sink(self.initial, 0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done = pl_module.epochs_done
        if crossed(self.last_logged, done, self.every):
            self.sink(self.measure(pl_module), done)
            self.last_logged = done

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.final = self.measure(pl_module)
        if pl_module.epochs_done != self.last_logged:
            self.sink(self.final, pl_module.epochs_done)
            self.last_logged = pl_module.epochs_done


def head_metrics(pl_module: Any, noisy: torch.Tensor, sensitivity: np.ndarray) -> dict[str, float]:
    """`align/pearson_head<h>`, `align/spearman_head<h>` (h from 0) for models with several heads;
    with replicates, head h's correlation averaged over replicates."""
    with torch.no_grad():
        heads = pl_module.head_attention(noisy).cpu().numpy()
    n_heads = heads.shape[-2]
    r = pearson(heads, sensitivity).reshape(-1, n_heads).mean(0)
    rho = spearman(heads, sensitivity).reshape(-1, n_heads).mean(0)
    return {name: float(value[h]) for h in range(n_heads)
            for name, value in ((f"align/pearson_head{h}", r), (f"align/spearman_head{h}", rho))}
