"""FederatedUnlearningTrainer: one client's request to be forgotten, served by the federation.

The run starts from a federated global model and lasts ``global_rounds``
rounds. In each round the requesting client (``target_client_idx``) runs the
unlearning method ``unlearn_trainer_cls`` on its forget records for
``unlearn_epochs`` local epochs. Every other client fine-tunes on its own
records for ``retain_epochs``, and the server aggregates all updates with
``aggregation_strategy``. The client data are dealt as in fine-tuning (same
split, seed and settings), so each client has the records it trained on.

Keys of ``trainer.method_args`` other than the federated settings go to the
unlearning method (for example ``beta`` for NPO, ``alpha`` for GradDiff).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import transformers
from omegaconf import DictConfig, OmegaConf

from fedunlearn.federated.aggregation import build_aggregator
from fedunlearn.federated.aggregation.lora import prepare_lora_aggregation
from fedunlearn.federated.client import Client, TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.inprocess import InProcessRuntime
from fedunlearn.federated.server import SERVER_KEYS, FederatedServer, RoundSettings, run_fingerprint
from fedunlearn.federated.state import get_trainable_state, load_trainable_state
from fedunlearn.losses import FineTune
from fedunlearn.models.loading import load_model_and_tokenizer
from fedunlearn.models.sources import resolve_model_source
from fedunlearn.trainers.common import open_output_dir, save_model, write_summary
from fedunlearn.trainers.data import FederatedData, load_federated_data, tokenize_records
from fedunlearn.trainers.finetune import fingerprint_config
from fedunlearn.unlearn.methods import UnlearnContext, build_method

log = logging.getLogger(__name__)

FEDERATED_KEYS = {
    "num_clients", "target_client_idx", "partition", "target_holds_retain", "unlearn_trainer_cls",
    "aggregation_strategy", "aggregation_args", "global_rounds", "unlearn_epochs", "retain_epochs",
    "partition_alpha", "lora_aggregation", *SERVER_KEYS,
}


def federated_unlearn(cfg: DictConfig, output_dir: Path) -> Path:
    """Serve the unlearning request and save the unlearned global model to ``output_dir``."""
    method_args = OmegaConf.to_container(cfg.trainer.method_args, resolve=True)
    args = TrainingArgs.from_config(cfg.trainer.args)
    for key in ("unlearn_epochs", "global_rounds"):
        if float(method_args[key]) <= 0:
            raise ValueError(f"trainer.method_args.{key} must be > 0, got {method_args[key]}")
    method = build_method(method_args["unlearn_trainer_cls"],
                          **{k: v for k, v in method_args.items() if k not in FEDERATED_KEYS})
    aggregator = build_aggregator(method_args["aggregation_strategy"], **(method_args.get("aggregation_args") or {}))
    settings = RoundSettings.from_method_args(method_args)
    resolve_model_source(cfg.model.model_args.pretrained_model_name_or_path)
    data = load_federated_data(cfg.data.train_split, cfg.forget_split, method_args, cfg.data, cfg.get("data_dir"), args.seed)

    target = int(method_args["target_client_idx"])
    forget_ids, _ = request_records(data, target, method, method_args["unlearn_trainer_cls"], cfg.forget_split)

    transformers.set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    prepare_lora_aggregation(model, method_args.get("lora_aggregation") or "separate")
    output_dir = open_output_dir(output_dir, cfg, "unlearn")
    examples = tokenize_records(tokenizer, data.records, cfg.model.get("template_args") or {}, cfg.data.max_length)
    forget = [examples[i] for i in forget_ids]
    method.prepare(model, forget, UnlearnContext(tokenizer, int(cfg.data.max_length), args.seed))
    clients = [unlearning_client(data, examples, k, target, method, method_args, args) for k in range(len(data.clients))]
    log.info("Client %d requests to forget %d records with %s", target, len(forget), type(method).__name__)

    runtime = InProcessRuntime(model, clients, seed=args.seed, pad_token_id=tokenizer.pad_token_id)
    server = FederatedServer(
        runtime, aggregator, History(output_dir / "federation"), num_rounds=int(method_args["global_rounds"]),
        fingerprint=run_fingerprint(fingerprint_config(cfg)), desc="unlearning", settings=settings, seed=args.seed,
    )
    started = time.perf_counter()
    load_trainable_state(model, server.run(get_trainable_state(model), resume=bool(cfg.get("resume", False))))
    save_model(model, tokenizer, output_dir)
    write_summary(output_dir, {
        "trainer": "FederatedUnlearningTrainer",
        "method": type(method).__name__,
        "target_client_idx": target,
        "forget_records": len(forget),
        "clients": {str(k): len(v) for k, v in enumerate(data.clients)},
        "rounds": server.history.records(),
        "history_size": server.history.size_report(),
        "wall_seconds_this_run": time.perf_counter() - started,
    })
    return output_dir


def request_records(data: FederatedData, target: int, method, method_name: str, forget_split: str) -> tuple[list[int], list[int]]:
    """Return the requesting client's forget and retained record indices, checking the request can be served."""
    forget_ids = [i for i in data.clients[target] if data.is_forget(i)]
    retain_ids = [i for i in data.clients[target] if not data.is_forget(i)]
    if not forget_ids:
        raise ValueError(f"client {target} has no records of {forget_split}: nothing to forget")
    if method.needs_retain and not retain_ids:
        raise ValueError(
            f"{method_name} needs retained data on the requesting client, which has only "
            "forget records: set trainer.method_args.target_holds_retain=true or use GradAscent"
        )
    return forget_ids, retain_ids


def unlearning_client(data: FederatedData, examples: list[dict], client_id: int, target: int, method,
                      method_args: dict, args: TrainingArgs) -> Client:
    """Return client ``client_id`` of the unlearning federation.

    The requesting client ``target`` runs ``method`` on its forget records for
    ``unlearn_epochs`` (with its retained records as the ``retain`` stream when
    the method needs one); every other client fine-tunes on its records for
    ``retain_epochs``. ``trainer.args.max_steps``, when set, caps both.
    """
    indices = data.clients[client_id]
    if client_id == target:
        unlearn_args = dataclasses.replace(args, num_train_epochs=float(method_args["unlearn_epochs"]))
        streams = {"forget": [examples[i] for i in indices if data.is_forget(i)]}
        if method.needs_retain:
            streams["retain"] = [examples[i] for i in indices if not data.is_forget(i)]
        return Client(client_id, streams, "forget", method, unlearn_args, len(indices), role="unlearn")
    retain_args = dataclasses.replace(args, num_train_epochs=float(method_args.get("retain_epochs", 1)))
    return Client(client_id, {"train": [examples[i] for i in indices]}, "train", FineTune(), retain_args,
                  len(indices), role="retain")
