"""``protocol=pga``: projected gradient ascent near the other clients' average, then recovery rounds.

Halimi, Kadhe, Rawat and Baracaldo, 2022, "Federated Unlearning: How to
Efficiently Erase a Client in FL?" (arXiv:2207.05521).

1. Reference model. From the last stored round ``T`` the server computes the
   average of the other clients' models::

       w_ref = (n * w_T - n_k * w_k^T) / (n - n_k)

   where ``w_k^T = w_{T-1} + U_k^T`` is the requesting client's model, ``n_k``
   its records and ``n`` those of every participant of round ``T``. It is
   computed as ``w_{T-1} + sum_{j != k} n_j U_j^T / (n - n_k)``, the same
   value under FedAvg, which stays the other clients' average under server
   optimisers too.
2. Radius. ``delta = pga_radius``, or, as in the authors' code, the square
   root of a third of the mean squared L2 distance from ``w_ref`` to
   ``pga_random_models`` freshly initialised models. With LoRA these are
   fresh adapters (``lora_A`` drawn as PEFT initialises it, ``lora_B = 0``).
3. Unlearning. The requesting client starts from ``w_ref`` and runs the
   unlearning method (gradient ascent in the paper) on its forget records for
   ``unlearn_epochs``. After every optimizer step the trainable weights are
   projected onto the ball: if ``||w - w_ref|| > delta`` then
   ``w <- w_ref + delta * (w - w_ref) / ||w - w_ref||``.
4. Recovery. The server takes the client's model as the global model and
   runs ``recovery_rounds`` rounds of fine-tuning on the remaining records
   (``retain_epochs`` local epochs each).

The paper also stops the ascent early once the model's accuracy on clean data
falls below a threshold. Classification accuracy has no counterpart for a
language model here, so the ascent always runs ``unlearn_epochs``.

Cost: the requesting client's ascent (one state each way) and the recovery
rounds; the server reads ``w_{T-1}`` and the other clients' updates of round ``T``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import OrderedDict

import torch

from fedunlearn.federated.client import run_client_round
from fedunlearn.federated.history import History
from fedunlearn.federated.state import get_trainable_state, load_trainable_state, state_nbytes
from fedunlearn.trainers.finetune import finetune_clients
from fedunlearn.trainers.unlearn import unlearning_client
from fedunlearn.unlearn.protocols.base import Protocol, UnlearningJob


def reference_state(history: History, client_id: int, server_round: int) -> OrderedDict[str, torch.Tensor]:
    """Return ``w_{T-1} + sum_{j != k} n_j U_j^T / (n - n_k)``: the other clients' average model of round ``T``."""
    record = history.records()[server_round]
    examples = {int(k): n for k, n in record["num_examples"].items() if int(k) != client_id}
    if not examples:
        raise ValueError(f"round {server_round} had no participant other than client {client_id}: "
                         "there is no reference model to project around; use another protocol")
    total = sum(examples.values())
    state = OrderedDict(history.load_global(server_round - 1))
    for other, n in examples.items():
        update = history.load_update(server_round, other)
        for name in state:
            state[name] += (n / total) * update[name]
    return state


def squared_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Return ``||a - b||^2`` over all tensors."""
    return float(sum(((a[name] - b[name]).double() ** 2).sum() for name in a))


@torch.no_grad()
def random_adapter_states(model: torch.nn.Module, count: int, seed: int) -> list[OrderedDict[str, torch.Tensor]]:
    """Return the trainable states of ``count`` freshly initialised LoRA adapters; the model's own is kept.

    Each adapter is initialised by PEFT's ``reset_lora_parameters`` with the
    adapter's ``init_lora_weights`` setting, drawing from seed ``seed + i``.
    Every LoRA weight is restored afterwards, frozen ones too (``lora_A``
    under FFA-LoRA).
    """
    from peft.tuners.lora import LoraLayer

    layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
    if not layers:
        raise ValueError("pga_radius=null measures the distance to random LoRA adapters, but the model has no LoRA "
                         "layers: set trainer.method_args.pga_radius")
    lora_weights = {name: p for name, p in model.named_parameters() if "lora_" in name}
    saved = {name: p.detach().clone() for name, p in lora_weights.items()}
    states = []
    with torch.random.fork_rng(devices=[]):
        for i in range(count):
            torch.manual_seed(seed + i)
            for layer in layers:
                for adapter in layer.lora_A:
                    layer.reset_lora_parameters(adapter, model.peft_config[adapter].init_lora_weights)
            states.append(get_trainable_state(model))
    for name, param in lora_weights.items():
        param.copy_(saved[name])
    return states


def pga_radius(reference: dict[str, torch.Tensor], random_states: list[dict[str, torch.Tensor]]) -> float:
    """Return ``sqrt(mean_r ||w_ref - w_r||^2 / 3)``, the radius of the authors' code."""
    if not random_states:
        raise ValueError("trainer.method_args.pga_random_models must be >= 1 when pga_radius is null")
    return math.sqrt(sum(squared_distance(reference, r) for r in random_states) / len(random_states) / 3)


