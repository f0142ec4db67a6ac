"""One client's local training: the inner loop of a federated round.

The loop is written out instead of using ``transformers.Trainer`` because it
runs once per client per round on a model shared by all clients, and because
federated algorithms change its innards (the FedProx proximal term, the
SCAFFOLD correction). It takes the Trainer's argument names so configs read the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from transformers import get_scheduler

from fedunlearn.data.collator import pad_batch
from fedunlearn.federated.aggregation.base import ClientUpdate
from fedunlearn.federated.aggregation.scaffold import CONTROL_DELTA_KEY, client_correction, update_client_control
from fedunlearn.federated.state import get_trainable_state, load_trainable_state


@dataclass
class TrainingArgs:
    """Local training settings, named as in ``transformers.TrainingArguments``."""

    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 1.0
    max_steps: int = -1  # optimizer steps per round; overrides num_train_epochs when > 0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    lr_scheduler_type: str = "constant"
    max_grad_norm: float = 1.0
    bf16: bool = False
    seed: int = 0
    optim: str = "adamw_torch"

    @classmethod
    def from_config(cls, args: Mapping[str, Any] | None) -> TrainingArgs:
        """Build from a config mapping; keys this loop does not use are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(args or {}).items() if k in known}
        result = cls(**values)
        if result.optim != "adamw_torch":
            raise ValueError(f"unsupported trainer.args.optim {result.optim!r}: only 'adamw_torch' is implemented")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(result, name) < 1:
                raise ValueError(f"trainer.args.{name} must be >= 1, got {getattr(result, name)}")
        if result.learning_rate <= 0:
            raise ValueError(f"trainer.args.learning_rate must be > 0, got {result.learning_rate}")
        if result.max_steps <= 0 and result.num_train_epochs <= 0:
            raise ValueError("set trainer.args.num_train_epochs > 0 or trainer.args.max_steps > 0")
        return result


@dataclass
class Client:
    """A federated client: its data streams, its objective and its aggregation weight.

    ``streams`` maps a stream name (``train``, or ``forget`` and ``retain``) to
    tokenised examples; ``anchor`` is the stream whose passes count as epochs;
    ``role`` (``train``, ``retain`` or ``unlearn``) is recorded in the history.
    """

    client_id: int
    streams: dict[str, list[dict]]
    anchor: str
    objective: Any
    args: TrainingArgs
    num_examples: int
    role: str = "train"


def run_client_round(
    model: torch.nn.Module,
    client: Client,
    global_state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    server_round: int,
    seed: int,
    pad_token_id: int,
    progress=None,
    step_hook=None,
    client_state: dict | None = None,
) -> ClientUpdate:
    """One client's part of a round, the same in every runtime.

    Loads the global state into the model's trainable parameters, trains on
    the client's streams with the round's ``config`` (what the server's
    ``configure_round`` sent), and returns the trained state. The client
    trains with seed ``seed + 1000 * server_round + client_id``. ``step_hook``
    is passed to ``train_locally``.

    Config entries read here: ``proximal_mu`` (FedProx), ``lr_scale`` (this
    round's factor on ``learning_rate``, default 1) and ``scaffold_control``
    (SCAFFOLD's server control variate). ``client_state`` is a dict that the
    runtime keeps for this client across rounds and resumed runs; SCAFFOLD
    stores the client control variate there and returns its change in
    ``extra_states["control_delta"]`` (see ``aggregation/scaffold.py``).
    """
    load_trainable_state(model, global_state)
    args = client.args
    lr_scale = float(config.get("lr_scale", 1.0))
    if lr_scale != 1.0:
        args = dataclasses.replace(args, learning_rate=args.learning_rate * lr_scale)
    correction = client_correction(config, client_state, global_state)

    metrics = train_locally(
        model, client.streams, client.anchor, client.objective, args,
        seed=seed + 1000 * server_round + client.client_id, pad_token_id=pad_token_id,
        proximal_mu=float(config.get("proximal_mu", 0.0)), progress=progress, step_hook=step_hook,
        control_correction=None if correction is None else list(correction.values()),
    )
    state = get_trainable_state(model)

    extra_states = {}
    if correction is not None:
        learning_rate_sum = metrics.pop("learning_rate_sum")
        extra_states[CONTROL_DELTA_KEY] = update_client_control(
            client_state, correction, global_state, state, learning_rate_sum
        )
    return ClientUpdate(client.client_id, state, client.num_examples, metrics, client.role, extra_states)


