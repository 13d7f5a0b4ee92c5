"""Single-layer multi-head attention over time: x̂_t = W_o·concat_h(Σ_j A^h_tj·v^h_j)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lvsweep.models.attention import AttentionMap, attend, merge_heads, split_heads, time_encoding
from lvsweep.models.sequence import SequenceAttentionModel


class MultiHeadAttention(SequenceAttentionModel):
    """H heads with learned queries, keys and values, one layer, no residual path.

    Queries and keys see the observation plus a sinusoidal time encoding, so a head can choose
    where in time to look; values see the observation only, so every reconstruction is an
    attention-weighted average of (projected) observations and the attention is the whole story.
    """

    def __init__(self, dim: int, heads: int = 4, width: int = 32, window: Optional[int] = 64,
                 dropout: float = 0.0, reduce: str = "received", lr: float = 1e-2, epochs: int = 1,
                 log_every: int = 1) -> None:
        super().__init__(dim, window, reduce, lr=lr, epochs=epochs, log_every=log_every)
        self.heads = heads
        self.width = width
        self.dropout = dropout
        self.embed = nn.Linear(dim, width)
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, dim)

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[AttentionMap]]:
        content = self.embed(z)
        h = content + time_encoding(z.shape[0], self.width).to(z)
        q, k, v = (split_heads(f(x), self.heads)
                   for f, x in ((self.query, h), (self.key, h), (self.value, content)))
        mixed, amap = attend(q, k, v, self.half, self.dropout, self.training)
        return self.out(merge_heads(mixed)), [amap]
