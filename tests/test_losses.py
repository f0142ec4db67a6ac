import math

import pytest
import torch

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa
from fedunlearn.data.tofu import load_split
from fedunlearn.losses import (
    FineTune,
    answer_logits,
    kl_divergence,
    masked_mean,
    next_token_nll,
    nll_loss,
    sequence_nll,
    soft_cross_entropy,
    token_nll,
)

CHAT = {"apply_chat_template": True}


@pytest.fixture(scope="module")
def model(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()


@pytest.fixture(scope="module")
def examples(tokenizer, tofu_data_dir):
    """Two forget01 pairs of different lengths, so the shorter one is padded in a batch."""
    records = load_split("forget01", tofu_data_dir)[:2]
    examples = [tokenize_qa(tokenizer, r["question"], r["answer"], CHAT) for r in records]
    assert len(examples[0]["input_ids"]) != len(examples[1]["input_ids"])
    return examples


@pytest.fixture(scope="module")
def batch(examples, tokenizer):
    return pad_batch(examples, tokenizer.pad_token_id)


def hand_answer_nll(model, batch):
    """Return, per sequence, the list of -log p(answer token | preceding tokens), written as a loop.

    The token at position t is predicted by the logits at t - 1. Positions labelled -100 (the
    prompt and the padding) are skipped.
    """
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    terms = []
    for b in range(batch["labels"].shape[0]):
        row = []
        for t in range(1, batch["labels"].shape[1]):
            label = int(batch["labels"][b, t])
            if label != IGNORE_INDEX:
                row.append(-float(log_probs[b, t - 1, label]))
        terms.append(row)
    return terms


@pytest.fixture(scope="module")
def terms(model, batch):
    return hand_answer_nll(model, batch)


def answer_length(example):
    return sum(label != IGNORE_INDEX for label in example["labels"])


def test_hand_terms_cover_answers(terms, examples):
    # The hand computation itself skips exactly the prompt and the padding.
    assert [len(row) for row in terms] == [answer_length(e) for e in examples]


def test_nll_loss_by_hand(model, batch, terms):
    expected = sum(sum(row) for row in terms) / sum(len(row) for row in terms)

    with torch.no_grad():
        loss = nll_loss(model, batch)

    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_sequence_nll_by_hand(model, batch, terms):
    with torch.no_grad():
        per_sequence = sequence_nll(model, batch)

    assert per_sequence.shape == (2,)
    for b in range(2):
        assert float(per_sequence[b]) == pytest.approx(sum(terms[b]), rel=1e-5), b


def test_token_nll_mask(model, batch, examples):
    with torch.no_grad():
        nll, mask = token_nll(model, batch)

    assert nll.shape == (2, batch["input_ids"].shape[1] - 1)
    assert mask.sum(dim=1).tolist() == [answer_length(e) for e in examples]
    assert torch.all(nll[~mask] == 0)


def test_sequence_nll_ignores_padding(model, batch, examples, tokenizer):
    # A sequence scores the same alone as padded in a batch, so padding adds nothing.
    shorter = min(range(2), key=lambda b: len(examples[b]["input_ids"]))
    alone = pad_batch([examples[shorter]], tokenizer.pad_token_id)

    with torch.no_grad():
        in_batch = sequence_nll(model, batch)[shorter]
        single = sequence_nll(model, alone)[0]

    assert float(in_batch) == pytest.approx(float(single), rel=1e-4)


def test_finetune_uses_train_stream(model, batch):
    with torch.no_grad():
        expected = nll_loss(model, batch)
        loss = FineTune().compute_loss(model, {"train": batch})

    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_nll_loss_gradient_flows(model, batch):
    model.zero_grad(set_to_none=True)

    nll_loss(model, batch).backward()

    assert model.lm_head.weight.grad is not None
    assert float(model.lm_head.weight.grad.abs().sum()) > 0
    model.zero_grad(set_to_none=True)


# --- helpers on logits ------------------------------------------------------------------------------


@pytest.fixture
def small_logits():
    """Random logits [2, 3, 5] with a mask that keeps 4 of the 6 positions."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)
    labels = torch.tensor([[1, 4, 0], [2, 3, 3]])
    mask = torch.tensor([[True, True, False], [False, True, True]])
    return logits, labels, mask


def kept(mask):
    return [(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[b, t]]


def test_masked_mean_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, False, True]])

    assert float(masked_mean(values, mask)) == pytest.approx((1 + 3 + 6) / 3)


def test_masked_mean_empty_mask_is_zero():
    assert float(masked_mean(torch.ones(2, 2), torch.zeros(2, 2, dtype=torch.bool))) == 0.0


def test_next_token_nll_by_hand(small_logits):
    logits, labels, mask = small_logits

    nll = next_token_nll(logits, labels, mask)

    for b in range(2):
        for t in range(3):
            expected = -math.log(math.exp(logits[b, t, labels[b, t]]) / sum(math.exp(x) for x in logits[b, t])) if mask[b, t] else 0.0
            assert float(nll[b, t]) == pytest.approx(expected, rel=1e-9, abs=1e-12), (b, t)


def test_soft_cross_entropy_by_hand(small_logits):
    logits, _, mask = small_logits
    targets = torch.softmax(torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64), dim=-1)
    expected = 0.0
    for b, t in kept(mask):
        log_z = math.log(sum(math.exp(x) for x in logits[b, t]))
        expected -= sum(float(targets[b, t, v]) * (float(logits[b, t, v]) - log_z) for v in range(5)) / 4

    assert float(soft_cross_entropy(logits, targets, mask)) == pytest.approx(expected, rel=1e-9)


def test_kl_divergence_by_hand(small_logits):
    logits, _, mask = small_logits
    ref_logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = 0.0
    for b, t in kept(mask):
        p = torch.softmax(logits[b, t], dim=-1).tolist()
        q = torch.softmax(ref_logits[b, t], dim=-1).tolist()
        expected += sum(qv * math.log(qv / pv) for pv, qv in zip(p, q)) / 4

    assert float(kl_divergence(logits, ref_logits, mask)) == pytest.approx(expected, rel=1e-9)


def test_kl_divergence_of_equal_logits_is_zero(small_logits):
    logits, _, mask = small_logits

    assert float(kl_divergence(logits, logits.clone(), mask)) == pytest.approx(0.0, abs=1e-12)


def test_answer_logits_shapes(model, batch):
    with torch.no_grad():
        logits, labels, mask = answer_logits(model, batch)

    assert logits.shape == (2, batch["input_ids"].shape[1] - 1, model.config.vocab_size)
    assert logits.dtype == torch.float32
    assert torch.equal(labels, batch["labels"][:, 1:])
    assert torch.equal(mask, batch["labels"][:, 1:] != IGNORE_INDEX)
