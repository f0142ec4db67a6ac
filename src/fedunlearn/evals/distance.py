"""Distance between two models' next-token distributions on the same sequences.

Used to compare an unlearned model with the model retrained without the
forget data: the closer the distributions on forget and retain data, the
closer unlearning came to retraining.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX
from fedunlearn.evals.scoring import POSITION_CHUNK, target_logits


def next_token_kl(
    model: torch.nn.Module,
    reference_model: torch.nn.Module,
    examples: Sequence[Mapping[str, list[int]]],
    pad_token_id: int,
    batch_size: int = 16,
    show_progress: bool = False,
    desc: str = "KL to reference",
) -> list[float]:
    """Return, per example, the mean over its target positions of ``KL(p_ref(. | x_<t) || p(. | x_<t))``.

    ``KL(q || p) = sum_v q(v) (log q(v) - log p(v))`` in nats, where ``q`` is
    ``reference_model``'s next-token distribution (for example the retrained
    model) and ``p`` is ``model``'s. Target positions are labels other than
    ``IGNORE_INDEX``. Both models must share the tokenizer. They run in eval
    mode under ``torch.no_grad()``, each on its own device, and the KL is
    computed in float32 on ``model``'s device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]), reverse=True)
    device = next(model.parameters()).device
    reference_device = next(reference_model.parameters()).device
    results: list[float | None] = [None] * len(examples)

    modes = (model.training, reference_model.training)
    model.eval()
    reference_model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(examples), desc=desc, disable=not show_progress) as progress:
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                batch = pad_batch([examples[i] for i in indices], pad_token_id, padding_side="right")
                mask = batch["labels"][:, 1:] != IGNORE_INDEX
                logits = _target_logits(model, batch, mask, device)
                reference_logits = _target_logits(reference_model, batch, mask, reference_device).to(device)
                kl = _position_kl(logits, reference_logits)
                for index, row_kl in zip(indices, kl.split(mask.sum(dim=1).tolist())):
                    results[index] = float(row_kl.mean())
                progress.update(len(indices))
    finally:
        model.train(modes[0])
        reference_model.train(modes[1])
    return results


def _target_logits(model, batch, mask, device) -> torch.Tensor:
    """Return the logits at the target positions of every row, in row order: shape (targets, vocab)."""
    batch = {key: value.to(device) for key, value in batch.items()}
    logits, offset = target_logits(model, batch, mask.to(device), None, device)
    return logits[:, :-1][mask[:, offset:].to(device)]


def _position_kl(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    parts = []
    for chunk, reference_chunk in zip(logits.split(POSITION_CHUNK), reference_logits.split(POSITION_CHUNK)):
        log_p = F.log_softmax(chunk.float(), dim=-1)
        log_q = F.log_softmax(reference_chunk.float(), dim=-1)
        # kl_div(input=log p, target=log q, log_target=True) is q * (log q - log p) per entry.
        parts.append(F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(dim=-1))
    return torch.cat(parts)
