"""The ServerApp: fedunlearn's round loop on the SuperLink, for fine-tuning and unlearning runs.

It reads the resolved fedunlearn config from the run config. It loads the
model only to take the initial global state and to save the final model. It
waits for the SuperNodes, then runs ``FederatedServer`` with a ``FlowerRuntime``
and the aggregator, history and run fingerprint of the in-process trainers. It writes
the output folder those trainers write: the global model, ``federation/``
(history and checkpoint, so ``resume=true`` works the same) and
``federation.json``, which also records ``"runtime": "flower"`` and the bytes
sent and received per round.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import transformers
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from omegaconf import DictConfig, OmegaConf

from fedunlearn.federated.aggregation import build_aggregator
from fedunlearn.federated.aggregation.lora import prepare_lora_aggregation
from fedunlearn.federated.client import TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.flower.run_config import log_to_console, read_run_config
from fedunlearn.federated.runtime.flower.runtime import FlowerRuntime
from fedunlearn.federated.server import FederatedServer, RoundSettings, run_fingerprint
from fedunlearn.federated.state import get_trainable_state, load_trainable_state
from fedunlearn.models.loading import load_model_and_tokenizer
from fedunlearn.trainers.common import open_output_dir, save_model, write_summary
from fedunlearn.trainers.finetune import fingerprint_config
from fedunlearn.trainers.unlearn import FEDERATED_KEYS
from fedunlearn.unlearn.methods import build_method

log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Serve one fedunlearn run: ``FederatedFinetune`` or ``FederatedUnlearningTrainer``."""
    log_to_console()
    cfg, output_dir = read_run_config(context.run_config)
    handler = cfg.trainer.get("handler")
    if handler == "FederatedFinetune":
        serve(grid, cfg, output_dir, unlearning=False)
    elif handler == "FederatedUnlearningTrainer":
        serve(grid, cfg, output_dir, unlearning=True)
    else:
        raise ValueError(f"trainer {handler!r} cannot run on Flower: use FederatedFinetune or FederatedUnlearningTrainer")


def serve(grid: Grid, cfg: DictConfig, output_dir: Path, *, unlearning: bool) -> Path:
    """Run the federation of ``cfg`` over ``grid`` and save the global model to ``output_dir``."""
    method_args = OmegaConf.to_container(cfg.trainer.method_args, resolve=True)
    args = TrainingArgs.from_config(cfg.trainer.args)
    num_rounds = int(method_args["global_rounds"])
    aggregator = build_aggregator(method_args["aggregation_strategy"], **(method_args.get("aggregation_args") or {}))
    settings = RoundSettings.from_method_args(method_args)
    summary = {"trainer": cfg.trainer.handler}
    if unlearning:
        summary.update(_check_unlearning(method_args))
    else:
        if num_rounds < 1:
            raise ValueError(f"trainer.method_args.global_rounds must be >= 1, got {num_rounds}")
        if int(method_args.get("num_shards") or 1) > 1:
            raise ValueError("trainer.method_args.num_shards > 1 (sharded training) runs in-process only: "
                             "set runtime=inprocess or num_shards=1")

    transformers.set_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    prepare_lora_aggregation(model, method_args.get("lora_aggregation") or "separate")
    output_dir = open_output_dir(output_dir, cfg, "unlearn" if unlearning else "finetune")

    flower = cfg.get("flower") or {}
    runtime = FlowerRuntime(
        grid,
        message_type="train.unlearn" if unlearning else "train",
        num_nodes=int(flower.get("num_supernodes") or method_args.get("num_clients", 3)),
        connect_timeout=float(flower.get("connect_timeout") or 300),
        round_timeout=float(flower["round_timeout"]) if flower.get("round_timeout") else None,
    )
    clients = runtime.connect()
    if unlearning:
        summary["forget_records"] = _check_request(clients, summary["target_client_idx"], summary["request"],
                                                   cfg.forget_split)
        log.info("Client %d requests to forget %d records (%s-level request) with protocol local and %s",
                 summary["target_client_idx"], summary["forget_records"], summary["request"], summary["method"])

    server = FederatedServer(
        runtime, aggregator, History(output_dir / "federation"), num_rounds=num_rounds,
        fingerprint=run_fingerprint(fingerprint_config(cfg)), desc="unlearning" if unlearning else "fine-tuning",
        settings=settings, seed=args.seed,
    )
    started = time.perf_counter()
    load_trainable_state(model, server.run(get_trainable_state(model), resume=bool(cfg.get("resume", False))))
    save_model(model, tokenizer, output_dir)
    write_summary(output_dir, {
        **summary,
        "train_split": cfg.data.train_split,
        "runtime": "flower",
        "clients": {str(k): int(v["num-records"]) for k, v in sorted(clients.items())},
        "supernodes": {str(k): runtime.nodes[k] for k in sorted(runtime.nodes)},
        "rounds": server.history.records(),
        "history_size": server.history.size_report(),
        "message_bytes": {
            "sent": _by_round(runtime.sent_bytes),
            "received": _by_round(runtime.received_bytes),
        },
        "wall_seconds_this_run": time.perf_counter() - started,
    })
    return output_dir


def _by_round(table: dict[int, dict[int, int]]) -> dict[str, dict[str, int]]:
    return {str(r): {str(c): b for c, b in per_client.items()} for r, per_client in table.items()}


def _check_unlearning(method_args: dict) -> dict:
    """Check an unlearning run's settings before any SuperNode trains; return its part of the summary."""
    protocol = method_args.get("protocol") or "local"
    if protocol != "local":
        raise ValueError(f"protocol={protocol} runs in-process only; on Flower the protocol is local "
                         "(set runtime=inprocess, or trainer.method_args.protocol=local)")
    for key in ("unlearn_epochs", "global_rounds"):
        if float(method_args[key]) <= 0:
            raise ValueError(f"trainer.method_args.{key} must be > 0, got {method_args[key]}")
    # Built here only to reject a wrong method name or setting early; each client builds its own.
    method = build_method(method_args["unlearn_trainer_cls"],
                          **{k: v for k, v in method_args.items() if k not in FEDERATED_KEYS})
    return {"protocol": protocol, "request": method_args.get("request") or "sample",
            "method": type(method).__name__, "target_client_idx": int(method_args["target_client_idx"])}


def _check_request(clients: dict[int, dict], target: int, level: str, forget_split: str) -> int:
    """Return the number of records the requesting client unlearns, checking that it is connected and has some."""
    if target not in clients:
        raise ValueError(f"the requesting client {target} (trainer.method_args.target_client_idx) has no SuperNode: "
                         f"connected clients are {sorted(clients)}")
    count = int(clients[target]["num-forget-records" if level == "sample" else "num-records"])
    if count == 0:
        raise ValueError(f"client {target} has no records of {forget_split}: nothing to forget (check its data-file)")
    return count
