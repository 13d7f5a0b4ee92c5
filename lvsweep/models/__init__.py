"""Model registry: `model.name` in the config picks the class."""
from __future__ import annotations

from typing import Any

from lvsweep.errors import LvsweepError
from lvsweep.models.base import AttentionModel
from lvsweep.models.linear import LinearAttention


def make_model(model_cfg: Any, dim: int, epochs: int, epochs_per_step: int) -> AttentionModel:
    common = dict(lr=float(model_cfg.lr), epochs=epochs, epochs_per_step=epochs_per_step)
    if model_cfg.name == "linear":
        return LinearAttention(dim, form=model_cfg.form, **common)
    raise LvsweepError("model.name", f"unknown model '{model_cfg.name}'; allowed: linear")


__all__ = ["AttentionModel", "LinearAttention", "make_model"]
