"""Checks the server runs on every client reply before aggregating it.

A reply is rejected, and left out of the aggregate, when its state does not
have exactly the global state's keys, shapes and dtypes, when a value is NaN
or infinite, when its example count is not positive, or when the L2 norm of
its update (trained state minus global state, over all tensors together)
exceeds ``max_update_norm``. The states in ``extra_states`` (SCAFFOLD's
control variate change) must also match the global state's keys, shapes and
dtypes and be finite; the norm bound applies to the model update only.
"""

from __future__ import annotations

import math

import torch

from fedunlearn.federated.aggregation.base import ClientUpdate


def update_norm(state: dict[str, torch.Tensor], global_state: dict[str, torch.Tensor]) -> float:
    """Return ``||state − global_state||_2`` over all tensors, computed in float64."""
    total = sum(float(((state[k].double() - global_state[k].double()) ** 2).sum()) for k in global_state)
    return math.sqrt(total)


def check_update(update: ClientUpdate, global_state: dict[str, torch.Tensor], max_update_norm: float | None = None) -> str | None:
    """Return why ``update`` must be rejected, or None when it may be aggregated."""
    if not update.num_examples > 0:
        return f"num_examples must be > 0, got {update.num_examples}"
    problem = check_state(update.state, global_state)
    if problem:
        return problem
    for name, extra in update.extra_states.items():
        problem = check_state(extra, global_state)
        if problem:
            return f"{name}: {problem}"
    if max_update_norm is not None:
        norm = update_norm(update.state, global_state)
        if norm > max_update_norm:
            return f"update norm {norm:.4g} exceeds max_update_norm={max_update_norm:g}"
    return None


def check_state(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> str | None:
    """Return the first way ``state`` differs from ``reference`` in keys, shapes or dtypes, or is not finite."""
    if state.keys() != reference.keys():
        missing = sorted(reference.keys() - state.keys())
        unexpected = sorted(state.keys() - reference.keys())
        return f"keys differ from the global state: missing {missing[:3]}, unexpected {unexpected[:3]}"
    for name, expected in reference.items():
        value = state[name]
        if not isinstance(value, torch.Tensor):
            return f"{name} is a {type(value).__name__}, not a tensor"
        if value.shape != expected.shape:
            return f"{name} has shape {tuple(value.shape)}, expected {tuple(expected.shape)}"
        if value.dtype != expected.dtype:
            return f"{name} has dtype {value.dtype}, expected {expected.dtype}"
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            return f"{name} has {bad} NaN or infinite values"
    return None
