"""A small transformer encoder over time, from torch's `nn.TransformerEncoderLayer`."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lvsweep.models.attention import AttentionMap, module_self_attention, time_encoding
from lvsweep.models.sequence import SequenceAttentionModel


def encoder_layer_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor,
                          half: Optional[int]) -> tuple[torch.Tensor, AttentionMap]:
    """The pre-norm forward of `layer` on x [T, E], also returning its attention weights.

    torch's own forward calls its attention with need_weights=False; this runs the same
    sub-modules in the same order (tests check it equals `layer(x)`), asking for the weights.
    """
    attended, amap = module_self_attention(layer.self_attn, layer.norm1(x), half)
    x = x + layer.dropout1(attended)
    ff = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x)))))
    return x + layer.dropout2(ff), amap


class TransformerAttention(SequenceAttentionModel):
    """Embedding + time encoding → `layers` pre-norm encoder layers → LayerNorm → linear read-out.

    `head_attention` reports the heads of the last layer: heads of different layers are unrelated,
    so averaging "head h" over layers would mix unrelated maps.
    """

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, width: int = 32, ff_width: int = 64,
                 window: Optional[int] = 64, dropout: float = 0.0, reduce: str = "received",
                 lr: float = 1e-2, epochs: int = 1, log_every: int = 1) -> None:
        super().__init__(dim, window, reduce, lr=lr, epochs=epochs, log_every=log_every)
        self.width = width
        self.embed = nn.Linear(dim, width)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, dim_feedforward=ff_width, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[AttentionMap]]:
        h = self.embed(z) + time_encoding(z.shape[0], self.width).to(z)
        maps = []
        for layer in self.layers:
            h, amap = encoder_layer_forward(layer, h, self.half)
            maps.append(amap)
        return self.out(self.norm(h)), maps
