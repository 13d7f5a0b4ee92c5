"""Model registry: `model.name` in the config picks the class."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from lvsweep.errors import LvsweepError
from lvsweep.models.base import AttentionModel
from lvsweep.config.keys import MODEL_SCHEMAS
from lvsweep.models.linear import LinearAttention, StackedLinearAttention
from lvsweep.models.multihead import MultiHeadAttention
from lvsweep.models.replicated import ReplicatedModel
from lvsweep.models.transformer import TransformerAttention



def make_model(model_cfg: Any, dim: int, epochs: int, log_every: int) -> AttentionModel:
    common = dict(lr=float(model_cfg.lr), epochs=epochs, log_every=log_every)
    if model_cfg.name == "linear":
        return LinearAttention(dim, form=model_cfg.form, **common)
    if model_cfg.name in ("multihead", "transformer"):
        common.update(heads=int(model_cfg.heads), width=int(model_cfg.width), window=model_cfg.window,
                      dropout=float(model_cfg.dropout), reduce=str(model_cfg.attention.reduce))
        if model_cfg.name == "multihead":
            return MultiHeadAttention(dim, **common)
        return TransformerAttention(dim, layers=int(model_cfg.layers), ff_width=int(model_cfg.ff_width),
                                    **common)
    raise LvsweepError("model.name", f"unknown model '{model_cfg.name}'; allowed: {', '.join(MODEL_SCHEMAS)}")


def make_replicates(model_cfg: Any, dim: int, epochs: int, log_every: int, seeds: Sequence[int],
                    noisy: torch.Tensor) -> AttentionModel:
    """One model per seed, initialised from that seed and prepared on its own training input
    (noisy [R, T, d]); a single one is returned as is, several as one model with a replicate axis:
    natively batched for the linear model, `ReplicatedModel` (vmap) for the others.

    The global torch generator is left seeded by the last seed: with one replicate, training
    draws (dropout) continue from `seed` exactly as in a run without replicates.
    """
    models = []
    for seed, x in zip(seeds, noisy):
        torch.manual_seed(seed)
        model = make_model(model_cfg, dim, epochs, log_every)
        model.prepare(x)
        models.append(model)
    if len(models) == 1:
        return models[0]
    if isinstance(models[0], LinearAttention):
        return StackedLinearAttention(models)
    return ReplicatedModel(models)


__all__ = ["AttentionModel", "LinearAttention", "MultiHeadAttention", "ReplicatedModel", "StackedLinearAttention",
           "TransformerAttention", "make_model", "make_replicates"]
