"""How well a model denoises: its reconstruction against the clean states, beside the noisy input's.

`val/loss` alone does not say whether a model denoises; next to `val/noisy_mse` (the error of
just returning the noisy input) and `val/r2` (the share of the states' variance reconstructed) it
does, for every model alike.
"""
from __future__ import annotations

from typing import Any

import torch

from lvsweep.models.base import evaluating
from lvsweep.metric_names import VAL_NOISY_MSE, VAL_R2


def r2_score(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """1 − SSE/SST over all steps and state variables, each variable centred on its own mean;
    for predictions [R, T, d] of R replicates, the mean of their R²."""
    sse = torch.sum((prediction - target) ** 2, dim=(-2, -1))
    sst = torch.sum((target - target.mean(dim=0)) ** 2)
    return float(torch.mean(1.0 - sse / sst))


def reconstruction_metrics(model: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """`val/r2` of the model's reconstruction and `val/noisy_mse` of the noisy input itself."""
    noisy, clean = (b.to(model.device) for b in batch)  # where the model is (trainer.accelerator)
    with evaluating(model):
        prediction = model(noisy)
    return {VAL_R2: r2_score(prediction, clean), VAL_NOISY_MSE: float(torch.mean((noisy - clean) ** 2))}
