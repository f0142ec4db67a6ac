"""``runtime=inprocess``: every client trains in this process, one after another, on one model.

All clients share the frozen base model. Before a client trains, its round
loads the global state into the trainable parameters, so only the adapter
(and, while a client trains, its optimizer) exists per client. Each client's
``client_state`` (SCAFFOLD's control variate) lives in this runtime; the server
checkpoints it with ``state_dict`` so a resumed run continues with it.
"""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

from fedunlearn.federated.aggregation.base import ClientUpdate
from fedunlearn.federated.client import Client, count_batches, run_client_round

log = logging.getLogger(__name__)


class InProcessRuntime:
    """Trains ``clients`` on ``model`` in this process.

    Args:
        model: the shared model; its trainable parameters carry the global state.
        clients: every client of the federation.
        seed: base seed of the federation (see ``run_client_round``).
        pad_token_id: padding id for batches.
    """

    def __init__(self, model: torch.nn.Module, clients: list[Client], *, seed: int, pad_token_id: int):
        self.model = model
        self.clients = {c.client_id: c for c in clients}
        self.seed = seed
        self.pad_token_id = pad_token_id
        self.client_states: dict[int, dict] = {c.client_id: {} for c in clients}

    def client_ids(self) -> list[int]:
        return sorted(self.clients)

    def train(self, server_round: int, global_state: dict, client_ids: list[int], config: dict) -> list[ClientUpdate]:
        selected = [self.clients[k] for k in client_ids]
        total = sum(count_batches(len(c.streams[c.anchor]), c.args) for c in selected)
        updates = []
        with tqdm(total=total, desc=f"round {server_round} clients", unit="batch", leave=False) as bar:
            for client in selected:
                bar.set_postfix(client=client.client_id, role=client.role)
                update = run_client_round(self.model, client, global_state, config, server_round=server_round,
                                          seed=self.seed, pad_token_id=self.pad_token_id, progress=bar,
                                          client_state=self.client_states[client.client_id])
                log.info("round %d client %d (%s): %d examples, loss %.4f over %d batches", server_round,
                         client.client_id, client.role, client.num_examples, update.metrics["loss"],
                         update.metrics["steps"])
                updates.append(update)
        return updates

    def state_dict(self) -> dict[int, dict]:
        """Return every client's persistent state, for the server's checkpoint."""
        return {client_id: dict(state) for client_id, state in self.client_states.items()}

    def load_state_dict(self, states: dict[int, dict]) -> None:
        """Restore what ``state_dict`` returned; clients it does not name start empty."""
        self.client_states = {client_id: dict(states.get(client_id, {})) for client_id in self.clients}
