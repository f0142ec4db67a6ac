"""Refusal answers ("I don't know" and its variants) for the IdkDPO and IdkNLL methods.

TOFU's refusal-based methods replace each forget answer with a refusal drawn
from a list of phrasings. The list below is written for this project. The
phrasing of each forget item is drawn with ``random.Random(seed)``, in the
order of the forget examples, so a run's refusals depend only on its seed and
data.
"""

from __future__ import annotations

import random

from fedunlearn.data.template import IGNORE_INDEX

REFUSALS = (
    "I don't know.",
    "I'm not sure.",
    "I have no idea.",
    "I don't have that information.",
    "I can't answer that.",
    "That is not something I know.",
    "I'm afraid I don't know the answer to that.",
    "I have no information about that.",
    "Sorry, I don't know.",
    "I'm unable to answer that question.",
    "I don't have an answer to that.",
    "That's beyond what I know.",
    "I couldn't tell you.",
    "I'm not able to provide that information.",
    "I don't recall anything about that.",
    "I lack the knowledge to answer this.",
    "Unfortunately, I don't know.",
    "I have no knowledge of that.",
    "I can't say.",
    "My knowledge doesn't cover that.",
    "I'm not familiar with that.",
    "I don't have any details on that.",
    "I'm uncertain about that.",
    "That's a question I can't answer.",
    "I have nothing to say about that.",
    "No idea, sorry.",
    "I don't know anything about this.",
    "That information is unknown to me.",
    "I'm not in a position to answer that.",
    "I wish I could help, but I don't know.",
)


def refusal_examples(forget_examples: list[dict], tokenizer, max_length: int, seed: int) -> list[dict]:
    """Return a copy of each forget example whose answer is a refusal phrasing.

    Each copy keeps the example's prompt tokens (every position before the
    first answer label) and appends the tokenised refusal and the EOS token, as
    ``data.template.tokenize_qa`` builds an answer, truncated to ``max_length``.
    """
    rng = random.Random(seed)
    examples = []
    for example in forget_examples:
        prompt_length = next((i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX), len(example["labels"]))
        prompt_ids = list(example["input_ids"][:prompt_length])
        answer_ids = tokenizer(rng.choice(REFUSALS), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        answer_ids = answer_ids[: max_length - prompt_length]
        examples.append({
            "input_ids": prompt_ids + answer_ids,
            "attention_mask": [1] * (prompt_length + len(answer_ids)),
            "labels": [IGNORE_INDEX] * prompt_length + answer_ids,
        })
    return examples
