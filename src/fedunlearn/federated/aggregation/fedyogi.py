"""FedYogi (Reddi et al., 2021, "Adaptive Federated Optimization", Algorithm 2).

The server applies Yogi (Zaheer et al., 2018) to the clients' mean update Δ_t
(see ``fedopt.py``). Its second moment moves towards Δ_t² additively, by at most
(1 − β2) Δ_t² a round, so it grows more slowly than Adam's after a large update::

    v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)

No bias correction, as in the paper and Flower 1.42's FedYogi.
"""

from __future__ import annotations

import torch

from fedunlearn.federated.aggregation.fedopt import FedOpt


class FedYogi(FedOpt):
    """Yogi on the server, with ``FedOpt``'s arguments and defaults."""

    def second_moment(self, v: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        squared = delta**2
        return v - (1 - self.beta_2) * squared * torch.sign(v - squared)
