"""Running rounds of federated training: the runtime, the server and its history, wired together once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from fedunlearn.federated.aggregation import Aggregator
from fedunlearn.federated.client import Client
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime import Runtime
from fedunlearn.federated.runtime.inprocess import InProcessRuntime
from fedunlearn.federated.server import FederatedServer, RoundSettings


def fit_federation(
    model: torch.nn.Module,
    clients: list[Client],
    history_root: str | Path,
    *,
    initial_state: dict[str, torch.Tensor],
    aggregator: Aggregator,
    num_rounds: int,
    seed: int,
    pad_token_id: int,
    fingerprint: str,
    resume: bool,
    desc: str,
    wrap_runtime: Callable[[Runtime], Runtime] | None = None,
    settings: RoundSettings | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """Run ``num_rounds`` rounds of ``clients`` from ``initial_state`` and return the final global state.

    The rounds are recorded (and resumed) under ``history_root`` (see
    ``fedunlearn.federated.history``); ``wrap_runtime`` may wrap the runtime,
    for example to meter what the clients spend.
    """
    runtime: Runtime = InProcessRuntime(model, clients, seed=seed, pad_token_id=pad_token_id)
    if wrap_runtime is not None:
        runtime = wrap_runtime(runtime)
    server = FederatedServer(runtime, aggregator, History(history_root), num_rounds=num_rounds,
                             fingerprint=fingerprint, desc=desc, settings=settings or RoundSettings(), seed=seed)
    return server.run(initial_state, resume=resume)
