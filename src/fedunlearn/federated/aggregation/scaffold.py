"""SCAFFOLD (Karimireddy et al., 2020, "SCAFFOLD: Stochastic Controlled Averaging for
Federated Learning"): control variates correct each client's drift from the global direction.

The server keeps a control variate c and each client i its own c_i (both
start at zero). ``configure_train`` sends c as the config entry
``scaffold_control``; the client keeps c_i in the ``client_state`` that its
runtime persists, and after each local optimizer step k it moves its weights
by ``−η_k (c − c_i)`` (see ``fedunlearn.federated.client.train_locally``). Its
reply carries Δc_i = c_i⁺ − c_i as ``extra_states["control_delta"]``, where
c_i⁺ is the paper's option II estimate (``update_client_control``). The server
then updates::

    x ← x + η_g Σ_k n_k (y_k − x) / Σ_k n_k      (example-weighted, as FedAvg here and OpenFedLLM)
    c ← c + (1/N) Σ_{i∈S} Δc_i                    (N: every client of the federation, as in the paper)

so c stays the mean of all clients' c_i. The paper averages the y_k uniformly;
the weighting here makes SCAFFOLD with zero control variates and η_g = 1 equal
FedAvg.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from fedunlearn.federated.aggregation.base import Aggregator, ClientUpdate, weighted_mean
from fedunlearn.federated.aggregation.fedopt import check_positive
from fedunlearn.federated.state import state_delta

CONTROL_KEY = "scaffold_control"  # the config entry holding the server control variate c
CONTROL_DELTA_KEY = "control_delta"  # the reply's extra state holding Δc_i


class SCAFFOLD(Aggregator):
    """Server side of SCAFFOLD.

    Args:
        server_learning_rate: η_g (default 1.0).
    """

    def __init__(self, server_learning_rate: float = 1.0):
        self.server_learning_rate = check_positive("server_learning_rate", server_learning_rate)
        self.num_clients: int | None = None
        self.control: OrderedDict[str, torch.Tensor] = OrderedDict()

    def setup(self, client_ids: list[int]) -> None:
        self.num_clients = len(client_ids)

    def configure_train(self, server_round: int) -> dict:
        # An empty state stands for c = 0 before the first aggregation, when its keys are not known yet.
        return {CONTROL_KEY: OrderedDict(self.control)}

    def aggregate_train(
        self, server_round: int, global_state: OrderedDict[str, torch.Tensor], updates: list[ClientUpdate]
    ) -> OrderedDict[str, torch.Tensor]:
        if self.num_clients is None:
            raise RuntimeError("SCAFFOLD needs the number of clients: call setup(client_ids) before aggregating")
        without = [u.client_id for u in updates if CONTROL_DELTA_KEY not in u.extra_states]
        if without:
            raise ValueError(
                f"SCAFFOLD: the replies of clients {without} carry no {CONTROL_DELTA_KEY!r}: "
                "the clients must train with run_client_round and a persisted client_state"
            )

        delta = state_delta(weighted_mean([u.state for u in updates], [u.num_examples for u in updates]), global_state)
        if not self.control:
            self.control = OrderedDict((name, torch.zeros_like(d)) for name, d in delta.items())
        for name in self.control:
            total = sum(u.extra_states[CONTROL_DELTA_KEY][name] for u in updates)
            self.control[name] = self.control[name] + total / self.num_clients
        return OrderedDict((name, global_state[name] + self.server_learning_rate * d) for name, d in delta.items())

    def state_dict(self) -> dict:
        return {"control": OrderedDict(self.control)} if self.control else {}

    def load_state_dict(self, state: dict) -> None:
        self.control = OrderedDict(state["control"]) if state else OrderedDict()


def client_correction(
    config: Mapping[str, Any], client_state: dict | None, global_state: Mapping[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor] | None:
    """Return the client's correction c − c_i for a SCAFFOLD round, or None when the round is not SCAFFOLD.

    c comes from the config entry ``scaffold_control`` and c_i from
    ``client_state`` (both zero until set).
    """
    if CONTROL_KEY not in config:
        return None
    if client_state is None:
        raise ValueError("SCAFFOLD needs a client_state that the runtime keeps for each client across rounds")
    control = config[CONTROL_KEY] or _zeros(global_state)
    client_control = client_state.get(CONTROL_KEY) or _zeros(global_state)
    return OrderedDict((name, control[name] - client_control[name]) for name in global_state)


def update_client_control(
    client_state: dict,
    correction: Mapping[str, torch.Tensor],
    global_state: Mapping[str, torch.Tensor],
    trained_state: Mapping[str, torch.Tensor],
    learning_rate_sum: float,
) -> OrderedDict[str, torch.Tensor]:
    """Store c_i⁺ in ``client_state`` and return Δc_i = c_i⁺ − c_i (the paper's option II).

    Option II is ``c_i⁺ = c_i − c + (x − y_i) / (K η)`` for K local SGD steps of
    learning rate η. ``learning_rate_sum`` is Σ_k η_k over the optimizer steps,
    which is K η for a constant rate and also covers warmup and decay, so
    ``Δc_i = (x − y_i) / Σ_k η_k − (c − c_i)``.
    """
    client_control = client_state.get(CONTROL_KEY) or _zeros(global_state)
    delta = OrderedDict(
        (name, (global_state[name] - trained_state[name]) / learning_rate_sum - correction[name]) for name in global_state
    )
    client_state[CONTROL_KEY] = OrderedDict((name, client_control[name] + delta[name]) for name in global_state)
    return delta


def _zeros(reference: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((name, torch.zeros_like(value)) for name, value in reference.items())
