"""The paper's linear attention: one learned linear score per time step, softmax over time."""
from __future__ import annotations

import torch
from torch import nn

from lvsweep.models.base import AttentionModel


class LinearAttention(AttentionModel):
    """a = softmax_t(w·x̃_t + b); x̂_t = a_t·x̃_t (`paper`) or T·a_t·x̃_t (`scaled`).

    In the `paper` form the weights sum to 1 over T steps, so x̂ is far smaller than x and the
    fit rewards putting weight where |x̃| is large; `scaled` removes that normalisation effect.
    """

    def __init__(self, dim: int, form: str = "paper", lr: float = 1e-2, epochs: int = 1,
                 epochs_per_step: int = 1) -> None:
        super().__init__(lr=lr, epochs=epochs, epochs_per_step=epochs_per_step)
        self.form = form
        self.score = nn.Linear(dim, 1)

    def attention(self, noisy: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.score(noisy).squeeze(-1), dim=-1)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        weights = self.attention(noisy).unsqueeze(-1)
        if self.form == "scaled":
            weights = weights * noisy.shape[-2]
        return weights * noisy
