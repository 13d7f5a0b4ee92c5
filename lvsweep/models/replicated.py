"""R independent models trained as one: parameters stacked along a leading replicate dimension.

`torch.func.stack_module_state` stacks the replicates' parameters and buffers, `vmap` over
`functional_call` runs the shared architecture once for all of them, and one Adam steps the
stacked tensors. Replicates never mix: the loss is the sum of their losses, so each stacked slice
gets the gradient, and (Adam being elementwise) the update, it would get on its own.
"""
from __future__ import annotations

import copy
from functools import partial
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lvsweep.models.base import AttentionModel


class _Method(nn.Module):
    """Calls one method of the wrapped model, so `functional_call` can reach more than forward."""

    def __init__(self, model: AttentionModel, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(noisy)


class ReplicatedModel(AttentionModel):
    """Takes and returns tensors with a leading replicate axis: noisy [R, T, d] → x̂ [R, T, d],
    attention [R, T], head attention [R, H, T]. Per-replicate randomness (dropout) differs."""

    def __init__(self, models: Sequence[AttentionModel]) -> None:
        first = models[0]
        super().__init__(lr=first.lr, epochs=first.epochs, log_every=first.log_every)
        self.replicates = len(models)
        params, buffers = stack_module_state(list(models))
        # Parameter names may not contain dots; the mapping back is kept beside them.
        self.names = {name: name.replace(".", "__") for name in [*params, *buffers]}
        self.stacked = nn.ParameterDict({self.names[k]: nn.Parameter(v.detach()) for k, v in params.items()})
        for k, v in buffers.items():
            self.register_buffer(self.names[k], v)
        self.buffer_names = list(buffers)
        # The template holds no state of its own (meta tensors); it must not be a registered
        # submodule, or its parameters would join the optimiser.
        template = copy.deepcopy(first).to("meta")
        self.calls = {m: _Method(template, m) for m in ("forward", "attention", "head_attention")
                      if hasattr(template, m)}
        object.__setattr__(self, "template", template)
        if "head_attention" in self.calls:  # only where the replicated model has heads
            self.head_attention = partial(self._call, "head_attention")

    def state(self) -> dict[str, torch.Tensor]:
        out = {f"model.{k}": self.stacked[v] for k, v in self.names.items() if v in self.stacked}
        out.update({f"model.{k}": getattr(self, self.names[k]) for k in self.buffer_names})
        return out

    def _call(self, method: str, noisy: torch.Tensor) -> torch.Tensor:
        self.template.train(self.training)
        call = self.calls[method]
        return vmap(lambda state, x: functional_call(call, state, (x,)), randomness="different")(self.state(), noisy)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return self._call("forward", noisy)

    def attention(self, noisy: torch.Tensor) -> torch.Tensor:
        return self._call("attention", noisy)

