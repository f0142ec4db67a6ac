"""FedAdam (Reddi et al., 2021, "Adaptive Federated Optimization", Algorithm 2).

The server applies Adam to the clients' mean update Δ_t (see ``fedopt.py``)::

    v_t = β2 v_{t−1} + (1 − β2) Δ_t²
    η_t = η √(1 − β2^(t+1)) / (1 − β1^(t+1))

η_t is Adam's bias correction (Kingma and Ba, 2015) with the exponent that
Flower 1.42's FedAdam uses: ``server_round + 1`` with rounds counted from 1, so
round 1 corrects as Adam's second step would (η_1 ≈ 0.74 η for the default
betas, against η for Adam's first step). It is kept so that both runtimes and
Flower give the same numbers. The paper's Algorithm 2 has no bias correction.
"""

from __future__ import annotations

import math

import torch

from fedunlearn.federated.aggregation.fedopt import FedOpt


class FedAdam(FedOpt):
    """Adam on the server, with ``FedOpt``'s arguments and defaults."""

    def second_moment(self, v: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return self.beta_2 * v + (1 - self.beta_2) * delta**2

    def step_size(self, server_round: int) -> float:
        t = server_round + 1
        return self.eta * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
