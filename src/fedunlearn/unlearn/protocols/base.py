"""The interface of a federated unlearning protocol and the request it serves.

A protocol decides how the federation forgets: which clients train, on what,
for how many rounds, and what the server computes from the stored history.
It receives an ``UnlearningJob`` (the loaded fine-tuned model, the clients'
records, the request, the original federation) and returns the unlearned
global state and a dict of details for the run's summary. Its cost goes to
``job.meter`` (see ``cost.py``).

Requests (``trainer.method_args.request``):

* ``sample`` (default): forget some records of the requesting client, the
  records of the ``forget_split`` authors it holds. It keeps its other records.
* ``client``: forget everything the requesting client contributed. It leaves
  the federation.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from fedunlearn.federated.aggregation import Aggregator, build_aggregator
from fedunlearn.federated.client import Client, TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime import Runtime
from fedunlearn.federated.server import RoundSettings
from fedunlearn.federated.state import get_trainable_state
from fedunlearn.trainers.data import FederatedData
from fedunlearn.trainers.federation import fit_federation
from fedunlearn.unlearn.protocols.cost import CostMeter
from fedunlearn.unlearn.protocols.source import FineTunedFederation

REQUEST_LEVELS = ("sample", "client")


@dataclass(frozen=True)
class Request:
    """What the requesting client ``target`` asks to forget.

    Args:
        target: the requesting client.
        level: ``sample`` or ``client``.
        forget_ids: indices into the federation's records to forget.
        retained_ids: the requesting client's other records (none for a client-level request).
    """

    target: int
    level: str
    forget_ids: list[int]
    retained_ids: list[int]


def build_request(data: FederatedData, target: int, level: str, forget_split: str) -> Request:
    """Return the request of client ``target``, checking that it has something to forget."""
    if level not in REQUEST_LEVELS:
        raise ValueError(f"unknown trainer.method_args.request {level!r}: choose one of {list(REQUEST_LEVELS)}")
    if not 0 <= target < len(data.clients):
        raise ValueError(f"target_client_idx={target} is out of range for {len(data.clients)} clients")
    held = data.clients[target]
    forget = [i for i in held if data.is_forget(i)] if level == "sample" else list(held)
    if not forget:
        what = f"records of {forget_split}" if level == "sample" else "records"
        raise ValueError(f"client {target} has no {what}: nothing to forget")
    forget_set = set(forget)
    return Request(target, level, forget, [i for i in held if i not in forget_set])


@dataclass
class UnlearningJob:
    """Everything a protocol works with.

    ``data`` deals the records as the original federation did; ``examples``
    are their tokenised forms, index for index. ``args`` and ``method_args``
    are the unlearning run's settings; ``source`` is the fine-tuned federation
    (None when the model was not fine-tuned by fedunlearn, which only the
    ``local`` protocol accepts). ``prepare_method`` runs the method's
    ``prepare`` on the model's current state.
    """

    cfg: DictConfig
    method_args: dict[str, Any]
    args: TrainingArgs
    method: Any
    prepare_method: Callable[[], None]
    model: torch.nn.Module
    tokenizer: Any
    data: FederatedData
    examples: list[dict]
    request: Request
    source: FineTunedFederation | None
    output_dir: Path
    fingerprint: str
    resume: bool
    meter: CostMeter
    global_state: OrderedDict[str, torch.Tensor] = field(init=False)  # the loaded (fine-tuned) global state

    def __post_init__(self):
        self.global_state = get_trainable_state(self.model)

    def remaining_data(self) -> FederatedData:
        """Return the federation's records without the forgotten ones (the requesting client's deal shrinks)."""
        forget = set(self.request.forget_ids)
        clients = [[i for i in indices if i not in forget] for indices in self.data.clients]
        return dataclasses.replace(self.data, clients=clients)

    def aggregator(self) -> Aggregator:
        """Return the unlearning run's aggregation (``aggregation_strategy``, ``aggregation_args``)."""
        return build_aggregator(self.method_args["aggregation_strategy"], **(self.method_args.get("aggregation_args") or {}))

    def fit(self, clients: list[Client], num_rounds: int, initial_state: Callable[[], dict], *, phase: str,
            aggregator: Aggregator | None = None, settings: RoundSettings | None = None, seed: int | None = None,
            history_root: Path | None = None, wrap_runtime: Callable[[Runtime], Runtime] | None = None):
        """Run ``num_rounds`` metered rounds of ``clients`` and return the final global state.

        ``initial_state`` is called only when the rounds start afresh, not when
        they resume from a checkpoint under ``history_root`` (default
        ``<output_dir>/federation``); with no rounds it gives the result. The
        aggregation, round settings and seed default to the unlearning run's.
        ``wrap_runtime`` wraps the runtime inside the cost meter.
        """
        history_root = history_root or self.output_dir / "federation"
        if num_rounds == 0:
            return initial_state()
        resuming = History(history_root).load_checkpoint() is not None
        meter = self.meter.wrap(phase)
        return fit_federation(
            self.model, clients, history_root, initial_state={} if resuming else initial_state(),
            aggregator=aggregator or self.aggregator(), num_rounds=num_rounds,
            seed=self.args.seed if seed is None else seed, pad_token_id=self.tokenizer.pad_token_id,
            fingerprint=self.fingerprint, resume=self.resume, desc=phase,
            wrap_runtime=lambda runtime: meter(wrap_runtime(runtime) if wrap_runtime else runtime),
            settings=settings or RoundSettings.from_method_args(self.method_args),
        )

    def require_source(self, protocol: str) -> FineTunedFederation:
        """Return the fine-tuned federation, or raise ``ValueError`` when the model path is not one."""
        if self.source is None:
            raise ValueError(
                f"protocol={protocol} needs the fine-tuned federation's folder (config.yaml and federation/) as "
                f"model.model_args.pretrained_model_name_or_path, got {self.cfg.model.model_args.pretrained_model_name_or_path!r}"
            )
        return self.source


class Protocol:
    """Base class: ``run(job)`` returns ``(global_state, details)``.

    ``uses_method`` tells whether the requesting client runs the unlearning
    method (``unlearn_trainer_cls``); the other protocols ignore it.
    """

    name = ""
    uses_method = False

    def run(self, job: UnlearningJob) -> tuple[OrderedDict[str, torch.Tensor], dict]:
        raise NotImplementedError
