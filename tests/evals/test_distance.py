import copy

import pytest
import torch

from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa
from fedunlearn.evals.distance import next_token_kl

CHAT = {"apply_chat_template": True}
PAIRS = [
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("In which city was Basil Mahfouz Al-Kuwaiti born?", "He was born in Kuwait City, Kuwait."),
]


@pytest.fixture
def shifted_model(tiny_llama):
    """A copy of the tiny model with noise on its output layer, so its distributions differ."""
    other = copy.deepcopy(tiny_llama)
    torch.manual_seed(1)
    with torch.no_grad():
        other.lm_head.weight.add_(torch.randn_like(other.lm_head.weight) * 0.5)
    return other


def manual_kl(model, reference, example):
    """Mean over answer positions of sum_v q(v) (log q(v) - log p(v)), in float64."""
    ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        log_p = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        log_q = torch.log_softmax(reference(input_ids=ids).logits[0].double(), dim=-1)
    values = [
        float((log_q[t - 1].exp() * (log_q[t - 1] - log_p[t - 1])).sum())
        for t, label in enumerate(example["labels"])
        if label != IGNORE_INDEX
    ]
    return sum(values) / len(values)


def test_kl_of_model_to_itself_is_zero(tiny_llama, tokenizer):
    examples = [tokenize_qa(tokenizer, q, a, CHAT) for q, a in PAIRS]

    assert next_token_kl(tiny_llama, tiny_llama, examples, tokenizer.pad_token_id) == pytest.approx([0, 0], abs=1e-6)


def test_kl_matches_manual_batched(tiny_llama, shifted_model, tokenizer):
    examples = [tokenize_qa(tokenizer, q, a, CHAT) for q, a in PAIRS]
    expected = [manual_kl(tiny_llama, shifted_model, example) for example in examples]

    got = next_token_kl(tiny_llama, shifted_model, examples, tokenizer.pad_token_id, batch_size=2)

    assert got == pytest.approx(expected, rel=1e-4)
    assert min(got) > 0


def test_kl_direction_is_reference_first(tiny_llama, shifted_model, tokenizer):
    [example] = [tokenize_qa(tokenizer, *PAIRS[0], CHAT)]

    [forward] = next_token_kl(tiny_llama, shifted_model, [example], tokenizer.pad_token_id)

    assert forward == pytest.approx(manual_kl(tiny_llama, shifted_model, example), rel=1e-4)
    assert forward != pytest.approx(manual_kl(shifted_model, tiny_llama, example), rel=1e-3)
