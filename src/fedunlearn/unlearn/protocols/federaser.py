"""``protocol=federaser``: calibrated retraining from the stored history (FedEraser).

Liu et al., 2021, "FedEraser: Enabling Efficient Client-Level Data Removal
from Federated Learning Models" (IWQoS). The server keeps every client's
update ``U_k^t`` of the original federation. To forget, it rebuilds the
global model round by round from the initial state ``w~_0 = w_0``, using
every ``calibration_interval``-th stored round ``t_1 = 1, t_2, ...``:

1. each remaining client ``k`` that took part in stored round ``t_j`` trains
   from the rebuilt global state ``w~_{j-1}`` for ``calibration_ratio`` times
   the fine-tuning's local epochs (or ``max_steps``), giving the calibration
   update ``U^_k = w_k - w~_{j-1}``;
2. the server keeps the stored update's length and takes the calibration
   update's direction, tensor by tensor (each layer's weight matrix, as the
   paper does per layer)::

       U~_k[p] = ||U_k^{t_j}[p]|| * U^_k[p] / ||U^_k[p]||

3. and aggregates ``w~_j = w~_{j-1} + sum_k n_k U~_k / sum_k n_k``, with
   ``n_k`` the client's remaining records.

As in the paper, the first stored round needs no calibration for a
client-level request: the remaining clients' stored round-1 updates were
computed from ``w_0`` without the forgotten client, so they are reused as
they are. A sample-level request calibrates every round, round 1 included,
because the requesting client's stored updates all include the forgotten records.

This module calibrates each client's update before aggregating, as the paper's
equations do (the authors' code calibrates the aggregated update instead).
The aggregation is a weighted mean (FedEraser is defined for FedAvg);
``configure_train`` settings of the original strategy, such as FedProx's
``proximal_mu``, still go to the calibrating clients.

Cost: the calibration rounds' local training (``calibration_ratio`` of a
fine-tuning's local epochs per stored round, on the remaining clients) plus
reading every stored update of the remaining clients.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

import torch

from fedunlearn.federated.aggregation import Aggregator, ClientUpdate, weighted_mean
from fedunlearn.federated.client import TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.server import RoundSettings
from fedunlearn.federated.state import state_delta
from fedunlearn.trainers.finetune import finetune_clients
from fedunlearn.unlearn.protocols.base import Protocol, UnlearningJob
from fedunlearn.unlearn.protocols.cost import CostMeter, RuntimeWrapper


def calibrate(stored: dict[str, torch.Tensor], calibration: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Return ``||stored[p]|| * calibration[p] / ||calibration[p]||`` for every tensor ``p`` (0 where the calibration is 0)."""
    result = OrderedDict()
    for name, direction in calibration.items():
        norm = direction.norm()
        result[name] = direction * (stored[name].norm() / norm) if norm > 0 else torch.zeros_like(direction)
    return result


def calibration_args(args: TrainingArgs, ratio: float) -> TrainingArgs:
    """Return the local training settings scaled by ``ratio``: its epochs, or its ``max_steps`` rounded up."""
    if not 0 < ratio:
        raise ValueError(f"trainer.method_args.calibration_ratio must be > 0, got {ratio}")
    if args.max_steps > 0:
        return dataclasses.replace(args, max_steps=math.ceil(ratio * args.max_steps))
    return dataclasses.replace(args, num_train_epochs=ratio * args.num_train_epochs)


