"""FedAdagrad (Reddi et al., 2021, "Adaptive Federated Optimization", Algorithm 2).

The server applies Adagrad to the clients' mean update Δ_t (see ``fedopt.py``),
without momentum (β1 = 0, as in Flower 1.42's FedAdagrad and OpenFedLLM)::

    v_t = v_{t−1} + Δ_t²
    x_{t+1} = x_t + η Δ_t / (√v_t + τ)

No bias correction. The step shrinks as v_t accumulates, so later rounds move
the global state less.
"""

from __future__ import annotations

import torch

from fedunlearn.federated.aggregation.fedopt import FedOpt


class FedAdagrad(FedOpt):
    """Adagrad on the server.

    Args:
        eta: server learning rate η (default 3e-3, below FedAdam's 1e-2 because the
            first step is not damped by momentum; Flower's default is 0.1).
        tau: adaptivity τ (default 1e-3).
    """

    def __init__(self, eta: float = 3e-3, tau: float = 1e-3):
        super().__init__(eta, beta_1=0.0, beta_2=0.0, tau=tau)

    def second_moment(self, v: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return v + delta**2
