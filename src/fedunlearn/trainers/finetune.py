"""FederatedFinetune: federated fine-tuning of a LoRA adapter (or all weights) on TOFU.

Reads ``trainer.args`` (local training, Trainer names) and ``trainer.method_args``:
``num_clients``, ``target_client_idx``, ``partition``, ``target_holds_retain``,
``aggregation_strategy``, ``aggregation_args``, ``global_rounds`` and
``num_shards`` (default 1; above 1, SISA-style sharded training: see
``fedunlearn.trainers.shards``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import transformers
from omegaconf import DictConfig, OmegaConf

from fedunlearn.federated.aggregation import build_aggregator
from fedunlearn.federated.aggregation.lora import prepare_lora_aggregation
from fedunlearn.federated.client import Client, TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.flower import runtime_is_flower
from fedunlearn.federated.server import RoundSettings, run_fingerprint
from fedunlearn.federated.state import get_trainable_state, load_trainable_state
from fedunlearn.losses import FineTune
from fedunlearn.models.loading import load_model_and_tokenizer, trainable_parameter_count
from fedunlearn.models.sources import resolve_model_source
from fedunlearn.trainers.common import open_output_dir, save_model, write_summary
from fedunlearn.trainers.data import FederatedData, load_federated_data, tokenize_records
from fedunlearn.trainers.federation import fit_federation
from fedunlearn.trainers.shards import assign_shards, fit_shards, shards_summary

log = logging.getLogger(__name__)


def federated_finetune(cfg: DictConfig, output_dir: Path) -> Path:
    """Run federated fine-tuning on ``cfg.data.train_split`` and save the global model to ``output_dir``."""
    if runtime_is_flower(cfg):
        from fedunlearn.federated.runtime.flower.launcher import launch_flower_run

        return launch_flower_run(cfg, output_dir)
    method_args = cfg.trainer.method_args
    args = TrainingArgs.from_config(cfg.trainer.args)
    if int(method_args.global_rounds) < 1:
        raise ValueError(f"trainer.method_args.global_rounds must be >= 1, got {method_args.global_rounds}")

    def make_aggregator():
        return build_aggregator(method_args.aggregation_strategy, **(method_args.get("aggregation_args") or {}))

    make_aggregator()  # rejects an unknown strategy before the model loads
    settings = RoundSettings.from_method_args(method_args)
    resolve_model_source(cfg.model.model_args.pretrained_model_name_or_path)
    data = load_federated_data(cfg.data.train_split, cfg.forget_split, method_args, cfg.data, cfg.get("data_dir"), args.seed)
    num_shards = int(method_args.get("num_shards") or 1)
    assign_shards(len(data.clients), num_shards)  # rejects a shard count outside [1, num_clients]

    transformers.set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    prepare_lora_aggregation(model, method_args.get("lora_aggregation") or "separate")
    trainable, total = trainable_parameter_count(model)
    log.info("Model: %s trainable of %s parameters", f"{trainable:,}", f"{total:,}")
    output_dir = open_output_dir(output_dir, cfg, "finetune")

    examples = tokenize_records(tokenizer, data.records, cfg.model.get("template_args") or {}, cfg.data.max_length)
    clients = finetune_clients(data, examples, args)
    fit_args = {"num_rounds": int(method_args.global_rounds), "seed": args.seed, "pad_token_id": tokenizer.pad_token_id,
                "fingerprint": run_fingerprint(fingerprint_config(cfg)), "resume": bool(cfg.get("resume", False)),
                "settings": settings}
    started = time.perf_counter()
    if num_shards > 1:
        state, shard_examples = fit_shards(model, clients, output_dir, num_clients=len(data.clients), num_shards=num_shards,
                                           initial_state=get_trainable_state(model), make_aggregator=make_aggregator,
                                           **fit_args)
    else:
        state = fit_federation(model, clients, output_dir / "federation", initial_state=get_trainable_state(model),
                               aggregator=make_aggregator(), desc="fine-tuning", **fit_args)
    load_trainable_state(model, state)
    save_model(model, tokenizer, output_dir)

    summary = {
        "trainer": "FederatedFinetune",
        "train_split": cfg.data.train_split,
        "clients": {str(k): len(v) for k, v in enumerate(data.clients)},
    }
    if num_shards > 1:
        summary["shards"] = shards_summary(output_dir, shard_examples)
    else:
        history = History(output_dir / "federation")
        summary.update(rounds=history.records(), history_size=history.size_report())
    summary["wall_seconds_this_run"] = time.perf_counter() - started
    write_summary(output_dir, summary)
    return output_dir


def finetune_clients(data: FederatedData, examples: list[dict], args: TrainingArgs) -> list[Client]:
    """Return the fine-tuning clients: each trains on its records; one without records does not take part."""
    return [
        Client(client_id, {"train": [examples[i] for i in indices]}, "train", FineTune(), args, len(indices))
        for client_id, indices in enumerate(data.clients)
        if indices
    ]


def fingerprint_config(cfg: DictConfig) -> dict:
    """Return the settings that define a run's result, for resume checks."""
    keys = ("model", "trainer", "data", "forget_split")
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys}