class BallProjection:
    """A ``step_hook`` that projects the trainable weights onto the L2 ball of ``radius`` around ``center``.

    ``center`` lists tensors in the order of the model's trainable parameters.
    ``projections`` counts the steps that left the ball.
    """

    def __init__(self, center: list[torch.Tensor], radius: float):
        if radius <= 0:
            raise ValueError(f"trainer.method_args.pga_radius must be > 0, got {radius}")
        self.center = center
        self.radius = radius
        self.projections = 0

    def __call__(self, params: list[torch.Tensor]) -> None:
        diffs = [p - c for p, c in zip(params, self.center)]
        norm = math.sqrt(sum(float((d.double() ** 2).sum()) for d in diffs))
        if norm > self.radius:
            self.projections += 1
            for p, c, d in zip(params, self.center, diffs):
                p.copy_(c + d * (self.radius / norm))


class ProjectedGradientAscent(Protocol):
    name = "pga"
    uses_method = True

    def run(self, job: UnlearningJob):
        source = job.require_source(self.name)
        history = source.require_history(self.name)
        last_round = source.completed_rounds()
        rounds = int(job.method_args.get("recovery_rounds", 1))
        if rounds < 0:
            raise ValueError(f"trainer.method_args.recovery_rounds must be >= 0, got {rounds}")
        details = {"reference_round": last_round, "recovery_rounds": rounds}

        def unlearned():
            details.update(self._ascend(job, history, last_round))
            return details.pop("state")

        args = dataclasses.replace(job.args, num_train_epochs=float(job.method_args.get("retain_epochs", 1)))
        clients = finetune_clients(job.remaining_data(), job.examples, args)
        return job.fit(clients, rounds, unlearned, phase="recovery"), details

    def _ascend(self, job: UnlearningJob, history: History, last_round: int) -> dict:
        """Run the requesting client's projected ascent from ``w_ref`` and return its state and measurements."""
        started = time.perf_counter()
        target = job.request.target
        reference = reference_state(history, target, last_round)
        radius = job.method_args.get("pga_radius")
        if radius is None:
            count = int(job.method_args.get("pga_random_models", 10))
            radius = pga_radius(reference, random_adapter_states(job.model, count, job.args.seed))
        reads = len(history.records()[last_round]["num_examples"])  # w_{T-1} and the other clients' updates

        load_trainable_state(job.model, reference)
        job.prepare_method()  # the method's reference model is w_ref, where the ascent starts
        center = [reference[name].to(p.device, p.dtype) for name, p in job.model.named_parameters() if p.requires_grad]
        projection = BallProjection(center, float(radius))
        client = unlearning_client(job.data, job.examples, target, target, job.method, job.method_args, job.args,
                                   forget_ids=set(job.request.forget_ids))
        server_seconds = time.perf_counter() - started
        update = run_client_round(job.model, client, reference, {}, server_round=0, seed=job.args.seed,
                                  pad_token_id=job.tokenizer.pad_token_id, step_hook=projection)
        job.meter.add("projected_ascent", "client", client_steps=update.metrics["steps"],
                      client_seconds=time.perf_counter() - started - server_seconds,
                      bytes_to_clients=state_nbytes(reference), bytes_from_clients=state_nbytes(update.state),
                      history_states_read=reads)
        return {
            "state": update.state,
            "radius": float(radius),
            "projected_steps": projection.projections,
            "distance_finetuned_to_reference": math.sqrt(squared_distance(job.global_state, reference)),
            "distance_unlearned_to_reference": math.sqrt(squared_distance(update.state, reference)),
            "ascent_loss": update.metrics["loss"],
        }
