"""The trainable state a federation exchanges: the LoRA adapter, or every weight without LoRA.

A state is an ordered ``{parameter name: tensor}`` dict of the parameters that
require gradients, kept in float32 on the CPU whatever the model's device and
dtype, so that aggregation is exact and device-independent.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

State = "OrderedDict[str, torch.Tensor]"


def get_trainable_state(model: torch.nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Copy the model's trainable parameters into a new float32 CPU state."""
    return OrderedDict(
        (name, param.detach().to("cpu", torch.float32, copy=True))
        for name, param in model.named_parameters()
        if param.requires_grad
    )


@torch.no_grad()
def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` into the model's trainable parameters; the keys must match exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if params.keys() != state.keys():
        missing = sorted(params.keys() - state.keys())[:3]
        unexpected = sorted(state.keys() - params.keys())[:3]
        raise KeyError(f"state does not match the model's trainable parameters: missing {missing}, unexpected {unexpected}")
    for name, param in params.items():
        param.copy_(state[name])


def state_delta(new: dict[str, torch.Tensor], old: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Return ``new - old`` key by key (a client's update relative to the global state it started from)."""
    return OrderedDict((name, new[name] - old[name]) for name in old)


def state_nbytes(state: dict[str, torch.Tensor]) -> int:
    """Return the size of a state's tensors in bytes."""
    return sum(t.numel() * t.element_size() for t in state.values())
