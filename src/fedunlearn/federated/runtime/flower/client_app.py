"""The ClientApp: one fedunlearn client on its own SuperNode, trained on its own partition file.

Handlers (flwr 1.42 ``ClientApp``):

- ``query``: reply with the client id and data file of the node config, and the
  number of records and forget records, so the server maps nodes to clients.
- ``train``: one fine-tuning round (the client ``finetune_clients`` builds).
- ``train.unlearn``: one unlearning round (the client ``unlearning_client``
  builds; the requesting client ``target_client_idx`` runs the unlearning method).

Flower starts a new ClientApp process for every message. So each round loads
the model named by ``model.model_args.pretrained_model_name_or_path``, or by
the node config's ``model-path`` where the model is elsewhere on that node. It
tokenises the partition, builds the client exactly as the in-process
federation does, and calls ``run_client_round``. The requesting client
prepares its method on the loaded model before the round's global state is
loaded into it, as in-process ``prepare`` runs on the model the run started from.
"""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedunlearn.federated.runtime.flower.partition import node_partition
from fedunlearn.federated.runtime.flower.run_config import log_to_console, read_run_config

log = logging.getLogger(__name__)

app = ClientApp()


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """Reply with the client this node serves and the size of its partition."""
    partition = node_partition(context.node_config)
    return Message(RecordDict({
        "client": ConfigRecord({"client-id": partition.client_id, "data-file": str(context.node_config["data-file"])}),
        "metrics": MetricRecord({"num-records": len(partition.records), "num-forget-records": sum(partition.forget)}),
    }), reply_to=msg)


@app.train()
def finetune_round(msg: Message, context: Context) -> Message:
    """Run one fine-tuning round on this node's records."""
    return _train_round(msg, context, unlearning=False)


@app.train("unlearn")
def unlearn_round(msg: Message, context: Context) -> Message:
    """Run one unlearning round: the requesting client unlearns, any other client fine-tunes."""
    return _train_round(msg, context, unlearning=True)


def _train_round(msg: Message, context: Context, *, unlearning: bool) -> Message:
    # Imported here, not at the top: a query message then starts without loading PyTorch and transformers.
    import transformers
    from omegaconf import OmegaConf

    from fedunlearn.federated.aggregation.lora import prepare_lora_aggregation
    from fedunlearn.federated.client import TrainingArgs, run_client_round
    from fedunlearn.federated.runtime.flower.records import read_round, reply_content
    from fedunlearn.models.loading import load_model_and_tokenizer
    from fedunlearn.trainers.data import tokenize_records
    from fedunlearn.trainers.finetune import finetune_clients

    log_to_console()
    cfg, _ = read_run_config(context.run_config)
    partition = node_partition(context.node_config)
    server_round, global_state, config, client_state = read_round(msg.content)
    args = TrainingArgs.from_config(cfg.trainer.args)
    method_args = OmegaConf.to_container(cfg.trainer.method_args, resolve=True)

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    if context.node_config.get("model-path"):
        model_cfg["model_args"]["pretrained_model_name_or_path"] = str(context.node_config["model-path"])
    transformers.set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(model_cfg)
    prepare_lora_aggregation(model, method_args.get("lora_aggregation") or "separate")
    examples = tokenize_records(tokenizer, partition.records, cfg.model.get("template_args") or {}, cfg.data.max_length)

    if unlearning:
        client = _unlearning_client(cfg, method_args, partition, examples, model, tokenizer, args)
    else:
        client = finetune_clients(partition.as_federated_data(), examples, args)[0]
    log.info("round %d: client %d (%s) trains on %d records", server_round, client.client_id, client.role,
             client.num_examples)
    update = run_client_round(model, client, global_state, config, server_round=server_round, seed=args.seed,
                              pad_token_id=tokenizer.pad_token_id, client_state=client_state)
    return Message(reply_content(update, client_state), reply_to=msg)


def _unlearning_client(cfg, method_args: dict, partition, examples: list[dict], model, tokenizer, args):
    """Build this node's client of an unlearning round, as the ``local`` protocol builds it in-process."""
    from fedunlearn.trainers.unlearn import FEDERATED_KEYS, check_retained_records, unlearning_client
    from fedunlearn.unlearn.methods import UnlearnContext, build_method
    from fedunlearn.unlearn.protocols import build_request

    name = method_args["unlearn_trainer_cls"]
    method = build_method(name, **{k: v for k, v in method_args.items() if k not in FEDERATED_KEYS})
    target = int(method_args["target_client_idx"])
    data = partition.as_federated_data()
    forget_ids = None
    if partition.client_id == target:
        request = build_request(data, target, method_args.get("request") or "sample", cfg.forget_split)
        check_retained_records(method, name, request.retained_ids)
        forget_ids = set(request.forget_ids)
        # As in-process: prepare on the model the run started from, before the round's global state is loaded.
        method.prepare(model, [examples[i] for i in request.forget_ids],
                       UnlearnContext(tokenizer, int(cfg.data.max_length), args.seed))
    return unlearning_client(data, examples, partition.client_id, target, method, method_args, args,
                             forget_ids=forget_ids)
