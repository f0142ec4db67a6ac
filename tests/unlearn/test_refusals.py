"""Refusal answers for IdkDPO and IdkNLL: drawn from the seed, appended to each forget prompt."""

import random

from fedunlearn.data.idk import REFUSALS, refusal_examples
from fedunlearn.data.template import IGNORE_INDEX


def prompt_length(example):
    return next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)


def test_refusal_list():
    assert 20 <= len(REFUSALS) <= 50
    assert len(set(REFUSALS)) == len(REFUSALS)


def test_refusal_keeps_prompt(forget_examples, tokenizer):
    refusals = refusal_examples(forget_examples, tokenizer, 512, seed=0)

    for example, refusal in zip(forget_examples, refusals):
        n = prompt_length(example)
        assert refusal["input_ids"][:n] == example["input_ids"][:n]
        assert refusal["labels"][:n] == [IGNORE_INDEX] * n
        assert refusal["labels"][n:] == refusal["input_ids"][n:]
        assert refusal["attention_mask"] == [1] * len(refusal["input_ids"])


def test_refusal_answer_from_seed(forget_examples, tokenizer):
    rng = random.Random(7)
    expected = [rng.choice(REFUSALS) for _ in forget_examples]

    refusals = refusal_examples(forget_examples, tokenizer, 512, seed=7)

    for example, refusal, text in zip(forget_examples, refusals, expected):
        answer = refusal["input_ids"][prompt_length(example):]
        assert answer[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(answer[:-1]) == text


def test_refusal_deterministic(forget_examples, tokenizer):
    first = refusal_examples(forget_examples, tokenizer, 512, seed=3)
    second = refusal_examples(forget_examples, tokenizer, 512, seed=3)

    assert first == second


def test_refusal_seed_changes_choice(forget_examples, tokenizer):
    draws = {tuple(tuple(r["input_ids"]) for r in refusal_examples(forget_examples, tokenizer, 512, seed=s))
             for s in range(5)}

    assert len(draws) > 1


def test_refusal_truncated_to_max_length(forget_examples, tokenizer):
    n = prompt_length(forget_examples[0])

    refusal = refusal_examples(forget_examples[:1], tokenizer, n + 2, seed=0)[0]

    assert len(refusal["input_ids"]) == n + 2
    assert refusal["labels"][n:] == refusal["input_ids"][n:]


def test_refusal_leaves_forget_examples(forget_examples, tokenizer):
    before = [dict(e) for e in forget_examples]

    refusal_examples(forget_examples, tokenizer, 512, seed=0)

    assert forget_examples == before
