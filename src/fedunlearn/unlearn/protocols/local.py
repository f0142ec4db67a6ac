"""``protocol=local``: the requesting client unlearns while the others keep training.

The federation continues from the fine-tuned global model for
``global_rounds`` rounds. In each round

1. the requesting client runs the unlearning method ``unlearn_trainer_cls``
   on its forget records for ``unlearn_epochs`` local epochs (with its retained
   records as the ``retain`` stream when the method needs one);
2. every other client fine-tunes on its records for ``retain_epochs``;
3. the server aggregates all updates with ``aggregation_strategy``, the
   requesting client weighted by all the records it holds.

For a client-level request the forget records are all the client's records.
Nothing is exact here: how much is forgotten depends on the method, its
epochs and learning rate.
"""

from __future__ import annotations

from fedunlearn.trainers.unlearn import unlearning_client
from fedunlearn.unlearn.protocols.base import Protocol, UnlearningJob


class Local(Protocol):
    name = "local"
    uses_method = True

    def run(self, job: UnlearningJob):
        job.prepare_method()
        forget = set(job.request.forget_ids)
        clients = [
            unlearning_client(job.data, job.examples, k, job.request.target, job.method, job.method_args, job.args,
                              forget_ids=forget)
            for k in range(len(job.data.clients))
        ]
        rounds = int(job.method_args["global_rounds"])
        return job.fit(clients, rounds, lambda: job.global_state, phase="unlearning"), {"rounds": rounds}

