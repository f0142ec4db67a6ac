import math

import pytest
import torch

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa
from fedunlearn.data.tofu import load_split
from fedunlearn.losses import nll_loss
from fedunlearn.unlearn.methods import METHODS, UnlearnContext, build_method
from fedunlearn.unlearn.methods.grad_ascent import GradAscent
from fedunlearn.unlearn.methods.grad_diff import GradDiff
from fedunlearn.unlearn.methods.npo import NPO

CHAT = {"apply_chat_template": True}


def load_tiny_llama(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


@pytest.fixture(scope="module")
def model(tiny_llama_path):
    return load_tiny_llama(tiny_llama_path)


def tokenize_split(tokenizer, data_dir, split, count):
    records = load_split(split, data_dir)[:count]
    return [tokenize_qa(tokenizer, r["question"], r["answer"], CHAT) for r in records]


@pytest.fixture(scope="module")
def forget_examples(tokenizer, tofu_data_dir):
    return tokenize_split(tokenizer, tofu_data_dir, "forget01", 2)


@pytest.fixture(scope="module")
def retain_batch(tokenizer, tofu_data_dir):
    return pad_batch(tokenize_split(tokenizer, tofu_data_dir, "retain99", 2), tokenizer.pad_token_id)


@pytest.fixture
def prepared(model, forget_examples, tokenizer):
    """Return a function that runs ``method.prepare`` on fresh copies of the forget examples and returns them."""
    examples = [dict(e) for e in forget_examples]

    def prepare(method, on_model=model):
        method.prepare(on_model, examples, UnlearnContext(tokenizer, 512, 0))
        return examples

    return prepare


def hand_sequence_nll(model, batch):
    """Return each sequence's summed answer-token NLL and its answer-token count, written as a loop.

    The token at position t is predicted by the logits at t - 1. Positions labelled -100 (prompt
    and padding) are skipped.
    """
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    sums, counts = [], []
    for b in range(batch["labels"].shape[0]):
        total, count = 0.0, 0
        for t in range(1, batch["labels"].shape[1]):
            label = int(batch["labels"][b, t])
            if label != IGNORE_INDEX:
                total -= float(log_probs[b, t - 1, label])
                count += 1
        sums.append(total)
        counts.append(count)
    return sums, counts


def hand_mean_nll(model, batch):
    sums, counts = hand_sequence_nll(model, batch)
    return sum(sums) / sum(counts)


def npo_forget_term(beta, log_ratios):
    """-(2/beta) * mean_i log sigmoid(-beta * r_i), with log sigmoid(x) = -log(1 + exp(-x))."""
    return 2 / beta * sum(math.log1p(math.exp(beta * r)) for r in log_ratios) / len(log_ratios)


def flat_grad(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return grad


@pytest.fixture(scope="module")
def forget_batch(forget_examples, tokenizer):
    return pad_batch(forget_examples, tokenizer.pad_token_id)


@pytest.fixture(scope="module")
def hand_forget(model, forget_batch):
    return hand_mean_nll(model, forget_batch)


@pytest.fixture(scope="module")
def hand_retain(model, retain_batch):
    return hand_mean_nll(model, retain_batch)


# --- GradAscent and GradDiff -----------------------------------------------------------------------


def test_grad_ascent_negates_nll(model, forget_batch, hand_forget):
    with torch.no_grad():
        loss = GradAscent().compute_loss(model, {"forget": forget_batch})

    assert float(loss) == pytest.approx(-hand_forget, rel=1e-5)


def test_grad_diff_weights_by_hand(model, forget_batch, retain_batch, hand_forget, hand_retain):
    method = GradDiff(gamma=0.5, alpha=2.0)

    with torch.no_grad():
        loss = method.compute_loss(model, {"forget": forget_batch, "retain": retain_batch})

    assert float(loss) == pytest.approx(-0.5 * hand_forget + 2.0 * hand_retain, rel=1e-5)


def test_grad_diff_defaults(model, forget_batch, retain_batch, hand_forget, hand_retain):
    with torch.no_grad():
        loss = GradDiff().compute_loss(model, {"forget": forget_batch, "retain": retain_batch})

    # Both NLLs are near log(vocabulary size) on a random model, so their difference is near 0
    # and only an absolute tolerance (rel 1e-5 of either term) makes sense.
    assert float(loss) == pytest.approx(-hand_forget + hand_retain, abs=1e-5 * hand_forget)


# --- NPO -------------------------------------------------------------------------------------------


def test_npo_prepare_stores_ref_nll(model, prepared, forget_batch):
    examples = prepared(NPO())
    sums, _ = hand_sequence_nll(model, forget_batch)

    for example, expected in zip(examples, sums):
        assert example["ref_nll"] == pytest.approx(expected, rel=1e-5)


def test_npo_prepare_restores_mode(model, prepared):
    model.train()
    try:
        prepared(NPO())
        assert model.training
    finally:
        model.eval()


def test_npo_at_start_by_hand(model, prepared, retain_batch, hand_retain, tokenizer):
    # At the reference weights log p_theta = log p_ref, so each log-ratio is 0 and the forget term
    # is -(2/beta) * log sigmoid(0) = (2/beta) * log 2.
    method = NPO(beta=0.5, alpha=1.5)
    forget = pad_batch(prepared(method), tokenizer.pad_token_id)

    with torch.no_grad():
        loss = method.compute_loss(model, {"forget": forget, "retain": retain_batch})

    assert float(loss) == pytest.approx(2 / 0.5 * math.log(2) + 1.5 * hand_retain, rel=1e-5)


def test_npo_after_update_by_hand(tiny_llama_path, prepared, retain_batch, tokenizer):
    # Away from the reference weights the sign of r_i = log p_theta - log p_ref matters.
    model = load_tiny_llama(tiny_llama_path)
    method = NPO(beta=0.5, alpha=1.5)
    forget = pad_batch(prepared(method, on_model=model), tokenizer.pad_token_id)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    sums, _ = hand_sequence_nll(model, forget)
    log_ratios = [float(ref) - nll for ref, nll in zip(forget["ref_nll"], sums)]
    expected = npo_forget_term(0.5, log_ratios) + 1.5 * hand_mean_nll(model, retain_batch)

    with torch.no_grad():
        loss = method.compute_loss(model, {"forget": forget, "retain": retain_batch})

    assert min(abs(r) for r in log_ratios) > 0.1  # the update moved every forget answer
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_npo_gradient_opposes_nll(model, prepared, tokenizer):
    # With alpha = 0, d/dtheta of the NPO loss at the start is -(1/N) * sum_i d NLL_i/dtheta over the
    # N sequences, while nll_loss is sum_i NLL_i / T over the T answer tokens. So the NPO gradient
    # is exactly -(T/N) times the NLL gradient.
    method = NPO(beta=0.5, alpha=0.0)
    forget = pad_batch(prepared(method), tokenizer.pad_token_id)
    tokens = int((forget["labels"][:, 1:] != IGNORE_INDEX).sum())

    npo_grad = flat_grad(model, method.compute_loss(model, {"forget": forget}))
    nll_grad = flat_grad(model, nll_loss(model, forget))

    assert torch.nn.functional.cosine_similarity(npo_grad, nll_grad, dim=0) < 0
    assert torch.allclose(npo_grad, -tokens / 2 * nll_grad, rtol=1e-3, atol=1e-6)


def test_npo_needs_prepare(model, forget_batch, retain_batch):
    with pytest.raises(RuntimeError, match="NPO.prepare must run before training"):
        NPO().compute_loss(model, {"forget": forget_batch, "retain": retain_batch})


@pytest.mark.parametrize("method, needs_retain", [
    (GradAscent(), False), (GradDiff(), True), (NPO(), True), (NPO(alpha=0), False),
])
def test_needs_retain(method, needs_retain):
    assert method.needs_retain is needs_retain


@pytest.mark.parametrize("beta", [0, -0.1])
def test_npo_bad_beta_raises(beta):
    with pytest.raises(ValueError, match=f"NPO beta must be > 0, got {beta}"):
        NPO(beta=beta)


# --- build_method ----------------------------------------------------------------------------------


def test_build_method_with_kwargs():
    method = build_method("NPO", beta=0.2, alpha=0.5)

    assert isinstance(method, NPO)
    assert (method.beta, method.alpha) == (0.2, 0.5)


def test_registry_names():
    assert sorted(METHODS) == ["GradAscent", "GradDiff", "NPO"]


def test_build_unknown_method_raises():
    with pytest.raises(ValueError, match=r"unknown unlearning method 'RMU' .* \['GradAscent', 'GradDiff', 'NPO'\]"):
        build_method("RMU")


def test_build_bad_kwargs_raises():
    with pytest.raises(ValueError, match="invalid method_args for GradAscent"):
        build_method("GradAscent", alpha=1.0)


def test_build_bad_beta_raises():
    with pytest.raises(ValueError, match="NPO beta must be > 0"):
        build_method("NPO", beta=0)
