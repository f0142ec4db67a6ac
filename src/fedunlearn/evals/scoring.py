"""Per-token statistics of a causal LM on target tokens: the one forward pass behind every likelihood metric.

One pass over a sequence yields, at each target position ``t`` (a label other
than ``IGNORE_INDEX``), the target token's log-probability ``log p(x_t | x_<t)``,
whether greedy decoding would produce ``x_t``, and the mean and variance of
``log p`` under the next-token distribution. Answer probability, truth ratio,
the likelihood-based membership inference attacks and the memorization
metrics are all functions of these arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa
from fedunlearn.evals.metrics.mia import vocab_moments

# Target positions whose full-vocabulary log-softmax is held in memory at once.
POSITION_CHUNK = 1024


@dataclass(frozen=True)
class SequenceScores:
    """Statistics of one sequence's target tokens, one entry per target token in order.

    ``token_logprobs`` are ``log p(x_t | x_<t)`` in nats, ``greedy_match`` is
    True where ``argmax_v p(v | x_<t) == x_t``, and ``vocab_mean`` and ``vocab_var``
    are the mean and variance of ``log p(v)`` under ``p(. | x_<t)`` (the Min-K%++
    statistics). ``target_ids`` are the target token ids.
    """

    target_ids: np.ndarray
    token_logprobs: np.ndarray
    greedy_match: np.ndarray
    vocab_mean: np.ndarray
    vocab_var: np.ndarray

    @property
    def num_tokens(self) -> int:
        return int(self.token_logprobs.size)

    @property
    def sum_loss(self) -> float:
        """The summed negative log-likelihood in nats."""
        return float(-self.token_logprobs.sum())

    @property
    def avg_loss(self) -> float:
        """The mean negative log-likelihood per target token, OpenUnlearning's ``avg_loss``."""
        return self.sum_loss / self.num_tokens


def score_examples(
    model: torch.nn.Module,
    examples: Sequence[Mapping[str, list[int]]],
    pad_token_id: int,
    batch_size: int = 16,
    show_progress: bool = False,
    autocast_dtype: torch.dtype | None = None,
    desc: str = "Scoring",
) -> list[SequenceScores]:
    """Run ``model`` once over each tokenised example and return its ``SequenceScores``, in input order.

    Each example has ``input_ids`` and ``labels`` (``IGNORE_INDEX`` on positions
    that are not scored, which must include the first). Examples are sorted by
    length, longest first, and right-padded into batches of ``batch_size``, so
    batches hold sequences of similar length and a batch too large for memory
    fails at once. Padding positions never count.

    The model runs under ``torch.no_grad()`` in eval mode on its own device and
    goes back to train mode afterwards if it was training. ``autocast_dtype``
    (for example ``torch.bfloat16``) runs the forward pass under
    ``torch.autocast``; without it, the caller's autocast context applies.
    The statistics are always computed in float32.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for index, example in enumerate(examples):
        if not any(label != IGNORE_INDEX for label in example["labels"][1:]):
            raise ValueError(f"example {index} has no target token to score: its labels are all {IGNORE_INDEX}")

    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]), reverse=True)
    device = next(model.parameters()).device
    results: list[SequenceScores | None] = [None] * len(examples)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(examples), desc=desc, disable=not show_progress) as progress:
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                batch = pad_batch([examples[i] for i in indices], pad_token_id, padding_side="right")
                batch = {key: value.to(device) for key, value in batch.items()}
                for index, scores in zip(indices, _batch_scores(model, batch, autocast_dtype, device)):
                    results[index] = scores
                progress.update(len(indices))
    finally:
        if was_training:
            model.train()
    return results


def score_answers(
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
) -> list[SequenceScores]:
    """Score each answer given its question (see ``score_examples``); the answer tokens are the targets.

    Pairs are formatted with ``template_args`` and tokenised by ``tokenize_qa``,
    so each answer ends with EOS and a pair longer than ``max_length`` loses
    the end of its answer.
    """
    if len(questions) != len(answers):
        raise ValueError(f"got {len(questions)} questions but {len(answers)} answers: pass one answer per question")
    examples = [tokenize_qa(tokenizer, q, a, template_args, max_length) for q, a in zip(questions, answers)]
    return score_examples(model, examples, pad_token_id(tokenizer), batch_size, show_progress, autocast_dtype, desc)


def answer_nll(
    model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    answers: Sequence[str],
    template_args: Mapping[str, Any],
    **settings: Any,
) -> list[dict[str, float]]:
    """Compute the negative log-likelihood of each answer given its question.

    ``settings`` are ``score_answers``'s keyword arguments. The loss of token
    ``t`` is ``-log p(x_t | x_<t)`` and counts only at answer positions.
    Returns one dict per pair, in input order: ``sum_loss`` (nats),
    ``num_tokens`` and ``avg_loss = sum_loss / num_tokens``.
    """
    scores = score_answers(model, tokenizer, questions, answers, template_args, **settings)
    return [{"avg_loss": s.avg_loss, "sum_loss": s.sum_loss, "num_tokens": s.num_tokens} for s in scores]


def pad_token_id(tokenizer) -> int:
    """Return the tokenizer's pad token id, or its EOS id when it has no pad token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token first")
    return pad


