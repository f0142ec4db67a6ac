"""Per-answer negative log-likelihood of a causal LM, the input of every TOFU probability metric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa


def answer_nll(
    model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    answers: Sequence[str],
    template_args: Mapping[str, Any],
    batch_size: int = 16,
    max_length: int = 512,
    show_progress: bool = False,
    autocast_dtype: torch.dtype | None = None,
    desc: str = "Scoring answers",
) -> list[dict[str, float]]:
    """Compute the negative log-likelihood of each answer given its question.

    Each pair is formatted with ``template_args`` and tokenised by
    ``tokenize_qa``, so the answer ends with EOS and a pair longer than
    ``max_length`` loses the end of its answer. The loss of token ``t`` is
    ``-log p(x_t | x_<t)`` and counts only at answer positions: prompt and
    padding positions do not contribute.

    Returns one dict per pair, in input order: ``sum_loss`` (nats), ``num_tokens``
    and ``avg_loss = sum_loss / num_tokens``.

    Pairs are sorted by length and right-padded into batches of ``batch_size``.
    The model runs under ``torch.no_grad()`` in eval mode and on its own device,
    and goes back to train mode afterwards if it was training.
    ``autocast_dtype`` (for example ``torch.bfloat16``) runs the forward pass
    under ``torch.autocast``. The loss itself is always computed in float32.
    ``desc`` labels the progress bar that ``show_progress`` turns on.
    """
    if len(questions) != len(answers):
        raise ValueError(f"got {len(questions)} questions but {len(answers)} answers: pass one answer per question")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token before scoring")

    examples = [tokenize_qa(tokenizer, q, a, template_args, max_length) for q, a in zip(questions, answers)]
    # Longest first, so that a batch too large for memory fails at once rather than at the end.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]), reverse=True)
    device = next(model.parameters()).device
    results: list[dict[str, float] | None] = [None] * len(examples)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(examples), desc=desc, disable=not show_progress) as progress:
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                batch = pad_batch([examples[i] for i in indices], pad_token_id, padding_side="right")
                batch = {key: value.to(device) for key, value in batch.items()}
                sum_losses, num_tokens = _answer_losses(model, batch, autocast_dtype, device)
                for row, index in enumerate(indices):
                    total, count = sum_losses[row].item(), int(num_tokens[row].item())
                    results[index] = {"avg_loss": total / count, "sum_loss": total, "num_tokens": count}
                progress.update(len(indices))
    finally:
        if was_training:
            model.train()
    return results


def _answer_losses(model, batch, autocast_dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the summed answer-token loss and the answer-token count of each row."""
    with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Position t predicts token t + 1, so drop the last logit and the first label.
    logits = logits[:, :-1, :].float()
    targets = batch["labels"][:, 1:]
    token_losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return token_losses.sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1)
