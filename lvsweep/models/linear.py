"""The paper's linear attention: one learned linear score per time step, softmax over time."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lvsweep.models.base import AttentionModel


def _reconstruct(weights: torch.Tensor, noisy: torch.Tensor, form: str) -> torch.Tensor:
    """x̂_t = a_t·x̃_t (`paper`) or T·a_t·x̃_t (`scaled`), for weights [..., T] and noisy [..., T, d]."""
    weights = weights.unsqueeze(-1)
    if form == "scaled":
        weights = weights * noisy.shape[-2]
    return weights * noisy


class LinearAttention(AttentionModel):
    """a = softmax_t(w·x̃_t + b); x̂_t = a_t·x̃_t (`paper`) or T·a_t·x̃_t (`scaled`).

    In the `paper` form the weights sum to 1 over T steps, so x̂ is far smaller than x and the
    fit rewards putting weight where |x̃| is large; `scaled` removes that normalisation effect.
    """

    def __init__(self, dim: int, form: str = "paper", lr: float = 1e-2, epochs: int = 1,
                 log_every: int = 1) -> None:
        super().__init__(lr=lr, epochs=epochs, log_every=log_every)
        self.form = form
        self.score = nn.Linear(dim, 1)

    def attention(self, noisy: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.score(noisy).squeeze(-1), dim=-1)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return _reconstruct(self.attention(noisy), noisy, self.form)


class StackedLinearAttention(AttentionModel):
    """R linear attentions as one: w [R, d], b [R]; noisy [R, T, d] → attention [R, T].

    The generic `ReplicatedModel` (vmap over `functional_call`) works for this model too, but for
    a model this small its per-operation dispatch costs more than the arithmetic; one batched
    matrix product per step does the same maths at a fraction of the cost
    (`python -m benchmarks.bench`).
    """

    def __init__(self, models: Sequence[LinearAttention]) -> None:
        first = models[0]
        super().__init__(lr=first.lr, epochs=first.epochs, log_every=first.log_every)
        self.form = first.form
        self.replicates = len(models)
        self.weight = nn.Parameter(torch.stack([m.score.weight.detach()[0] for m in models]))  # [R, d]
        self.bias = nn.Parameter(torch.stack([m.score.bias.detach()[0] for m in models]))  # [R]

    def attention(self, noisy: torch.Tensor) -> torch.Tensor:
        # A sum over the d state components of elementwise products: with d = 2 or 3 this is
        # cheaper, forward and backward, than a batched matrix product with an inner size of d.
        scores = self.bias[:, None] + noisy[..., 0] * self.weight[:, 0, None]
        for k in range(1, noisy.shape[-1]):
            scores = scores + noisy[..., k] * self.weight[:, k, None]
        return torch.softmax(scores, dim=-1)  # [R, T]

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return _reconstruct(self.attention(noisy), noisy, self.form)
