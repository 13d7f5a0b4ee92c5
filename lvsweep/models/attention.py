"""Dot-product attention over time, full or within a window, and the attention each step receives.

Windowed attention cuts the queries into blocks of `block` steps; each block scores only its own
keys and `half` keys either side of it, so the scores take H·T·(block + 2·half) numbers instead of
H·T². That is what lets a 100 000-step trajectory train on a CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lvsweep.config.schema import AttentionReduce

REDUCTIONS = tuple(r.value for r in AttentionReduce)


@dataclass(frozen=True)
class AttentionMap:
    """One layer's attention weights in block form.

    Query n·B + b gives weight `weights[h, n, b, s]` to key n·B − pad + s (B = block size), so a
    banded map costs memory linear in T. Full attention is the special case of one block, pad 0.
    Rows of padded queries (index ≥ T) are never read.
    """

    weights: torch.Tensor  # [H, n_blocks, B, span]
    length: int
    pad: int

    @classmethod
    def full(cls, weights: torch.Tensor) -> "AttentionMap":
        """Wrap dense weights [H, T, T] (rows are queries)."""
        return cls(weights.unsqueeze(1), weights.shape[-1], 0)

    def received(self, query_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Σ_i w_i·A[h, i, j] per head, [H, T]; the default w_i = 1/T is the mean over queries."""
        heads, n_blocks, block, span = self.weights.shape
        t = self.length
        if query_weight is None:
            query_weight = self.weights.new_full((t,), 1.0 / t)
        w = F.pad(query_weight, (0, n_blocks * block - t)).view(n_blocks, block)
        per_block = torch.einsum("hnbs,nb->hns", self.weights, w)
        # Key s of block n sits at n·B + s in padded key coordinates (real index + pad).
        index = (torch.arange(n_blocks)[:, None] * block + torch.arange(span)[None, :]).reshape(-1)
        out = self.weights.new_zeros(heads, (n_blocks - 1) * block + span)
        # Out of place, so the read-out also runs under torch.func.vmap (replicates).
        out = out.index_add(1, index.to(out.device), per_block.reshape(heads, -1))
        return out[:, self.pad:self.pad + t]

    def dense(self) -> torch.Tensor:
        """The weights as [H, T, T]; for checks on small inputs only."""
        heads, n_blocks, block, span = self.weights.shape
        out = self.weights.new_zeros(heads, n_blocks * block, (n_blocks - 1) * block + span)
        for n in range(n_blocks):
            out[:, n * block:(n + 1) * block, n * block:n * block + span] = self.weights[:, n]
        return out[:, :self.length, self.pad:self.pad + self.length]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, half: Optional[int], dropout: float = 0.0,
           training: bool = False) -> tuple[torch.Tensor, AttentionMap]:
    """softmax(q·kᵀ/√d)·v for q, k, v [H, T, d]; `half` None is full attention, else |i − j| ≤ half.

    Returns the output [H, T, d] and the weights before dropout (what the analysis reads).
    """
    heads, t, d = q.shape
    q = q * d ** -0.5
    if half is None:
        weights = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        out = F.dropout(weights, dropout, training) @ v
        return out, AttentionMap.full(weights)

    half = min(half, t - 1)
    # block <= half: even a padded query of the last block (index < t - 1 + block) has a real key
    # within reach, so no row of scores is all -inf and no NaN reaches the gradient.
    block = max(1, half)
    n_blocks = math.ceil(t / block)
    extra = n_blocks * block - t
    span = block + 2 * half
    qb = F.pad(q, (0, 0, 0, extra)).view(heads, n_blocks, block, d)
    kb = F.pad(k, (0, 0, half, half + extra)).unfold(1, span, block)  # [H, n, d, span]
    vb = F.pad(v, (0, 0, half, half + extra)).unfold(1, span, block)
    scores = torch.einsum("hnbd,hnds->hnbs", qb, kb)

    b = torch.arange(block)
    s = torch.arange(span)
    near = (b[:, None] + half - s[None, :]).abs() <= half  # [B, span]: query b to key s of its block
    key = torch.arange(n_blocks)[:, None] * block - half + s[None, :]  # [n, span]: real key index
    valid = near[None] & ((key >= 0) & (key < t))[:, None, :]
    scores = scores.masked_fill(~valid.to(scores.device), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    out = torch.einsum("hnbs,hnds->hnbd", F.dropout(weights, dropout, training), vb)
    out = out.reshape(heads, n_blocks * block, d)[:, :t]
    return out, AttentionMap(weights, t, half)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[T, H·d] → [H, T, d]."""
    t, width = x.shape
    return x.view(t, heads, width // heads).transpose(0, 1)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[H, T, d] → [T, H·d]."""
    heads, t, d = x.shape
    return x.transpose(0, 1).reshape(t, heads * d)


def module_self_attention(mha: nn.MultiheadAttention, x: torch.Tensor,
                          half: Optional[int]) -> tuple[torch.Tensor, AttentionMap]:
    """Self-attention of a torch `nn.MultiheadAttention` on x [T, E].

    Full attention calls the module and takes the weights it returns. A window has no counterpart
    in the module without a dense T×T mask, so that path applies the module's own in/out
    projections around `attend`; tests check the two agree when the window covers the sequence.
    """
    if half is None:
        out, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
        return out, AttentionMap.full(weights)
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    heads = mha.num_heads
    out, amap = attend(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads), half,
                       mha.dropout, mha.training)
    return mha.out_proj(merge_heads(out)), amap


def time_encoding(t: int, width: int) -> torch.Tensor:
    """Sinusoidal encoding of the step index, [T, width]: dot products depend on i − j, so a
    query can learn to look at its neighbours in time."""
    n = (width + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(n, dtype=torch.float32) / n)
    angle = torch.arange(t, dtype=torch.float32)[:, None] * freq[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)[:, :width]


def reduce_attention(maps: Sequence[AttentionMap], reduce: str) -> torch.Tensor:
    """Per-step attention [T] summing to 1, from each layer's maps.

    `received`: mean over layers, heads and queries of the attention each step receives.
    `last_layer`: the same for the last layer only. `rollout`: attention flow to the input through
    the residual stream, each layer taken as ½·(head-mean A) + ½·I (Abnar & Zuidema, 2020), done as
    row-vector products so it stays linear in T for windowed maps.
    """
    if reduce == "received":
        return torch.stack([m.received().mean(0) for m in maps]).mean(0)
    if reduce == "last_layer":
        return maps[-1].received().mean(0)
    if reduce == "rollout":
        flow = maps[0].weights.new_full((maps[0].length,), 1.0 / maps[0].length)
        for m in reversed(maps):
            flow = 0.5 * m.received(flow).mean(0) + 0.5 * flow
        return flow
    raise ValueError(f"unknown reduction '{reduce}'; allowed: {', '.join(REDUCTIONS)}")
