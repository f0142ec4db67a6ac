"""Sharded federated fine-tuning (SISA-style): one adapter per shard of clients, averaged into the global model.

Following SISA training (Bourtoule et al., 2021, "Machine Unlearning"), the
clients are split into ``num_shards`` disjoint shards, client ``k`` going to
shard ``k % num_shards``. Each shard runs its own federation (the same rounds,
local training and aggregation as unsharded fine-tuning) from the same initial
adapter, and never sees another shard's updates. The global model is the
example-weighted mean of the shard adapters::

    w_global = sum_s n_s * w_s / sum_s n_s        (n_s: training records of shard s)

SISA combines its shard models by aggregating their predictions; averaging
their parameters instead keeps one model of the usual size. With LoRA it
averages the ``A`` and ``B`` factors separately, which is not the average of
the shard updates ``B_s A_s``. Forgetting a client then retrains only its shard
and recombines (``protocol=sharded``); the price is that each shard learns from
a fraction of the data. The utility lost this way is measured in
docs/unlearning-protocols.md.

Layout under the fine-tuned model's folder::

    shards/shards.json                         the shards, their clients and record counts
    shards/shard_<s>/state.safetensors         the shard's adapter (trainable state)
    shards/shard_<s>/federation/               the shard's round history, as for an unsharded run
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fedunlearn.federated.aggregation import Aggregator, weighted_mean
from fedunlearn.federated.client import Client
from fedunlearn.federated.history import History
from fedunlearn.trainers.federation import fit_federation
from fedunlearn.utils.io import write_json

log = logging.getLogger(__name__)

SHARDS_DIR = "shards"


def assign_shards(num_clients: int, num_shards: int) -> list[list[int]]:
    """Return the clients of each shard: client ``k`` goes to shard ``k % num_shards``."""
    if not 1 <= num_shards <= num_clients:
        raise ValueError(
            f"trainer.method_args.num_shards must be between 1 and num_clients={num_clients}, got {num_shards}"
        )
    return [[k for k in range(num_clients) if k % num_shards == s] for s in range(num_shards)]


def combine_shards(states: list[dict[str, torch.Tensor] | None], num_examples: list[int]) -> OrderedDict[str, torch.Tensor]:
    """Return the example-weighted mean of the shard states; shards without records are left out."""
    kept = [(state, n) for state, n in zip(states, num_examples) if n > 0 and state is not None]
    if not kept:
        raise ValueError("every shard is empty: no client has training records left")
    return weighted_mean([state for state, _ in kept], [n for _, n in kept])


def shard_dir(root: str | Path, shard: int) -> Path:
    return Path(root) / SHARDS_DIR / f"shard_{shard}"


def save_shard_state(root: str | Path, shard: int, state: dict[str, torch.Tensor]) -> None:
    """Store a shard's trained adapter as ``shards/shard_<s>/state.safetensors``, through a temporary file."""
    folder = shard_dir(root, shard)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".state.safetensors.tmp"
    save_file(dict(state), tmp)
    os.replace(tmp, folder / "state.safetensors")


def load_shard_state(root: str | Path, shard: int) -> OrderedDict[str, torch.Tensor] | None:
    """Return a shard's stored adapter, or None when the shard has not finished training."""
    file = shard_dir(root, shard) / "state.safetensors"
    return OrderedDict(load_file(file)) if file.is_file() else None


def write_shards_index(root: str | Path, shards: list[list[int]], num_examples: list[int]) -> None:
    write_json(Path(root) / SHARDS_DIR / "shards.json", {
        "num_shards": len(shards),
        "assignment": "client k -> shard k % num_shards",
        "combination": "example-weighted mean of the shard adapters",
        "shards": [{"shard": s, "clients": clients, "num_examples": n}
                   for s, (clients, n) in enumerate(zip(shards, num_examples))],
    })


def shards_summary(root: str | Path, num_examples: list[int]) -> list[dict]:
    """Return each shard's records, rounds and history size, for ``federation.json``."""
    summary = []
    for shard, n in enumerate(num_examples):
        history = History(shard_dir(root, shard) / "federation")
        summary.append({"shard": shard, "num_examples": n, "rounds": history.records(),
                        "history_size": history.size_report() if history.rounds_dir.is_dir() else None})
    return summary


def read_shards_index(root: str | Path) -> dict | None:
    """Return ``shards/shards.json`` of a fine-tuned folder, or None for an unsharded federation."""
    file = Path(root) / SHARDS_DIR / "shards.json"
    return json.loads(file.read_text()) if file.is_file() else None


def fit_shards(
    model: torch.nn.Module,
    clients: list[Client],
    root: str | Path,
    *,
    num_clients: int,
    num_shards: int,
    initial_state: dict[str, torch.Tensor],
    make_aggregator: Callable[[], Aggregator],
    resume: bool,
    reuse: dict[int, dict[str, torch.Tensor]] | None = None,
    wrap_runtime_for: Callable[[int], Callable] | None = None,
    **fit_args,
) -> tuple[OrderedDict[str, torch.Tensor], list[int]]:
    """Train every shard's federation from ``initial_state`` and return the combined state and each shard's records.

    A shard listed in ``reuse`` is not trained: its given state is used (the
    shards that an unlearning request leaves untouched). A shard left without
    clients has 0 records and drops out of the combination. Each trained
    shard keeps its history under ``shards/shard_<s>/federation``; with
    ``resume`` a shard whose state is stored is not trained again.
    ``wrap_runtime_for(shard)`` gives the shard's ``wrap_runtime``; the other
    ``fit_args`` go to ``fit_federation`` (rounds, seed, fingerprint, ...).
    """
    reuse = reuse or {}
    shards = assign_shards(num_clients, num_shards)
    states, sizes = [], []
    for shard, members in enumerate(shards):
        shard_clients = [c for c in clients if c.client_id in members]
        sizes.append(sum(c.num_examples for c in shard_clients))
        if not shard_clients:
            log.info("Shard %d has no clients with records left: it drops out of the global model", shard)
            states.append(None)
            continue
        state = reuse.get(shard)
        if state is None and resume:
            state = load_shard_state(root, shard)
        if state is None:
            log.info("Shard %d: clients %s, %d records", shard, [c.client_id for c in shard_clients], sizes[-1])
            state = fit_federation(model, shard_clients, shard_dir(root, shard) / "federation", initial_state=initial_state,
                                   aggregator=make_aggregator(), resume=resume, desc=f"shard {shard}",
                                   wrap_runtime=wrap_runtime_for(shard) if wrap_runtime_for else None, **fit_args)
        save_shard_state(root, shard, state)
        states.append(state)
    write_shards_index(root, shards, sizes)
    return combine_shards(states, sizes), sizes