def batch_loader(
    streams: Mapping[str, list[dict]], anchor: str, batch_size: int, total: int, generator: torch.Generator, pad_token_id: int
):
    """Yield ``total`` dict batches ``{stream: padded batch}``, reshuffling the anchor stream each pass.

    Each anchor batch is paired with a batch drawn at random (with replacement)
    from every other stream, as OpenUnlearning pairs forget and retain examples.
    """
    anchor_examples = streams[anchor]
    emitted = 0
    while emitted < total:
        order = torch.randperm(len(anchor_examples), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            if emitted == total:
                return
            batch = {anchor: pad_batch([anchor_examples[i] for i in order[start : start + batch_size]], pad_token_id)}
            for name, examples in streams.items():
                if name != anchor:
                    picks = torch.randint(len(examples), (min(batch_size, len(examples)),), generator=generator).tolist()
                    batch[name] = pad_batch([examples[i] for i in picks], pad_token_id)
            emitted += 1
            yield batch


def train_locally(
    model: torch.nn.Module,
    streams: Mapping[str, list[dict]],
    anchor: str,
    objective,
    args: TrainingArgs,
    *,
    seed: int,
    pad_token_id: int,
    proximal_mu: float = 0.0,
    progress=None,
    step_hook=None,
    control_correction: Sequence[torch.Tensor] | None = None,
) -> dict[str, float]:
    """Train the model's trainable parameters in place and return loss metrics.

    ``objective.compute_loss(model, batch)`` gives the loss of one dict batch.
    With ``proximal_mu > 0`` the loss gains ``mu/2 * ||w - w_start||^2`` over
    the trainable parameters, ``w_start`` being their values on entry (the
    global state the server sent). Shuffling and dropout draw from ``seed``
    alone, so a client's round is reproducible. ``step_hook(params)``, when
    given, runs after every optimizer step on the list of trainable parameters
    (the projection of projected gradient ascent, for example).

    ``control_correction`` (SCAFFOLD's c − c_i, one tensor per trainable
    parameter in order) is applied after every optimizer step as
    ``w ← w − η_k (c − c_i)``, η_k being that step's learning rate, and the
    metrics then include ``learning_rate_sum`` = Σ_k η_k. With SGD this is the
    paper's step on ``g − c_i + c``; with AdamW the correction is kept out of
    the adaptive moments (decoupled, like AdamW's weight decay, and as
    OpenFedLLM applies it), so it moves the weights by η_k (c − c_i) as in the paper.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    correction = None
    if control_correction is not None:
        correction = [c.to(p.device, p.dtype) for c, p in zip(control_correction, params, strict=True)]
    start = [p.detach().clone() for p in params] if proximal_mu > 0 else None

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    num_batches = count_batches(len(streams[anchor]), args)
    optimizer_steps = math.ceil(num_batches / args.gradient_accumulation_steps)

    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = args.warmup_steps or math.ceil(args.warmup_ratio * optimizer_steps)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=optimizer_steps)

    was_training = model.training
    model.train()
    losses: list[float] = []
    micro = 0
    learning_rate_sum = 0.0
    for batch in batch_loader(streams, anchor, args.per_device_train_batch_size, num_batches, generator, pad_token_id):
        batch = {name: {k: v.to(device) for k, v in b.items()} for name, b in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = objective.compute_loss(model, batch)
        if start is not None:
            loss = loss + proximal_mu / 2 * sum(((p - s) ** 2).sum() for p, s in zip(params, start))
        (loss / args.gradient_accumulation_steps).backward()
        losses.append(loss.item())
        micro += 1
        if micro % args.gradient_accumulation_steps == 0:
            learning_rate_sum += _optimizer_step(params, optimizer, scheduler, args.max_grad_norm, step_hook, correction)
        if progress is not None:
            progress.update(1)
    if micro % args.gradient_accumulation_steps:
        learning_rate_sum += _optimizer_step(params, optimizer, scheduler, args.max_grad_norm, step_hook, correction)
    model.train(was_training)
    metrics = {"loss": sum(losses) / max(len(losses), 1), "steps": micro}
    if correction is not None:
        metrics["learning_rate_sum"] = learning_rate_sum
    return metrics


def count_batches(num_anchor: int, args: TrainingArgs) -> int:
    """Return how many batches ``train_locally`` runs for ``num_anchor`` anchor examples.

    ``max_steps`` counts optimizer steps, so it runs that many times the
    accumulation steps; otherwise a fractional epoch count runs the last pass partly.
    """
    if args.max_steps > 0:
        return args.max_steps * args.gradient_accumulation_steps
    batches_per_epoch = math.ceil(num_anchor / args.per_device_train_batch_size)
    return math.ceil(batches_per_epoch * args.num_train_epochs)


def _optimizer_step(params, optimizer, scheduler, max_grad_norm: float, step_hook=None, correction=None) -> float:
    """Take one optimizer step (then the SCAFFOLD correction and ``step_hook``) and return its learning rate."""
    if max_grad_norm and max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    learning_rate = optimizer.param_groups[0]["lr"]
    optimizer.step()
    if correction is not None:
        with torch.no_grad():
            for param, term in zip(params, correction):
                param.add_(term, alpha=-learning_rate)
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if step_hook is not None:
        with torch.no_grad():
            step_hook(params)
    return learning_rate
