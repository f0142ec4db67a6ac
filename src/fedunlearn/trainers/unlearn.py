"""FederatedUnlearningTrainer: one client's request to be forgotten, served by the federation.

The run starts from a federated global model (the folder that federated
fine-tuning saved) and serves the request of client ``target_client_idx``
with the protocol ``trainer.method_args.protocol`` (default ``local``: the
requesting client runs ``unlearn_trainer_cls`` on its forget records while
the others fine-tune on theirs, for ``global_rounds`` rounds). The protocols,
``retrain``, ``federaser``, ``subtract``, ``pga`` and ``sharded`` among them,
are described in ``fedunlearn.unlearn.protocols``. ``request`` is ``sample``
(forget the client's records of the forget split) or ``client`` (forget
everything it contributed).

The client data are dealt as in fine-tuning (same split, seed and settings,
read from the fine-tuned folder's ``config.yaml`` when there is one), so each
client has the records it trained on. The run's summary (``federation.json``)
records the protocol's cost next to its result.

Keys of ``trainer.method_args`` other than the federated and protocol settings
go to the unlearning method (for example ``beta`` for NPO, ``alpha`` for GradDiff).
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
from fedunlearn.federated.runtime.flower import runtime_is_flower
from fedunlearn.federated.server import SERVER_KEYS, RoundSettings, run_fingerprint
from fedunlearn.federated.state import load_trainable_state
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
    # the protocol's settings (fedunlearn.unlearn.protocols)
    "protocol", "request", "recovery_rounds", "calibration_ratio", "calibration_interval", "pga_radius",
    "pga_random_models",
}


def federated_unlearn(cfg: DictConfig, output_dir: Path) -> Path:
    """Serve the unlearning request with ``trainer.method_args.protocol`` and save the unlearned model to ``output_dir``."""
    if runtime_is_flower(cfg):
        protocol_name = cfg.trainer.method_args.get("protocol") or "local"
        if protocol_name != "local":
            # TODO: run the other protocols' client training on Flower SuperNodes too.
            raise ValueError(f"protocol={protocol_name} runs in this process only: set runtime=inprocess, "
                             "or use protocol=local with Flower")
        from fedunlearn.federated.runtime.flower.launcher import launch_flower_run

        return launch_flower_run(cfg, output_dir)
    # The protocols build on the trainers package, so they are imported when a run starts.
    from fedunlearn.unlearn.protocols import CostMeter, FineTunedFederation, UnlearningJob, build_protocol, build_request

    method_args = OmegaConf.to_container(cfg.trainer.method_args, resolve=True)
    args = TrainingArgs.from_config(cfg.trainer.args)
    for key in ("unlearn_epochs", "global_rounds"):
        if float(method_args[key]) <= 0:
            raise ValueError(f"trainer.method_args.{key} must be > 0, got {method_args[key]}")
    protocol = build_protocol(method_args.get("protocol") or "local")
    method = build_method(method_args["unlearn_trainer_cls"],
                          **{k: v for k, v in method_args.items() if k not in FEDERATED_KEYS})
    build_aggregator(method_args["aggregation_strategy"], **(method_args.get("aggregation_args") or {}))
    RoundSettings.from_method_args(method_args)  # rejects invalid sampling settings before the model loads
    model_path = cfg.model.model_args.pretrained_model_name_or_path
    resolve_model_source(model_path)
    source = FineTunedFederation.find(model_path)
    deal_args, deal_seed = method_args, args.seed
    if source is not None:
        # Deal the records as the fine-tuning did: its seed, and its target holds the forget authors.
        source.check_request(cfg)
        deal_args = {**method_args, "target_client_idx": source.method_args["target_client_idx"]}
        deal_seed = source.train_args.seed
    data = load_federated_data(cfg.data.train_split, cfg.forget_split, deal_args, cfg.data, cfg.get("data_dir"), deal_seed)
    request = build_request(data, int(method_args["target_client_idx"]), method_args.get("request") or "sample",
                            cfg.forget_split)
    if protocol.uses_method:
        check_retained_records(method, method_args["unlearn_trainer_cls"], request.retained_ids)

    transformers.set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    prepare_lora_aggregation(model, method_args.get("lora_aggregation") or "separate")
    output_dir = open_output_dir(output_dir, cfg, "unlearn")
    examples = tokenize_records(tokenizer, data.records, cfg.model.get("template_args") or {}, cfg.data.max_length)
    forget = [examples[i] for i in request.forget_ids]
    resume = bool(cfg.get("resume", False))
    job = UnlearningJob(
        cfg=cfg, method_args=method_args, args=args, method=method,
        prepare_method=lambda: method.prepare(model, forget, UnlearnContext(tokenizer, int(cfg.data.max_length), args.seed)),
        model=model, tokenizer=tokenizer, data=data, examples=examples, request=request, source=source,
        output_dir=output_dir, fingerprint=run_fingerprint(fingerprint_config(cfg)), resume=resume,
        meter=CostMeter(output_dir / "cost.json", resume=resume),
    )
    log.info("Client %d requests to forget %d records (%s-level request) with protocol %s%s", request.target,
             len(forget), request.level, protocol.name, f" and {type(method).__name__}" if protocol.uses_method else "")

    started = time.perf_counter()
    state, details = protocol.run(job)
    cost = job.meter.summary()
    load_trainable_state(model, state)
    save_model(model, tokenizer, output_dir)
    history = History(output_dir / "federation")
    write_summary(output_dir, {
        "trainer": "FederatedUnlearningTrainer",
        "protocol": protocol.name,
        "request": request.level,
        "method": type(method).__name__ if protocol.uses_method else None,
        "target_client_idx": request.target,
        "forget_records": len(forget),
        "clients": {str(k): len(v) for k, v in enumerate(data.clients)},
        "cost": cost,
        "protocol_details": details,
        "rounds": history.records(),
        "history_size": history.size_report() if history.rounds_dir.is_dir() else None,
        "wall_seconds_this_run": time.perf_counter() - started,
    })
    return output_dir


def request_records(data: FederatedData, target: int, method, method_name: str, forget_split: str) -> tuple[list[int], list[int]]:
    """Return the requesting client's forget and retained record indices for a sample-level request.

    Raises ``ValueError`` when the client holds no forget records, or when the
    method needs retained records and the client has none.
    """
    forget_ids = [i for i in data.clients[target] if data.is_forget(i)]
    retain_ids = [i for i in data.clients[target] if not data.is_forget(i)]
    if not forget_ids:
        raise ValueError(f"client {target} has no records of {forget_split}: nothing to forget")
    check_retained_records(method, method_name, retain_ids)
    return forget_ids, retain_ids


def check_retained_records(method, method_name: str, retained_ids: list[int]) -> None:
    """Raise ``ValueError`` when ``method`` needs retained records on the requesting client and it has none."""
    if method.needs_retain and not retained_ids:
        raise ValueError(
            f"{method_name} needs retained data on the requesting client, which has only "
            "forget records: set trainer.method_args.target_holds_retain=true or use GradAscent"
        )


def unlearning_client(data: FederatedData, examples: list[dict], client_id: int, target: int, method,
                      method_args: dict, args: TrainingArgs, forget_ids: set[int] | None = None) -> Client:
    """Return client ``client_id`` of the unlearning federation.

    The requesting client ``target`` runs ``method`` on its forget records
    (``forget_ids``, by default its records of the forget authors) for
    ``unlearn_epochs``, with its other records as the ``retain`` stream when
    the method needs one. Every other client fine-tunes on its records for
    ``retain_epochs``. ``trainer.args.max_steps``, when set, caps both.
    """
    indices = data.clients[client_id]
    if client_id == target:
        is_forget = data.is_forget if forget_ids is None else forget_ids.__contains__
        unlearn_args = dataclasses.replace(args, num_train_epochs=float(method_args["unlearn_epochs"]))
        streams = {"forget": [examples[i] for i in indices if is_forget(i)]}
        if method.needs_retain:
            streams["retain"] = [examples[i] for i in indices if not is_forget(i)]
        return Client(client_id, streams, "forget", method, unlearn_args, len(indices), role="unlearn")
    retain_args = dataclasses.replace(args, num_train_epochs=float(method_args.get("retain_epochs", 1)))
    return Client(client_id, {"train": [examples[i] for i in indices]}, "train", FineTune(), retain_args,
                  len(indices), role="retain")
