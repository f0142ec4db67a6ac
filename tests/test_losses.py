import pytest
import torch

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa
from fedunlearn.data.tofu import load_split
from fedunlearn.losses import FineTune, nll_loss, sequence_nll, token_nll

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