def target_logits(model, batch, mask, autocast_dtype, device) -> tuple[torch.Tensor, int]:
    """Run ``model`` on a right-padded batch and return ``(logits, offset)``, where ``logits[:, j]`` is position ``offset + j``.

    Only positions from the earliest target position of the batch (``mask`` is
    True at the targets, shifted by one) get logits, through transformers'
    ``logits_to_keep``: the output layer then skips most prompt positions. A
    model whose forward lacks ``logits_to_keep`` gets logits at every position.
    ``autocast_dtype`` runs the forward pass under ``torch.autocast``.
    """
    width = batch["input_ids"].shape[1]
    first_target = int(mask.any(dim=0).float().argmax())
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    # Without autocast_dtype, an autocast context of the caller (eval.tofu.bf16) stays in effect.
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with autocast:
        try:
            logits = model(**inputs, logits_to_keep=width - first_target).logits
        except TypeError:
            logits = model(**inputs).logits
    return logits, width - logits.shape[1]


def _batch_scores(model, batch, autocast_dtype, device) -> list[SequenceScores]:
    # Position t predicts token t + 1, so drop the last logit and the first label.
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    logits, offset = target_logits(model, batch, mask, autocast_dtype, device)
    selected_logits = logits[:, :-1, :][mask[:, offset:]]  # (target positions of all rows in row order, vocab)
    selected_targets = targets[mask]

    columns: dict[str, list[torch.Tensor]] = {"logprob": [], "match": [], "mean": [], "var": []}
    for chunk_logits, chunk_targets in zip(selected_logits.split(POSITION_CHUNK), selected_targets.split(POSITION_CHUNK)):
        log_probs = F.log_softmax(chunk_logits.float(), dim=-1)
        mean, var = vocab_moments(log_probs)
        columns["logprob"].append(log_probs.gather(1, chunk_targets[:, None]).squeeze(1))
        columns["match"].append(log_probs.argmax(dim=-1) == chunk_targets)
        columns["mean"].append(mean)
        columns["var"].append(var)
    arrays = {name: torch.cat(parts).cpu().numpy() for name, parts in columns.items()}
    target_ids = selected_targets.cpu().numpy()

    counts = mask.sum(dim=1).tolist()
    bounds = np.cumsum([0, *counts])
    return [
        SequenceScores(
            target_ids=target_ids[lo:hi],
            token_logprobs=arrays["logprob"][lo:hi].astype(np.float64),
            greedy_match=arrays["match"][lo:hi],
            vocab_mean=arrays["mean"][lo:hi].astype(np.float64),
            vocab_var=arrays["var"][lo:hi].astype(np.float64),
        )
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
