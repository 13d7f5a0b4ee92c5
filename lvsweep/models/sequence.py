"""What the multi-head and transformer models share: input standardisation and attention read-outs.

Both reconstruct x̂_t = Σ_j A_tj·v_j from the whole noisy sequence, so their attention is a
T×T map per head and layer; `attention()` reduces it to the one number per step that the
alignment analysis compares with the sensitivity, `head_attention()` keeps the heads apart.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Optional

import torch

from lvsweep.models.attention import AttentionMap, reduce_attention
from lvsweep.models.base import AttentionModel


class SequenceAttentionModel(AttentionModel):
    """Standardises the input with the training input's mean and std (buffers, set on the first
    training batch), so one default learning rate suits states of any scale; predictions are
    mapped back to state units, so `val/loss` stays comparable across models."""

    def __init__(self, dim: int, window: Optional[int], reduce: str, lr: float, epochs: int,
                 log_every: int) -> None:
        super().__init__(lr=lr, epochs=epochs, log_every=log_every)
        self.half = window // 2 if window else None
        self.reduce = reduce
        self.register_buffer("in_mean", torch.zeros(dim))
        self.register_buffer("in_std", torch.ones(dim))
        self.register_buffer("stats_ready", torch.tensor(False))

    def prepare(self, noisy: torch.Tensor) -> None:
        self.fit_input_stats(noisy)

    def fit_input_stats(self, noisy: torch.Tensor) -> None:
        self.in_mean.copy_(noisy.mean(0))
        self.in_std.copy_(noisy.std(0).clamp_min(1e-8))
        self.stats_ready.fill_(True)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if not bool(self.stats_ready):
            self.fit_input_stats(batch[0])

    @abstractmethod
    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[AttentionMap]]:
        """Standardised reconstruction [T, d] from standardised input, and each layer's map."""

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        z, _ = self.encode((noisy - self.in_mean) / self.in_std)
        return z * self.in_std + self.in_mean

    def attention_maps(self, noisy: torch.Tensor) -> list[AttentionMap]:
        """Each layer's weights, computed in eval mode so dropout never distorts what is analysed."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self.encode((noisy - self.in_mean) / self.in_std)[1]
        finally:
            self.train(was_training)

    def attention(self, noisy: torch.Tensor) -> torch.Tensor:
        return reduce_attention(self.attention_maps(noisy), self.reduce)

    def head_attention(self, noisy: torch.Tensor) -> torch.Tensor:
        """Per-head attention each step receives, [H, T], each row summing to 1 (last layer)."""
        return self.attention_maps(noisy)[-1].received()
