"""FedMedian (Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates"): the coordinate-wise median of the client states.

Each coordinate of the new global state is the median of that coordinate over
the clients, unweighted as in Flower 1.42's FedMedian (with an even number of
clients, the mean of the two middle values, as ``numpy.median``). Fewer than
half of the clients sending arbitrary values cannot move it outside the range
of the honest ones. It ignores example counts, so with honest clients of
unequal size it is biased towards the small ones.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from fedunlearn.federated.aggregation.base import Aggregator, ClientUpdate


class FedMedian(Aggregator):
    """Coordinate-wise median aggregation."""

    def aggregate_train(
        self, server_round: int, global_state: OrderedDict[str, torch.Tensor], updates: list[ClientUpdate]
    ) -> OrderedDict[str, torch.Tensor]:
        return coordinate_wise(updates, lambda stacked: np.median(stacked, axis=0))


def coordinate_wise(updates: list[ClientUpdate], statistic) -> OrderedDict[str, torch.Tensor]:
    """Apply ``statistic`` to each key's client values stacked on axis 0, keeping dtypes."""
    if not updates:
        raise ValueError("cannot aggregate zero client updates")
    result = OrderedDict()
    for name, first in updates[0].state.items():
        stacked = np.stack([u.state[name].numpy() for u in updates])
        result[name] = torch.from_numpy(np.asarray(statistic(stacked))).to(first.dtype)
    return result
