"""The aggregation interface between the server's round loop and an algorithm.

Like Flower's strategies, an algorithm overrides two steps: ``configure_train``
(what the server sends with the global state to each client, e.g. the FedProx
``proximal_mu``) and ``aggregate_train`` (the new global state from the
clients' replies). Server optimizers such as FedAdam keep their state in
``state_dict`` so a resumed run continues exactly.

A config value is a number, a string, or a state (a ``{name: tensor}`` dict
such as SCAFFOLD's server control variate); a reply may carry states beyond
the trained one in ``ClientUpdate.extra_states``. A runtime that sends rounds
over a network carries each such state as an array record.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch


@dataclass
class ClientUpdate:
    """One client's reply in a round: its locally trained state and example count.

    ``extra_states`` holds the other states the algorithm asks for, keyed by
    name, each with the keys and shapes of ``state`` (SCAFFOLD: ``control_delta``).
    """

    client_id: int
    state: OrderedDict[str, torch.Tensor]
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    role: str = "train"
    extra_states: dict[str, OrderedDict[str, torch.Tensor]] = field(default_factory=dict)


class Aggregator:
    """Base class: the example-weighted mean of the client states (FedAvg)."""

    def setup(self, client_ids: list[int]) -> None:
        """Receive every client of the federation before the first round (SCAFFOLD counts them)."""

    def configure_train(self, server_round: int) -> dict:
        """Return the settings sent to every client this round."""
        return {}

    def aggregate_train(
        self, server_round: int, global_state: OrderedDict[str, torch.Tensor], updates: list[ClientUpdate]
    ) -> OrderedDict[str, torch.Tensor]:
        """Return the new global state."""
        return weighted_mean([u.state for u in updates], [u.num_examples for u in updates])

    def state_dict(self) -> dict:
        """Return the server-side optimizer state to checkpoint (none for FedAvg)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


def weighted_mean(states: list[dict[str, torch.Tensor]], weights: list[float]) -> OrderedDict[str, torch.Tensor]:
    """Return ``sum_k w_k * state_k / sum_k w_k``, key by key.

    Raises ``ValueError`` for an empty list or a non-positive total weight.
    """
    if not states:
        raise ValueError("cannot aggregate zero client updates")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"client weights must sum to a positive number, got {weights}")
    result = OrderedDict()
    for name in states[0]:
        result[name] = sum(state[name] * (weight / total) for state, weight in zip(states, weights))
    return result
