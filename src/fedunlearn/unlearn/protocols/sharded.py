"""``protocol=sharded``: exact unlearning by construction, retraining only the requesting client's shard.

It needs a federation fine-tuned with ``trainer.method_args.num_shards > 1``
(SISA-style, Bourtoule et al., 2021, "Machine Unlearning"; see
``fedunlearn.trainers.shards``): the clients were split into shards that each
trained their own adapter from the same initial adapter, and the global model
is the example-weighted mean of the shard adapters.

No shard saw another shard's updates, so forgetting a client's records only
requires training its shard again without them: from the initial adapter,
with the fine-tuning's settings and the same seeds. The other shards' stored
adapters are reused, and the shards are combined again with their new record
counts (a shard left without records drops out). The result equals sharded
fine-tuning on the data without the forgotten records.

Cost: one shard's fine-tuning, about ``1 / num_shards`` of a full retraining.
The price is paid earlier: every shard learns from a fraction of the clients,
and averaging shard adapters loses utility compared with one federation
(docs/unlearning-protocols.md measures both).
"""

from __future__ import annotations

from fedunlearn.trainers.finetune import finetune_clients
from fedunlearn.trainers.shards import assign_shards, fit_shards, load_shard_state
from fedunlearn.unlearn.protocols.base import Protocol, UnlearningJob


class Sharded(Protocol):
    name = "sharded"

    def run(self, job: UnlearningJob):
        source = job.require_source(self.name)
        if source.num_shards == 1:
            raise ValueError(
                f"protocol=sharded needs a federation fine-tuned in shards, but {source.path} has none: fine-tune "
                "with trainer.method_args.num_shards=2 (or more), or use protocol=retrain"
            )
        num_clients = len(job.data.clients)
        shards = assign_shards(num_clients, source.num_shards)
        retrained = next(s for s, members in enumerate(shards) if job.request.target in members)
        reuse = {}
        for shard in range(source.num_shards):
            if shard != retrained:
                state = load_shard_state(source.path, shard)
                if state is None and any(job.data.clients[k] for k in shards[shard]):
                    raise ValueError(f"the adapter of shard {shard} is missing under {source.path}: fine-tune again")
                if state is not None:
                    reuse[shard] = state
                    job.meter.add("recombination", f"read_shard_{shard}", history_states_read=1)

        args = source.train_args
        clients = finetune_clients(job.remaining_data(), job.examples, args)
        state, shard_examples = fit_shards(
            job.model, clients, job.output_dir, num_clients=num_clients, num_shards=source.num_shards,
            initial_state=source.initial_state(), make_aggregator=source.aggregator, resume=job.resume, reuse=reuse,
            wrap_runtime_for=lambda shard: job.meter.wrap(f"retraining_shard_{shard}"),
            num_rounds=int(source.method_args["global_rounds"]), seed=args.seed,
            pad_token_id=job.tokenizer.pad_token_id, fingerprint=job.fingerprint, settings=source.round_settings(),
        )
        job.meter.add("recombination", "server", aggregations=1)
        return state, {"retrained_shard": retrained, "shard_clients": shards, "shard_examples": shard_examples}
