"""The server's round loop: select clients, send the global state, validate, aggregate, record.

The loop is the same whatever the runtime: ``runtime.train`` trains the
selected clients (in this process, or on Flower SuperNodes) and returns their
replies; the server rejects invalid replies (``fedunlearn.federated.validation``);
the aggregator turns the others into the next global state; the history
stores the round and moves the resume checkpoint to it.

Client sampling follows Flower's rules and names (``RoundSettings``): each round
``max(int(fraction_fit * available), min_fit_clients)`` clients are drawn
without replacement, from a generator seeded by the run's seed and the round,
so a resumed run selects the same clients.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fedunlearn.federated.aggregation import Aggregator, ClientUpdate
from fedunlearn.federated.aggregation.fedopt import as_float
from fedunlearn.federated.aggregation.lora import lora_product_gap
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime import Runtime
from fedunlearn.federated.state import state_delta
from fedunlearn.federated.validation import check_update, update_norm

log = logging.getLogger(__name__)


class ResumeError(RuntimeError):
    """A checkpoint exists that this run cannot or may not continue from."""


class RoundFailedError(RuntimeError):
    """A round cannot complete: too few clients are available, replied, or sent a valid update."""


@dataclass(frozen=True)
class RoundSettings:
    """Per-round settings of the server, read from ``trainer.method_args`` (Flower's names).

    Args:
        fraction_fit: fraction of the available clients selected each round, in (0, 1] (default 1.0).
        min_fit_clients: minimum number of clients selected, and of valid replies for a round
            to complete (default 1).
        min_available_clients: minimum number of clients the federation must have (default 1).
        round_lr_decay: each client's learning rate in round t is ``learning_rate * round_lr_decay**(t-1)``,
            sent as ``lr_scale`` with the round's config (default 1.0: constant).
        max_update_norm: reject an update whose L2 norm (trained minus global state) exceeds this
            (default None: no bound).
    """

    fraction_fit: float = 1.0
    min_fit_clients: int = 1
    min_available_clients: int = 1
    round_lr_decay: float = 1.0
    max_update_norm: float | None = None

    def __post_init__(self):
        if not 0 < self.fraction_fit <= 1:
            raise ValueError(f"trainer.method_args.fraction_fit must be in (0, 1], got {self.fraction_fit}")
        for name in ("min_fit_clients", "min_available_clients"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"trainer.method_args.{name} must be an integer >= 1, got {value!r}")
        if not self.round_lr_decay > 0:
            raise ValueError(f"trainer.method_args.round_lr_decay must be > 0, got {self.round_lr_decay}")
        if self.max_update_norm is not None and not self.max_update_norm > 0:
            raise ValueError(f"trainer.method_args.max_update_norm must be > 0 or null, got {self.max_update_norm}")

    @classmethod
    def from_method_args(cls, method_args: Mapping[str, Any]) -> RoundSettings:
        """Read the settings from ``trainer.method_args``; absent keys take their defaults."""
        values = {}
        for field in fields(cls):
            value = method_args.get(field.name)
            if value is None:
                continue
            if field.name in ("min_fit_clients", "min_available_clients"):
                values[field.name] = value
            else:
                values[field.name] = as_float(f"trainer.method_args.{field.name}", value)
        return cls(**values)


SERVER_KEYS = tuple(field.name for field in fields(RoundSettings))


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
        settings: client sampling, learning-rate schedule and update bound (default: every client
            every round, constant learning rate, no bound).
        seed: seeds client sampling together with the round number.
    """

    def __init__(self, runtime: Runtime, aggregator: Aggregator, history: History, *,
                 num_rounds: int, fingerprint: str, desc: str = "round",
                 settings: RoundSettings = RoundSettings(), seed: int = 0):
        if num_rounds < 1:
            raise ValueError(f"the number of rounds must be >= 1, got {num_rounds}")
        self.runtime = runtime
        self.aggregator = aggregator
        self.history = history
        self.num_rounds = num_rounds
        self.fingerprint = fingerprint
        self.desc = desc
        self.settings = settings
        self.seed = seed

    def run(self, initial_state: dict[str, torch.Tensor], resume: bool = False) -> OrderedDict[str, torch.Tensor]:
        """Run the remaining rounds from ``initial_state`` (or the checkpoint) and return the final global state."""
        self.aggregator.setup(self.runtime.client_ids())
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
        server_state = self.history.load_aggregator_state(done)
        self.aggregator.load_state_dict(server_state.get("aggregator", {}))
        if hasattr(self.runtime, "load_state_dict"):
            self.runtime.load_state_dict(server_state.get("client_states", {}))
        log.info("Resuming from round %d of %d (%s)", done, self.num_rounds, self.history.root)
        return done + 1, OrderedDict(self.history.load_global(done))

    def select_clients(self, server_round: int) -> list[int]:
        """Return the clients that take part in ``server_round``, sorted.

        Raises ``RoundFailedError`` when fewer than ``min_available_clients``
        clients, or fewer than ``min_fit_clients``, are available.
        """
        available = sorted(self.runtime.client_ids())
        needed = max(self.settings.min_available_clients, self.settings.min_fit_clients)
        if len(available) < needed:
            raise RoundFailedError(
                f"round {server_round}: {len(available)} clients are available, fewer than "
                f"min_available_clients={self.settings.min_available_clients} or "
                f"min_fit_clients={self.settings.min_fit_clients}: lower them or add clients"
            )
        size = max(int(self.settings.fraction_fit * len(available)), self.settings.min_fit_clients)
        if size == len(available):
            return available
        generator = np.random.default_rng([self.seed, server_round])
        return sorted(int(k) for k in generator.choice(available, size=size, replace=False))

    def configure_round(self, server_round: int) -> dict:
        """Return the config every selected client receives: the aggregator's and the round's ``lr_scale``."""
        config = dict(self.aggregator.configure_train(server_round))
        config["lr_scale"] = self.settings.round_lr_decay ** (server_round - 1)
        return config

    def _screen(self, server_round: int, selected: list[int], updates: list[ClientUpdate], global_state):
        """Split the replies into valid updates and rejections, logging the missing and rejected clients."""
        replied = [u.client_id for u in updates]
        missing = [k for k in selected if k not in replied]
        if missing:
            log.warning("round %d: clients %s did not reply", server_round, missing)
        valid, rejected, seen = [], {}, set()
        for update in updates:
            if update.client_id not in selected:
                reason = "not selected this round"
            elif update.client_id in seen:
                reason = "sent more than one reply"
            else:
                reason = check_update(update, global_state, self.settings.max_update_norm)
            seen.add(update.client_id)
            if reason:
                log.warning("round %d: rejected the update of client %d: %s", server_round, update.client_id, reason)
                rejected[str(update.client_id)] = reason
            else:
                valid.append(update)
        if len(valid) < self.settings.min_fit_clients:
            raise RoundFailedError(
                f"round {server_round}: {len(valid)} valid replies from the {len(selected)} selected clients "
                f"{selected}, fewer than min_fit_clients={self.settings.min_fit_clients} "
                f"(missing: {missing}, rejected: {rejected}); the checkpoint of round {server_round - 1} "
                "is kept: fix the clients and rerun with resume=true"
            )
        return valid, missing, rejected

    def _run_round(self, server_round: int, global_state) -> OrderedDict[str, torch.Tensor]:
        config = self.configure_round(server_round)
        selected = self.select_clients(server_round)
        log.info("round %d: selected clients %s", server_round, selected)
        updates = self.runtime.train(server_round, global_state, selected, config)
        valid, missing, rejected = self._screen(server_round, selected, updates, global_state)

        new_state = self.aggregator.aggregate_train(server_round, global_state, valid)
        record = {
            "participants": [u.client_id for u in valid],
            "selected": selected,
            "missing": missing,
            "rejected": rejected,
            "num_examples": {str(u.client_id): u.num_examples for u in valid},
            "roles": {str(u.client_id): u.role for u in valid},
            "metrics": {str(u.client_id): u.metrics for u in valid},
            "update_norm": {str(u.client_id): update_norm(u.state, global_state) for u in valid},
            "lr_scale": config["lr_scale"],
            "lora_product_gap": lora_product_gap([u.state for u in valid], [u.num_examples for u in valid]),
        }
        self.history.save_round(
            server_round, new_state, {u.client_id: state_delta(u.state, global_state) for u in valid},
            record, self.fingerprint, self._server_state(),
        )
        return new_state

    def _server_state(self) -> dict:
        """Return what a resumed run needs beyond the global state: optimizer state and client states."""
        state = {}
        aggregator_state = self.aggregator.state_dict()
        if aggregator_state:
            state["aggregator"] = aggregator_state
        client_states = self.runtime.state_dict() if hasattr(self.runtime, "state_dict") else {}
        if any(client_states.values()):
            state["client_states"] = client_states
        return state
