"""``protocol=retrain``: exact unlearning by training the federation again without the forgotten records.

The reference that the approximate protocols are measured against. The
federation is trained again from the adapter the original fine-tuning started
from (round 0 of its history), with the original settings read from the
fine-tuned folder's ``config.yaml`` (local training ``trainer.args``,
``aggregation_strategy``, ``global_rounds``, ``num_shards``), and with the
forgotten records removed: after a sample-level request the requesting client
keeps its other records, after a client-level request it leaves. Clients keep
their ids and so their seeds, which makes the result equal to a fresh
fine-tuning on the data without those records.

Cost: a whole fine-tuning, less the forgotten records' batches. A sharded
federation retrains every shard here; ``protocol=sharded`` retrains one.
"""

from __future__ import annotations

from fedunlearn.trainers.finetune import finetune_clients
from fedunlearn.trainers.shards import fit_shards
from fedunlearn.unlearn.protocols.base import Protocol, UnlearningJob


class Retrain(Protocol):
    name = "retrain"

    def run(self, job: UnlearningJob):
        source = job.require_source(self.name)
        args = source.train_args
        rounds = int(source.method_args["global_rounds"])
        clients = finetune_clients(job.remaining_data(), job.examples, args)
        details = {"rounds": rounds, "clients": [c.client_id for c in clients], "num_shards": source.num_shards}
        if source.num_shards == 1:
            state = job.fit(clients, rounds, source.initial_state, phase="retraining", aggregator=source.aggregator(),
                            settings=source.round_settings(), seed=args.seed)
            return state, details

        state, shard_examples = fit_shards(
            job.model, clients, job.output_dir, num_clients=len(job.data.clients), num_shards=source.num_shards,
            initial_state=source.initial_state(), make_aggregator=source.aggregator, resume=job.resume,
            wrap_runtime_for=lambda shard: job.meter.wrap(f"retraining_shard_{shard}"), num_rounds=rounds,
            seed=args.seed, pad_token_id=job.tokenizer.pad_token_id, fingerprint=job.fingerprint,
            settings=source.round_settings(),
        )
        return state, {**details, "shard_examples": shard_examples}
