"""Token-weighted gradient ascent, the forget term shared by WGA and SatImp."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedunlearn.losses import masked_mean, token_nll


def weighted_ascent_loss(model, forget: dict[str, torch.Tensor], weight: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Return ``-mean_t weight(p_t) * NLL_t`` over the answer tokens, the weight computed without gradient."""
    nll, mask = token_nll(model, forget)
    weights = weight(torch.exp(-nll.detach()))
    return -masked_mean(weights * nll, mask)
