"""Causal-LM losses over answer tokens, shared by fine-tuning and unlearning.

Labels are ``-100`` on prompt and padding positions (see ``data.template``),
so every loss here counts answer tokens only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedunlearn.data.template import IGNORE_INDEX


def token_nll(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-token NLL ``[batch, seq-1]`` and the answer-token mask, shifted for next-token prediction."""
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    labels = inputs["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    nll = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), labels.masked_fill(~mask, 0), reduction="none"
    )
    return nll * mask, mask


def nll_loss(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return the mean NLL over all answer tokens of the batch (the Trainer's causal-LM loss)."""
    nll, mask = token_nll(model, inputs)
    return nll.sum() / mask.sum().clamp(min=1)


def sequence_nll(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return each sequence's summed answer-token NLL, ``-log p(answer | prompt)``, shape ``[batch]``."""
    nll, _ = token_nll(model, inputs)
    return nll.sum(dim=1)


class FineTune:
    """Supervised fine-tuning: ``nll_loss`` on the ``train`` stream."""

    anchor = "train"

    def compute_loss(self, model, batch: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        return nll_loss(model, batch["train"])
