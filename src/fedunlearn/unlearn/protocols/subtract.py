"""``protocol=subtract``: remove the requesting client's stored updates from the global model, then recover.

Under FedAvg the global state after round ``t`` is
``w_t = w_{t-1} + sum_k (n_k^t / n^t) U_k^t``, where ``U_k^t`` is client
``k``'s update (its trained state minus ``w_{t-1}``), ``n_k^t`` its records and
``n^t`` the records of all participants of round ``t``. The server subtracts
the requesting client's weighted terms from every stored round::

    w' = w_T - sum_t (n_target^t / n^t) U_target^t

then runs ``recovery_rounds`` rounds of fine-tuning on the remaining records
(``retain_epochs`` local epochs each, the unlearning run's aggregation) to
repair the utility the subtraction costs.

This removes the client's direct contribution only: its updates also moved
the global states from which the other clients trained in later rounds, and
that influence stays, which is why the result is approximate. A
sample-level request subtracts all of the client's updates (they cannot be
split by record), and its retained records come back in the recovery rounds.
With server optimisers (FedAdam, FedAvgM, ...) ``w_t`` is not the weighted
mean, and the subtraction removes the client's share of the mean update only.

Server work: one pass over the stored updates of the requesting client; no
client trains before the recovery rounds.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch

from fedunlearn.federated.history import History
from fedunlearn.trainers.finetune import finetune_clients
from fedunlearn.unlearn.protocols.base import Protocol, UnlearningJob


def subtract_client(history: History, client_id: int, num_rounds: int) -> OrderedDict[str, torch.Tensor]:
    """Return ``w_T - sum_t (n_k^t / n^t) U_k^t`` over the rounds ``t <= num_rounds`` that client ``k`` joined."""
    state = OrderedDict(history.load_global(num_rounds))
    for server_round, weight in client_weights(history, client_id, num_rounds).items():
        update = history.load_update(server_round, client_id)
        for name in state:
            state[name] -= weight * update[name]
    return state


def client_weights(history: History, client_id: int, num_rounds: int) -> dict[int, float]:
    """Return ``{round: n_k^t / n^t}`` for the stored rounds ``1..num_rounds`` in which client ``k`` took part."""
    weights = {}
    for record in history.records()[1 : num_rounds + 1]:
        examples = {int(k): n for k, n in record["num_examples"].items()}
        if client_id in examples:
            weights[record["round"]] = examples[client_id] / sum(examples.values())
    return weights


class Subtract(Protocol):
    name = "subtract"

    def run(self, job: UnlearningJob):
        history = job.require_source(self.name).require_history(self.name)
        num_rounds = job.source.completed_rounds()
        rounds = int(job.method_args.get("recovery_rounds", 1))
        if rounds < 0:
            raise ValueError(f"trainer.method_args.recovery_rounds must be >= 0, got {rounds}")
        weights = client_weights(history, job.request.target, num_rounds)

        def subtracted():
            state = subtract_client(history, job.request.target, num_rounds)
            job.meter.add("subtraction", "server", history_states_read=1 + len(weights))
            return state

        args = dataclasses.replace(job.args, num_train_epochs=float(job.method_args.get("retain_epochs", 1)))
        clients = finetune_clients(job.remaining_data(), job.examples, args)
        state = job.fit(clients, rounds, subtracted, phase="recovery")
        return state, {"subtracted_weights": weights, "recovery_rounds": rounds}
