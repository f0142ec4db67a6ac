"""The server's round loop: select clients, send the global state, aggregate, record.

The loop is the same whatever the runtime: ``runtime.train`` trains the
selected clients (in this process, or on Flower SuperNodes) and returns their
replies; the aggregator turns them into the next global state; the history
stores the round and moves the resume checkpoint to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from typing import Any

import torch
from tqdm.auto import tqdm

from fedunlearn.federated.aggregation import Aggregator
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime import Runtime
from fedunlearn.federated.state import state_delta

log = logging.getLogger(__name__)


class ResumeError(RuntimeError):
    """A checkpoint exists that this run cannot or may not continue from."""


def run_fingerprint(config: Any) -> str:
    """Return a short hash that identifies a run's settings, to refuse resuming a different run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FederatedServer:
    """Runs ``num_rounds`` rounds of federated training.

    Args:
        runtime: trains the selected clients of a round (see ``fedunlearn.federated.runtime``).
        aggregator: the aggregation algorithm (``configure_train`` / ``aggregate_train``).
        history: where rounds are recorded and checkpointed.
        num_rounds: rounds to run in total, counting rounds a resumed run already completed.
        fingerprint: identifies the run's settings; a checkpoint with another one is not resumed.
        desc: the progress bar's label.
    """

    def __init__(self, runtime: Runtime, aggregator: Aggregator, history: History, *,
                 num_rounds: int, fingerprint: str, desc: str = "round"):
        if num_rounds < 1:
            raise ValueError(f"the number of rounds must be >= 1, got {num_rounds}")
        self.runtime = runtime
        self.aggregator = aggregator
        self.history = history
        self.num_rounds = num_rounds
        self.fingerprint = fingerprint
        self.desc = desc

    def run(self, initial_state: dict[str, torch.Tensor], resume: bool = False) -> OrderedDict[str, torch.Tensor]:
        """Run the remaining rounds from ``initial_state`` (or the checkpoint) and return the final global state."""
        first_round, global_state = self._restore(resume)
        if first_round == 1:
            global_state = OrderedDict(initial_state)
            self.history.save_round(0, global_state, {}, {"participants": []}, self.fingerprint, {})

        rounds = tqdm(range(first_round, self.num_rounds + 1), desc=self.desc, initial=first_round - 1,
                      total=self.num_rounds, unit="round")
        for server_round in rounds:
            global_state = self._run_round(server_round, global_state)
        size = self.history.size_report()
        log.info("History: %.1f MB for %d rounds in %s", size["total_bytes"] / 1e6, len(size["rounds"]) - 1,
                 self.history.rounds_dir)
        return global_state

    def _restore(self, resume: bool) -> tuple[int, OrderedDict[str, torch.Tensor] | None]:
        checkpoint = self.history.load_checkpoint()
        if checkpoint is None:
            return 1, None
        done = checkpoint["completed_rounds"]
        if not resume:
            raise ResumeError(
                f"{self.history.root} already holds {done} completed round(s) of a run: "
                "pass resume=true to continue it, or delete that folder to start over"
            )
        if checkpoint["fingerprint"] != self.fingerprint:
            raise ResumeError(
                f"the checkpoint in {self.history.root} was made with other settings: "
                "resume with the same config, or delete that folder to start over"
            )
        self.aggregator.load_state_dict(self.history.load_aggregator_state(done))
        log.info("Resuming from round %d of %d (%s)", done, self.num_rounds, self.history.root)
        return done + 1, OrderedDict(self.history.load_global(done))

    def select_clients(self, server_round: int) -> list[int]:
        """Return the clients that take part in ``server_round`` (all of them)."""
        return self.runtime.client_ids()

    def _run_round(self, server_round: int, global_state) -> OrderedDict[str, torch.Tensor]:
        config = self.aggregator.configure_train(server_round)
        selected = self.select_clients(server_round)
        updates = self.runtime.train(server_round, global_state, selected, config)
        if not updates:
            raise RuntimeError(f"round {server_round}: none of the clients {selected} replied")

        new_state = self.aggregator.aggregate_train(server_round, global_state, updates)
        record = {
            "participants": [u.client_id for u in updates],
            "selected": selected,
            "num_examples": {str(u.client_id): u.num_examples for u in updates},
            "roles": {str(u.client_id): u.role for u in updates},
            "metrics": {str(u.client_id): u.metrics for u in updates},
        }
        self.history.save_round(
            server_round, new_state, {u.client_id: state_delta(u.state, global_state) for u in updates},
            record, self.fingerprint, self.aggregator.state_dict(),
        )
        return new_state
