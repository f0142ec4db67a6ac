"""The server's round loop: broadcast, local training, aggregation, history.

All clients of one process share one model: before a client trains, the
server loads the global state into the model's trainable parameters, so only
the adapter (and, while a client trains, its optimizer) exists per client.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from fedunlearn.federated.aggregation import Aggregator, ClientUpdate
from fedunlearn.federated.client import TrainingArgs, count_batches, train_locally
from fedunlearn.federated.history import History
from fedunlearn.federated.state import get_trainable_state, load_trainable_state, state_delta

log = logging.getLogger(__name__)


@dataclass
class Client:
    """A federated client: its data streams, its objective and its aggregation weight.

    ``streams`` maps a stream name (``train``, or ``forget`` and ``retain``) to
    tokenised examples; ``anchor`` is the stream whose passes count as epochs.
    """

    client_id: int
    streams: dict[str, list[dict]]
    anchor: str
    objective: Any
    args: TrainingArgs
    num_examples: int
    role: str = "train"


class ResumeError(RuntimeError):
    """A checkpoint exists that this run cannot or may not continue from."""


def run_fingerprint(config: Any) -> str:
    """Return a short hash that identifies a run's settings, to refuse resuming a different run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FederatedServer:
    """Runs ``num_rounds`` rounds of federated training over ``clients``.

    Args:
        model: the shared model; its trainable parameters are the global state.
        clients: every client of the federation.
        aggregator: the aggregation algorithm (``configure_train`` / ``aggregate_train``).
        history: where rounds are recorded and checkpointed.
        num_rounds: rounds to run in total, counting rounds a resumed run already completed.
        seed: base seed; client ``k`` in round ``r`` trains with ``seed + 1000 * r + k``.
        fingerprint: identifies the run's settings; a checkpoint with another one is not resumed.
        pad_token_id: padding id for batches.
    """

    def __init__(self, model, clients: list[Client], aggregator: Aggregator, history: History, *,
                 num_rounds: int, seed: int, fingerprint: str, pad_token_id: int, desc: str = "round"):
        if num_rounds < 1:
            raise ValueError(f"the number of rounds must be >= 1, got {num_rounds}")
        self.model = model
        self.clients = clients
        self.aggregator = aggregator
        self.history = history
        self.num_rounds = num_rounds
        self.seed = seed
        self.fingerprint = fingerprint
        self.pad_token_id = pad_token_id
        self.desc = desc

    def run(self, resume: bool = False) -> OrderedDict[str, torch.Tensor]:
        """Run the remaining rounds and return the final global state, which the model also holds."""
        first_round = self._restore(resume)
        global_state = get_trainable_state(self.model)
        if first_round == 1:
            self.history.save_round(0, global_state, {}, {"participants": []}, self.fingerprint, {})

        rounds = tqdm(range(first_round, self.num_rounds + 1), desc=self.desc, initial=first_round - 1,
                      total=self.num_rounds, unit="round")
        for server_round in rounds:
            global_state = self._run_round(server_round, global_state)
        load_trainable_state(self.model, global_state)
        size = self.history.size_report()
        log.info("History: %.1f MB for %d rounds in %s", size["total_bytes"] / 1e6, len(size["rounds"]) - 1,
                 self.history.rounds_dir)
        return global_state

    def _restore(self, resume: bool) -> int:
        checkpoint = self.history.load_checkpoint()
        if checkpoint is None:
            return 1
        if not resume:
            raise ResumeError(
                f"{self.history.root} holds a run stopped after round {checkpoint['completed_rounds']}: "
                "pass resume=true to continue it, or delete that folder to start over"
            )
        if checkpoint["fingerprint"] != self.fingerprint:
            raise ResumeError(
                f"the checkpoint in {self.history.root} was made with other settings: "
                "resume with the same config, or delete that folder to start over"
            )
        done = checkpoint["completed_rounds"]
        load_trainable_state(self.model, self.history.load_global(done))
        self.aggregator.load_state_dict(self.history.load_aggregator_state(done))
        log.info("Resuming from round %d of %d (%s)", done, self.num_rounds, self.history.root)
        return done + 1

    def _run_round(self, server_round: int, global_state) -> OrderedDict[str, torch.Tensor]:
        config = self.aggregator.configure_train(server_round)
        updates: list[ClientUpdate] = []
        total_batches = sum(count_batches(len(c.streams[c.anchor]), c.args) for c in self.clients)
        with tqdm(total=total_batches, desc=f"round {server_round} clients", unit="batch", leave=False) as bar:
            for client in self.clients:
                bar.set_postfix(client=client.client_id, role=client.role)
                load_trainable_state(self.model, global_state)
                metrics = train_locally(
                    self.model, client.streams, client.anchor, client.objective, client.args,
                    seed=self.seed + 1000 * server_round + client.client_id,
                    pad_token_id=self.pad_token_id, proximal_mu=config.get("proximal_mu", 0.0), progress=bar,
                )
                updates.append(ClientUpdate(client.client_id, get_trainable_state(self.model), client.num_examples, metrics))
                log.info("round %d client %d (%s): %d examples, loss %.4f over %d batches", server_round,
                         client.client_id, client.role, client.num_examples, metrics["loss"], metrics["steps"])

        new_state = self.aggregator.aggregate_train(server_round, global_state, updates)
        record = {
            "participants": [u.client_id for u in updates],
            "num_examples": {str(u.client_id): u.num_examples for u in updates},
            "roles": {str(c.client_id): c.role for c in self.clients},
            "metrics": {str(u.client_id): u.metrics for u in updates},
        }
        self.history.save_round(
            server_round, new_state, {u.client_id: state_delta(u.state, global_state) for u in updates},
            record, self.fingerprint, self.aggregator.state_dict(),
        )
        return new_state
