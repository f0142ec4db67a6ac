"""Causal-LM losses over answer tokens, shared by fine-tuning and unlearning.

Labels are ``-100`` on prompt and padding positions (see ``data.template``),
so every loss here counts answer tokens only. Position ``t`` of the shifted
tensors holds the logits that predict token ``t + 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedunlearn.data.template import IGNORE_INDEX


def answer_logits(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the model and return the shifted float32 logits ``[batch, seq-1, vocab]``, next-token labels and answer mask."""
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    labels = inputs["labels"][:, 1:]
    return logits[:, :-1].float(), labels, labels != IGNORE_INDEX


def next_token_nll(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``-log p(label)`` at each shifted position, 0 where ``mask`` is false."""
    nll = F.cross_entropy(logits.transpose(1, 2), labels.masked_fill(~mask, 0), reduction="none")
    return nll * mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the mean of ``values`` over the positions where ``mask`` is true (0 when there are none)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def token_nll(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-token NLL ``[batch, seq-1]`` and the answer-token mask, shifted for next-token prediction."""
    logits, labels, mask = answer_logits(model, inputs)
    return next_token_nll(logits, labels, mask), mask


def nll_loss(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return the mean NLL over all answer tokens of the batch (the Trainer's causal-LM loss)."""
    nll, mask = token_nll(model, inputs)
    return masked_mean(nll, mask)


def sequence_nll(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return each sequence's summed answer-token NLL, ``-log p(answer | prompt)``, shape ``[batch]``."""
    nll, _ = token_nll(model, inputs)
    return nll.sum(dim=1)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the mean over answer positions of ``-sum_v q_v log softmax(logits)_v`` for target distributions ``q``."""
    per_token = -(target_probs * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    return masked_mean(per_token, mask)


def kl_divergence(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the mean over answer positions of ``KL(p_ref || p) = sum_v p_ref (log p_ref - log p)``."""
    ref_log_probs = F.log_softmax(ref_logits, dim=-1)
    per_token = (ref_log_probs.exp() * (ref_log_probs - F.log_softmax(logits, dim=-1))).sum(dim=-1)
    return masked_mean(per_token, mask)


class FineTune:
    """Supervised fine-tuning: ``nll_loss`` on the ``train`` stream."""

    anchor = "train"

    def compute_loss(self, model, batch: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        return nll_loss(model, batch["train"])
