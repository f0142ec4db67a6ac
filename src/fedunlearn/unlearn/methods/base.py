"""The interface of an unlearning method: the loss the requesting client minimises.

A method reads a dict batch with a ``forget`` stream and, when ``needs_retain``
is true, a ``retain`` stream of the client's own retained examples. Each stream
is a padded batch (``input_ids``, ``attention_mask``, ``labels`` with ``-100``
on prompt and padding positions, see ``data.collator``), and every loss here
averages over answer tokens only.

``prepare(model, forget_examples, context)`` runs once before the federation
starts, with the model in its pre-unlearning state (the global model that the
run loaded). It may add numeric keys to the forget examples (``ref_nll``,
``forget_index``), which the collator stacks into the forget batch.

The reference model
-------------------
Methods that compare against a reference (NPO, IdkDPO, UNDIAL, RMU and every
``retain_loss_type=KL``) use the model *at the start of unlearning*. With LoRA
that is the base model plus the fine-tuned adapter that the run loaded, so the
base with its adapter disabled would be the pre-fine-tuning model, which is the
wrong reference. The reference is therefore kept without a second copy of the
base:

* Quantities over the fixed forget set (the sequence NLLs of NPO and IdkDPO)
  are computed once in ``prepare`` and stored on the examples, so training
  runs no reference forward pass for them.
* Per-batch reference outputs (the teacher logits of UNDIAL, the retain logits
  of the KL term, the retain activations of RMU) come from ``Reference``, which
  stores a copy of the trainable state only (the adapter, a few MB) and runs
  the shared model with that state substituted through
  ``torch.func.functional_call``. The model's own parameters are never written,
  so the autograd graph of the current step stays valid.
* Without LoRA every parameter is trainable, and substituting all of them would
  cost as much memory as a copy, so ``Reference`` keeps a deep copy of the
  model (eval mode, no gradients). This doubles the model memory for full
  fine-tuning.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call

from fedunlearn.losses import answer_logits, kl_divergence, nll_loss

RETAIN_LOSS_TYPES = ("NLL", "KL")


@dataclass(frozen=True)
class UnlearnContext:
    """What ``prepare`` may need beyond the model.

    Args:
        tokenizer: the run's tokenizer (refusal answers of IdkDPO and IdkNLL are tokenised with it).
        max_length: maximum tokens of a question-answer pair (``data.max_length``).
        seed: the run's seed (``trainer.args.seed``); the refusal phrasings and RMU's control vector are drawn from it.
    """

    tokenizer: Any
    max_length: int
    seed: int

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id


class UnlearningMethod:
    """Base class of unlearning methods."""

    anchor = "forget"
    needs_retain = False

    def prepare(self, model, forget_examples: list[dict], context: UnlearnContext) -> None:
        """Compute whatever the method needs from the model before unlearning (nothing by default)."""

    def compute_loss(self, model, batch: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        raise NotImplementedError


class Reference:
    """The model as it was when ``Reference(model)`` ran, for forward passes without gradients.

    With some parameters frozen (LoRA), only the trainable ones are copied and
    ``__call__`` substitutes them into the model it is given. With every
    parameter trainable, the whole model is deep-copied.
    """

    def __init__(self, model: torch.nn.Module):
        params = dict(model.named_parameters())
        trainable = {name: p for name, p in params.items() if p.requires_grad}
        self.model_copy = None
        self.state: dict[str, torch.Tensor] = {}
        if len(trainable) < len(params):
            self.state = {name: p.detach().clone() for name, p in trainable.items()}
        else:
            self.model_copy = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]):
        """Run the reference on ``input_ids`` and ``attention_mask`` and return the model output (eval mode)."""
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        if self.model_copy is not None:
            return self.model_copy(**kwargs)
        was_training = model.training
        model.eval()  # no dropout in the reference, as a separate eval-mode copy would behave
        try:
            return functional_call(model, self.state, args=(), kwargs=kwargs)
        finally:
            model.train(was_training)

    def nbytes(self) -> int:
        """Return the memory this reference holds beyond the shared model, in bytes."""
        tensors = self.state.values() if self.model_copy is None else self.model_copy.parameters()
        return sum(t.numel() * t.element_size() for t in tensors)


class ForgetRetainMethod(UnlearningMethod):
    """A forget term plus a retain term: ``L = gamma * L_forget + alpha * L_retain``.

    ``L_retain`` (OpenUnlearning's ``retain_loss_type``) is either

    * ``NLL``: the mean NLL over the answer tokens of the retain batch, or
    * ``KL``: the mean over those answer tokens of ``KL(p_ref || p_theta)`` between
      the next-token distributions of the reference (the model at the start of
      unlearning) and the current model. OpenUnlearning averages this KL over
      every position of the batch, prompt and padding included; here only answer
      positions count.

    With ``alpha = 0`` the retain term and the retain stream are dropped.

    Args:
        gamma: weight of the forget term (>= 0).
        alpha: weight of the retain term (>= 0).
        retain_loss_type: ``NLL`` or ``KL``.
    """

    def __init__(self, gamma: float = 1.0, alpha: float = 1.0, retain_loss_type: str = "NLL"):
        name = type(self).__name__
        self.gamma = check_non_negative(name, "gamma", gamma)
        self.alpha = check_non_negative(name, "alpha", alpha)
        if retain_loss_type not in self.retain_loss_types():
            raise ValueError(f"invalid {name} retain_loss_type {retain_loss_type!r}: choose one of {list(self.retain_loss_types())}")
        self.retain_loss_type = retain_loss_type
        self.needs_retain = self.alpha != 0
        self.reference: Reference | None = None

    def retain_loss_types(self) -> tuple[str, ...]:
        return RETAIN_LOSS_TYPES

    def needs_reference(self) -> bool:
        """Return whether ``compute_loss`` runs the reference model (subclasses add their own uses)."""
        return self.needs_retain and self.retain_loss_type == "KL"

    def prepare(self, model, forget_examples, context):
        if self.needs_reference():
            self.reference = Reference(model)

    def compute_loss(self, model, batch):
        loss = self.gamma * self.forget_loss(model, batch["forget"])
        if self.needs_retain:
            loss = loss + self.alpha * self.retain_loss(model, batch["retain"])
        return loss

    def forget_loss(self, model, forget: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def retain_loss(self, model, retain: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.retain_loss_type == "NLL":
            return nll_loss(model, retain)
        ref_logits = self.reference_output(model, retain).logits[:, :-1].float()
        logits, _, mask = answer_logits(model, retain)
        return kl_divergence(logits, ref_logits, mask)

    def reference_output(self, model, inputs: dict[str, torch.Tensor]):
        """Run the reference model on ``inputs``, after checking that ``prepare`` created it."""
        if self.reference is None:
            raise RuntimeError(f"{type(self).__name__}.prepare must run before training: the reference model is missing")
        return self.reference(model, inputs)


def check_non_negative(method: str, key: str, value) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming the key unless it is a number >= 0."""
    number = _as_number(method, key, value, ">= 0")
    if number < 0:
        raise ValueError(f"{method} {key} must be >= 0, got {number}: set trainer.method_args.{key}")
    return number


def check_positive(method: str, key: str, value) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming the key unless it is a number > 0."""
    number = _as_number(method, key, value, "> 0")
    if number <= 0:
        raise ValueError(f"{method} {key} must be > 0, got {number}: set trainer.method_args.{key}")
    return number


def check_integer(method: str, key: str, value, minimum: int) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` naming the key unless it is an integer >= ``minimum``."""
    number = _as_number(method, key, value, f">= {minimum}")
    if isinstance(value, bool) or number != int(number) or number < minimum:
        raise ValueError(f"{method} {key} must be an integer >= {minimum}, got {value}: set trainer.method_args.{key}")
    return int(number)


def _as_number(method: str, key: str, value, requirement: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{method} {key} must be a number {requirement}, got {value!r}: set trainer.method_args.{key}") from None
