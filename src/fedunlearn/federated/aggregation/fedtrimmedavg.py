"""FedTrimmedAvg (Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates"): the coordinate-wise trimmed mean of the client states.

For each coordinate the server drops the ``int(beta * K)`` largest and as many
smallest of the K client values and averages the rest, unweighted, as Flower
1.42's FedTrimmedAvg and ``scipy.stats.trim_mean`` do. With
``int(beta * K) = 0`` nothing is dropped and it is the uniform mean.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from scipy.stats import trim_mean

from fedunlearn.federated.aggregation.base import Aggregator, ClientUpdate
from fedunlearn.federated.aggregation.fedmedian import coordinate_wise
from fedunlearn.federated.aggregation.fedopt import as_float

log = logging.getLogger(__name__)


class FedTrimmedAvg(Aggregator):
    """Coordinate-wise trimmed mean.

    Args:
        beta: fraction trimmed at each end, in [0, 0.5) (default 0.2, Flower's default).
    """

    def __init__(self, beta: float = 0.2):
        self.beta = as_float("beta", beta)
        if not 0 <= self.beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {beta}")

    def aggregate_train(
        self, server_round: int, global_state: OrderedDict[str, torch.Tensor], updates: list[ClientUpdate]
    ) -> OrderedDict[str, torch.Tensor]:
        trimmed = int(self.beta * len(updates))
        if trimmed == 0:
            log.warning("round %d: FedTrimmedAvg with beta=%g trims none of %d updates: this is their uniform mean",
                        server_round, self.beta, len(updates))
        return coordinate_wise(updates, lambda stacked: trim_mean(stacked, self.beta, axis=0))
