"""FedAvgM (Hsu et al., 2019, "Measuring the Effects of Non-Identical Data Distribution
for Federated Visual Classification"): FedAvg with server momentum.

The server treats the clients' mean update as a pseudo-gradient and takes an
SGD step with heavy-ball momentum, as Flower 1.42's FedAvgM does::

    Δ_t = Σ_k n_k x_k / Σ_k n_k − x_t        (example-weighted, as FedAvg)
    v_t = β v_{t−1} + Δ_t                    (v_0 = 0)
    x_{t+1} = x_t + η v_t

With β = 0 and η = 1 this is FedAvg. Updates that keep their direction are
amplified towards η / (1 − β) times FedAvg's step, which Hsu et al. call the
effective learning rate.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from fedunlearn.federated.aggregation.base import Aggregator, ClientUpdate, weighted_mean
from fedunlearn.federated.aggregation.fedopt import check_decay, check_positive
from fedunlearn.federated.state import state_delta


class FedAvgM(Aggregator):
    """Server momentum on the FedAvg update.

    Args:
        server_learning_rate: η (default 1.0), so that round 1 equals FedAvg.
        server_momentum: β in [0, 1) (default 0.5, an effective learning rate of 2;
            Flower's default 0.0 makes FedAvgM equal FedAvg).
    """

    def __init__(self, server_learning_rate: float = 1.0, server_momentum: float = 0.5):
        self.server_learning_rate = check_positive("server_learning_rate", server_learning_rate)
        self.server_momentum = check_decay("server_momentum", server_momentum)
        self.momentum: OrderedDict[str, torch.Tensor] | None = None

    def aggregate_train(
        self, server_round: int, global_state: OrderedDict[str, torch.Tensor], updates: list[ClientUpdate]
    ) -> OrderedDict[str, torch.Tensor]:
        delta = state_delta(weighted_mean([u.state for u in updates], [u.num_examples for u in updates]), global_state)
        if self.momentum is None:
            self.momentum = OrderedDict((name, torch.zeros_like(d)) for name, d in delta.items())
        new_state = OrderedDict()
        for name, d in delta.items():
            self.momentum[name] = self.server_momentum * self.momentum[name] + d
            new_state[name] = global_state[name] + self.server_learning_rate * self.momentum[name]
        return new_state

    def state_dict(self) -> dict:
        return {"momentum": OrderedDict(self.momentum)} if self.momentum is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.momentum = OrderedDict(state["momentum"]) if state else None
