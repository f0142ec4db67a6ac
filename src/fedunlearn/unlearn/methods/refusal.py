"""Refusal answers of the forget examples, shared by IdkNLL and IdkDPO."""

from __future__ import annotations

import torch

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.idk import refusal_examples
from fedunlearn.unlearn.methods.base import UnlearnContext


class RefusalAnswers:
    """The refusal copy of each forget example (``data.idk``), looked up by the forget batch's ``forget_index``.

    Building it numbers the forget examples with the key ``forget_index``, which the
    collator stacks into each forget batch.
    """

    def __init__(self, forget_examples: list[dict], context: UnlearnContext):
        self.examples = refusal_examples(forget_examples, context.tokenizer, context.max_length, context.seed)
        self.pad_token_id = context.pad_token_id
        for index, example in enumerate(forget_examples):
            example["forget_index"] = index

    def batch(self, forget: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return the padded refusal batch matching the forget batch ``forget``, on its device."""
        picked = [self.examples[i] for i in forget["forget_index"].tolist()]
        return {k: v.to(forget["input_ids"].device) for k, v in pad_batch(picked, self.pad_token_id).items()}


def require(answers: RefusalAnswers | None, method: str, forget: dict[str, torch.Tensor]) -> RefusalAnswers:
    """Return ``answers``, or raise when ``prepare`` has not built them for this forget batch."""
    if answers is None or "forget_index" not in forget:
        raise RuntimeError(f"{method}.prepare must run before training: the forget batch has no refusal answers")
    return answers