class FedEraserCalibration(Aggregator):
    """The server side of one calibration round per stored round: calibrate each update, then average.

    Server round ``r`` replays stored round ``stored_rounds[r - 1]``.

    Args:
        history: the original federation's rounds.
        stored_rounds: the stored round each server round replays.
        original: the original aggregation, whose ``configure_train`` the clients receive.
        meter: counts the stored updates read.
    """

    def __init__(self, history: History, stored_rounds: list[int], original: Aggregator, meter: CostMeter):
        self.history = history
        self.stored_rounds = stored_rounds
        self.original = original
        self.meter = meter

    def setup(self, client_ids: list[int]) -> None:
        self.original.setup(client_ids)

    def configure_train(self, server_round: int) -> dict:
        return self.original.configure_train(self.stored_rounds[server_round - 1])

    def aggregate_train(self, server_round: int, global_state, updates: list[ClientUpdate]):
        stored_round = self.stored_rounds[server_round - 1]
        calibrated = [
            calibrate(self.history.load_update(stored_round, u.client_id), state_delta(u.state, global_state))
            for u in updates
        ]
        self.meter.add("calibration", f"read_{server_round}", history_states_read=len(updates))
        step = weighted_mean(calibrated, [u.num_examples for u in updates])
        return OrderedDict((name, global_state[name] + step[name]) for name in global_state)


class StoredParticipantsRuntime(RuntimeWrapper):
    """Trains, of the clients the server selects, only those that took part in the replayed stored round."""

    def __init__(self, runtime, participants: list[set[int]]):
        super().__init__(runtime)
        self.participants = participants

    def train(self, server_round: int, global_state: dict, client_ids: list[int], config: dict):
        selected = [k for k in client_ids if k in self.participants[server_round - 1]]
        return self.runtime.train(server_round, global_state, selected, config)


class FedEraser(Protocol):
    name = "federaser"

    def run(self, job: UnlearningJob):
        source = job.require_source(self.name)
        history = source.require_history(self.name)
        interval = int(job.method_args.get("calibration_interval", 1))
        if interval < 1:
            raise ValueError(f"trainer.method_args.calibration_interval must be >= 1, got {interval}")
        args = calibration_args(source.train_args, float(job.method_args.get("calibration_ratio", 0.5)))
        clients = finetune_clients(job.remaining_data(), job.examples, args)
        remaining = {c.client_id for c in clients}

        stored_rounds = list(range(1, source.completed_rounds() + 1, interval))
        records = {r["round"]: r for r in history.records()}
        participants = {t: {int(k) for k in records[t]["num_examples"]} & remaining for t in stored_rounds}
        if job.request.level == "client":
            # The remaining clients' stored round-1 updates did not depend on the forgotten client: reuse them.
            first = participants.pop(stored_rounds.pop(0))
            initial = lambda: self._reuse_first_round(job, history, first, {c.client_id: c.num_examples for c in clients})
        else:
            initial = lambda: OrderedDict(history.load_global(0))
        # A stored round in which none of the remaining clients took part has nothing to replay.
        stored_rounds = [t for t in stored_rounds if participants[t]]

        aggregator = FedEraserCalibration(history, stored_rounds, source.aggregator(), job.meter)
        state = job.fit(
            clients, len(stored_rounds), initial, phase="calibration", aggregator=aggregator, seed=args.seed,
            settings=RoundSettings(),  # every stored participant trains: no sampling
            wrap_runtime=lambda runtime: StoredParticipantsRuntime(runtime, [participants[t] for t in stored_rounds]),
        )
        return state, {"replayed_rounds": stored_rounds, "calibration_epochs": args.num_train_epochs,
                       "calibration_max_steps": args.max_steps, "reused_first_round": job.request.level == "client"}

    @staticmethod
    def _reuse_first_round(job: UnlearningJob, history: History, participants: set[int], examples: dict[int, int]):
        """Return ``w_0 + sum_k n_k U_k^1 / sum_k n_k`` over the remaining participants of stored round 1."""
        initial = history.load_global(0)
        ids = sorted(participants)
        updates = [history.load_update(1, k) for k in ids]
        job.meter.add("first_round", "server", history_states_read=1 + len(ids), aggregations=1)
        step = weighted_mean(updates, [examples[k] for k in ids])
        return OrderedDict((name, initial[name] + step[name]) for name in initial)
