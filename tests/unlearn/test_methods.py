"""Each unlearning method's loss value and gradient against a hand computation on the tiny Llama.

Methods with a reference model are checked on the LoRA model after its adapter
has moved away from where ``prepare`` saw it, against a deep copy taken at
``prepare`` time, so the reference is not the current model.
"""

import copy
import math
import random

import pytest
import torch

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.idk import REFUSALS
from fedunlearn.data.template import IGNORE_INDEX
from fedunlearn.unlearn.methods.ceu import CEU
from fedunlearn.unlearn.methods.grad_ascent import GradAscent
from fedunlearn.unlearn.methods.grad_diff import GradDiff
from fedunlearn.unlearn.methods.idk_dpo import IdkDPO
from fedunlearn.unlearn.methods.idk_nll import IdkNLL
from fedunlearn.unlearn.methods.npo import NPO
from fedunlearn.unlearn.methods.rmu import RMU, decoder_layers
from fedunlearn.unlearn.methods.satimp import SatImp
from fedunlearn.unlearn.methods.simnpo import SimNPO
from fedunlearn.unlearn.methods.undial import UNDIAL
from fedunlearn.unlearn.methods.wga import WGA

from .hand import (
    answer_rows,
    assert_same_grad,
    expected_grad,
    hand_kl,
    hand_nll,
    hand_sequence_nll,
    hand_sequence_nll_grad,
    nll_grad,
    trainable_grad,
    zero_grad_for,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def move(model, seed: int = 2, scale: float = 0.02) -> None:
    """Perturb every trainable parameter, standing in for some unlearning steps."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(scale * torch.randn(param.shape, generator=generator))


def prepare_and_move(method, model, examples, context):
    """Run ``prepare``, keep a deep copy of the model as the hand computation's reference, then move the model."""
    method.prepare(model, examples, context)
    reference = copy.deepcopy(model)
    move(model)
    return reference


@pytest.fixture
def forget_batch(forget_examples, tokenizer):
    return pad_batch(forget_examples, tokenizer.pad_token_id)


def refusal_batch(examples, tokenizer, seed=0):
    """Build the refusal twin of each forget example by hand: its prompt, a phrasing drawn from the seed, EOS."""
    rng = random.Random(seed)
    rows = []
    for example in examples:
        prompt = [i for i, label in zip(example["input_ids"], example["labels"]) if label == IGNORE_INDEX]
        answer = tokenizer(rng.choice(REFUSALS), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append({"input_ids": prompt + answer, "attention_mask": [1] * (len(prompt) + len(answer)),
                     "labels": [IGNORE_INDEX] * len(prompt) + answer})
    return pad_batch(rows, tokenizer.pad_token_id)


# --- GradAscent and GradDiff ------------------------------------------------------------------------


def test_grad_ascent_by_hand(model, forget_batch):
    value, grad = hand_nll(model, forget_batch)

    loss = GradAscent().compute_loss(model, {"forget": forget_batch})

    assert loss.item() == pytest.approx(-value, rel=1e-5)
    assert_same_grad(trainable_grad(model, loss), expected_grad(model, (forget_batch, -grad)))


def test_grad_diff_nll_by_hand(model, forget_batch, retain_batch):
    method = GradDiff(gamma=0.5, alpha=2.0)
    forget, forget_grad = hand_nll(model, forget_batch)
    retain, retain_grad = hand_nll(model, retain_batch)

    loss = method.compute_loss(model, {"forget": forget_batch, "retain": retain_batch})

    assert loss.item() == pytest.approx(-0.5 * forget + 2.0 * retain, rel=1e-5)
    expected = expected_grad(model, (forget_batch, -0.5 * forget_grad), (retain_batch, 2.0 * retain_grad))
    assert_same_grad(trainable_grad(model, loss), expected)


def test_grad_diff_kl_by_hand(lora_model, examples, context, retain_batch, tokenizer):
    method = GradDiff(gamma=0.5, alpha=2.0, retain_loss_type="KL")
    reference = prepare_and_move(method, lora_model, examples, context)
    forget_batch = pad_batch(examples, tokenizer.pad_token_id)
    forget, forget_grad = hand_nll(lora_model, forget_batch)
    kl, kl_grad = hand_kl(lora_model, reference, retain_batch)

    loss = method.compute_loss(lora_model, {"forget": forget_batch, "retain": retain_batch})

    assert kl > 1e-4  # the adapter moved, so the KL term is not trivially 0
    assert loss.item() == pytest.approx(-0.5 * forget + 2.0 * kl, rel=1e-5)
    expected = expected_grad(lora_model, (forget_batch, -0.5 * forget_grad), (retain_batch, 2.0 * kl_grad))
    assert_same_grad(trainable_grad(lora_model, loss), expected)


def test_grad_diff_kl_at_start_is_zero(model, examples, context, retain_batch, forget_batch):
    method = GradDiff(gamma=0.0, alpha=1.0, retain_loss_type="KL")
    method.prepare(model, examples, context)

    with torch.no_grad():
        loss = method.compute_loss(model, {"forget": forget_batch, "retain": retain_batch})

    assert loss.item() == pytest.approx(0.0, abs=1e-6)


# --- NPO and SimNPO ---------------------------------------------------------------------------------


def test_npo_by_hand(lora_model, examples, context, retain_batch, tokenizer):
    beta, gamma, alpha = 0.5, 0.8, 1.5
    method = NPO(beta=beta, gamma=gamma, alpha=alpha)
    reference = prepare_and_move(method, lora_model, examples, context)
    forget_batch = pad_batch(examples, tokenizer.pad_token_id)
    ref_sums, _ = hand_sequence_nll(reference, forget_batch)
    sums, _ = hand_sequence_nll(lora_model, forget_batch)
    ratios = [ref - nll for ref, nll in zip(ref_sums, sums)]  # log p_theta - log p_ref
    retain, retain_grad = hand_nll(lora_model, retain_batch)
    forget_term = -2 / beta * sum(log_sigmoid(-beta * r) for r in ratios) / 2
    coefficients = [gamma * -2 / 2 * sigmoid(beta * r) for r in ratios]  # dL/dNLL_i

    loss = method.compute_loss(lora_model, {"forget": forget_batch, "retain": retain_batch})

    assert forget_batch["ref_nll"].tolist() == pytest.approx(ref_sums, rel=1e-5)
    assert min(abs(r) for r in ratios) > 0.01
    assert loss.item() == pytest.approx(gamma * forget_term + alpha * retain, rel=1e-5)
    expected = expected_grad(lora_model, (forget_batch, hand_sequence_nll_grad(lora_model, forget_batch, coefficients)),
                             (retain_batch, alpha * retain_grad))
    assert_same_grad(trainable_grad(lora_model, loss), expected)


@pytest.mark.parametrize("method_class", [NPO, IdkDPO])
def test_preference_loss_at_start_is_log2(method_class, model, examples, context, tokenizer):
    # At the reference weights every log-ratio is 0, so the loss is -(2/beta) log sigmoid(0) = (2/beta) log 2.
    method = method_class(beta=0.5, alpha=0.0)
    method.prepare(model, examples, context)

    with torch.no_grad():
        loss = method.compute_loss(model, {"forget": pad_batch(examples, tokenizer.pad_token_id)})

    assert loss.item() == pytest.approx(2 / 0.5 * math.log(2), rel=1e-5)


def test_npo_prepare_restores_mode(model, examples, context):
    model.train()

    NPO().prepare(model, examples, context)

    assert model.training


def test_simnpo_by_hand(model, forget_batch, retain_batch):
    beta, delta, gamma, alpha = 1.0, 0.5, 0.25, 1.5
    method = SimNPO(beta=beta, delta=delta, gamma=gamma, alpha=alpha)
    sums, counts = hand_sequence_nll(model, forget_batch)
    means = [s / n for s, n in zip(sums, counts)]
    retain, retain_grad = hand_nll(model, retain_batch)
    forget_term = -2 / beta * sum(log_sigmoid(beta * (m - delta)) for m in means) / 2
    coefficients = [gamma * -2 / 2 * sigmoid(-beta * (m - delta)) / n for m, n in zip(means, counts)]

    loss = method.compute_loss(model, {"forget": forget_batch, "retain": retain_batch})

    assert loss.item() == pytest.approx(gamma * forget_term + alpha * retain, rel=1e-5)
    expected = expected_grad(model, (forget_batch, hand_sequence_nll_grad(model, forget_batch, coefficients)),
                             (retain_batch, alpha * retain_grad))
    assert_same_grad(trainable_grad(model, loss), expected)


# --- IdkNLL and IdkDPO ------------------------------------------------------------------------------


def test_idk_nll_by_hand(model, examples, context, retain_batch, tokenizer):
    method = IdkNLL(gamma=0.5, alpha=2.0)
    method.prepare(model, examples, context)
    refusals = refusal_batch(examples, tokenizer)
    idk, idk_grad = hand_nll(model, refusals)
    retain, retain_grad = hand_nll(model, retain_batch)

    loss = method.compute_loss(model, {"forget": pad_batch(examples, tokenizer.pad_token_id), "retain": retain_batch})

    assert loss.item() == pytest.approx(0.5 * idk + 2.0 * retain, rel=1e-5)
    expected = expected_grad(model, (refusals, 0.5 * idk_grad), (retain_batch, 2.0 * retain_grad))
    assert_same_grad(trainable_grad(model, loss), expected)


def test_idk_nll_follows_forget_order(model, examples, context, tokenizer):
    # A forget batch in another order still pairs each question with its own refusal.
    method = IdkNLL(alpha=0.0)
    method.prepare(model, examples, context)
    rows = unpad(refusal_batch(examples, tokenizer))
    expected, _ = hand_nll(model, pad_batch(rows[::-1], tokenizer.pad_token_id))

    with torch.no_grad():
        loss = method.compute_loss(model, {"forget": pad_batch(examples[::-1], tokenizer.pad_token_id)})

    assert rows[0]["input_ids"][-4:] != rows[1]["input_ids"][-4:]  # the two items got different phrasings
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def unpad(batch):
    """Split a right-padded batch back into its examples."""
    rows = []
    for b in range(batch["input_ids"].shape[0]):
        length = int(batch["attention_mask"][b].sum())
        rows.append({k: batch[k][b, :length].tolist() for k in ("input_ids", "attention_mask", "labels")})
    return rows


def test_idk_dpo_by_hand(lora_model, examples, context, retain_batch, tokenizer):
    beta, gamma, alpha = 0.5, 0.8, 1.5
    method = IdkDPO(beta=beta, gamma=gamma, alpha=alpha)
    reference = prepare_and_move(method, lora_model, examples, context)
    forget_batch = pad_batch(examples, tokenizer.pad_token_id)
    refusals = refusal_batch(examples, tokenizer)
    chosen = [ref - nll for ref, nll in zip(hand_sequence_nll(reference, refusals)[0], hand_sequence_nll(lora_model, refusals)[0])]
    rejected = [ref - nll for ref, nll in zip(hand_sequence_nll(reference, forget_batch)[0],
                                              hand_sequence_nll(lora_model, forget_batch)[0])]
    margins = [beta * (c - r) for c, r in zip(chosen, rejected)]
    retain, retain_grad = hand_nll(lora_model, retain_batch)
    forget_term = -2 / beta * sum(log_sigmoid(m) for m in margins) / 2
    # dL/dNLL of the refusal is +gamma (2/N) sigmoid(-m), of the forget answer its negative.
    chosen_coefficients = [gamma * 2 / 2 * sigmoid(-m) for m in margins]

    loss = method.compute_loss(lora_model, {"forget": forget_batch, "retain": retain_batch})

    assert loss.item() == pytest.approx(gamma * forget_term + alpha * retain, rel=1e-5)
    expected = expected_grad(
        lora_model,
        (refusals, hand_sequence_nll_grad(lora_model, refusals, chosen_coefficients)),
        (forget_batch, hand_sequence_nll_grad(lora_model, forget_batch, [-c for c in chosen_coefficients])),
        (retain_batch, alpha * retain_grad),
    )
    assert_same_grad(trainable_grad(lora_model, loss), expected)


# --- RMU --------------------------------------------------------------------------------------------


def hidden_of(model, batch, layer_id: int, grad: bool = False) -> torch.Tensor:
    """Return the output of decoder layer ``layer_id`` through ``output_hidden_states`` (index 0 is the embeddings)."""
    with torch.set_grad_enabled(grad):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return out.hidden_states[layer_id + 1]


def hand_activation_distance(hidden, target, batch):
    """Return mean_i (1/n_i) sum_{answer t} mean_d (h - target)^2 and its gradient with respect to ``hidden``."""
    hidden, target = hidden.double(), target.double()
    rows, width = hidden.shape[0], hidden.shape[-1]
    grad = torch.zeros_like(hidden)
    total = 0.0
    for b in range(rows):
        positions = [t for t in range(hidden.shape[1]) if int(batch["labels"][b, t]) != IGNORE_INDEX]
        for t in positions:
            diff = hidden[b, t] - target[b, t]
            total += float((diff**2).mean()) / len(positions) / rows
            grad[b, t] = 2 * diff / width / len(positions) / rows
    return total, grad


def test_rmu_by_hand(lora_model, examples, context, retain_batch, tokenizer):
    gamma, alpha, coeff = 0.5, 20.0, 6.0
    method = RMU(layer_id=0, steering_coeff=coeff, gamma=gamma, alpha=alpha)
    reference = prepare_and_move(method, lora_model, examples, context)
    forget_batch = pad_batch(examples, tokenizer.pad_token_id)
    u = torch.rand(64, generator=torch.Generator().manual_seed(context.seed))
    control = (coeff * u / u.norm()).expand_as(hidden_of(lora_model, forget_batch, 0))
    forget, forget_grad = hand_activation_distance(hidden_of(lora_model, forget_batch, 0), control, forget_batch)
    retain, retain_grad = hand_activation_distance(hidden_of(lora_model, retain_batch, 0),
                                                   hidden_of(reference, retain_batch, 0), retain_batch)

    loss = method.compute_loss(lora_model, {"forget": forget_batch, "retain": retain_batch})

    assert retain > 1e-6
    assert loss.item() == pytest.approx(gamma * forget + alpha * retain, rel=1e-5)
    surrogate = (gamma * (forget_grad.float() * hidden_of(lora_model, forget_batch, 0, grad=True)).sum()
                 + alpha * (retain_grad.float() * hidden_of(lora_model, retain_batch, 0, grad=True)).sum())
    assert_same_grad(trainable_grad(lora_model, loss), trainable_grad(lora_model, surrogate))


def test_rmu_retain_without_lora(model, examples, context, retain_batch, forget_batch):
    # Full fine-tuning keeps a deep copy as the reference, so the layer is hooked in that copy.
    method = RMU(layer_id=0, steering_coeff=5.0, gamma=0.0, alpha=1.0)
    method.prepare(model, examples, context)
    reference = copy.deepcopy(model)
    move(model)
    expected, _ = hand_activation_distance(hidden_of(model, retain_batch, 0), hidden_of(reference, retain_batch, 0),
                                           retain_batch)

    with torch.no_grad():
        loss = method.compute_loss(model, {"forget": forget_batch, "retain": retain_batch})

    assert method.reference.model_copy is not None
    assert expected > 1e-6
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_rmu_finds_layers_under_lora(lora_model):
    assert decoder_layers(lora_model) is lora_model.get_base_model().model.layers


def test_rmu_layer_out_of_range(model, examples, context):
    with pytest.raises(ValueError, match=r"RMU layer_id=2 is out of range: the model has 2 decoder layers"):
        RMU(layer_id=2).prepare(model, examples, context)


def test_rmu_control_vector_from_seed(model, examples, context, tokenizer):
    from fedunlearn.unlearn.methods import UnlearnContext

    first, second, other = RMU(layer_id=0), RMU(layer_id=0), RMU(layer_id=0)
    first.prepare(model, examples, context)
    second.prepare(model, examples, context)
    other.prepare(model, examples, UnlearnContext(tokenizer, 512, seed=1))

    assert torch.equal(first.control_vector, second.control_vector)
    assert not torch.equal(first.control_vector, other.control_vector)
    assert float(first.control_vector.norm()) == pytest.approx(300.0, rel=1e-5)


# --- UNDIAL, WGA, SatImp, CE-U ----------------------------------------------------------------------


def test_undial_by_hand(lora_model, examples, context, retain_batch, tokenizer):
    beta, gamma, alpha = 3.0, 0.8, 0.5
    method = UNDIAL(beta=beta, gamma=gamma, alpha=alpha)
    reference = prepare_and_move(method, lora_model, examples, context)
    forget_batch = pad_batch(examples, tokenizer.pad_token_id)
    rows = answer_rows(lora_model, forget_batch)
    ref_rows = answer_rows(reference, forget_batch)
    grad = zero_grad_for(forget_batch, rows)
    total = 0.0
    for (b, t, token, log_probs), (_, _, _, ref_log_probs) in zip(rows, ref_rows):
        adjusted = ref_log_probs.clone()  # log-probabilities differ from logits by a constant, which softmax ignores
        adjusted[token] -= beta
        target = torch.softmax(adjusted, dim=-1)
        total -= float((target * log_probs).sum()) / len(rows)
        grad[b, t] = gamma * (log_probs.exp() - target) / len(rows)
    retain, retain_grad = hand_nll(lora_model, retain_batch)

    loss = method.compute_loss(lora_model, {"forget": forget_batch, "retain": retain_batch})

    assert loss.item() == pytest.approx(gamma * total + alpha * retain, rel=1e-5)
    assert_same_grad(trainable_grad(lora_model, loss),
                     expected_grad(lora_model, (forget_batch, grad), (retain_batch, alpha * retain_grad)))


def hand_weighted_ascent(model, batch, weight):
    """Return -mean_t w(p_t) NLL_t and its gradient -w(p_t) (softmax - onehot) / T, the weight held constant."""
    rows = answer_rows(model, batch)
    grad = zero_grad_for(batch, rows)
    total = 0.0
    for b, t, token, log_probs in rows:
        p = math.exp(float(log_probs[token]))
        total += weight(p) * float(log_probs[token]) / len(rows)
        grad[b, t] = -weight(p) * nll_grad(log_probs, token) / len(rows)
    return total, grad


@pytest.mark.parametrize("method, weight", [
    (WGA(beta=1.0, gamma=0.5, alpha=2.0), lambda p: p),
    (WGA(beta=2.5, gamma=0.5, alpha=2.0), lambda p: p**2.5),
    (SatImp(beta1=2.0, beta2=1.5, gamma=0.5, alpha=2.0), lambda p: p**2 * (1 - p) ** 1.5),
], ids=["WGA-beta1", "WGA-beta2.5", "SatImp"])
def test_weighted_ascent_by_hand(method, weight, model, forget_batch, retain_batch):
    forget, forget_grad = hand_weighted_ascent(model, forget_batch, weight)
    retain, retain_grad = hand_nll(model, retain_batch)

    loss = method.compute_loss(model, {"forget": forget_batch, "retain": retain_batch})

    assert abs(forget) > 1e-3  # the memorised model gives the weights room to matter
    assert loss.item() == pytest.approx(0.5 * forget + 2.0 * retain, rel=1e-5)
    assert_same_grad(trainable_grad(model, loss),
                     expected_grad(model, (forget_batch, 0.5 * forget_grad), (retain_batch, 2.0 * retain_grad)))


@pytest.mark.parametrize("ignore_first", [0, 1, 3])
def test_ceu_by_hand(ignore_first, model, forget_batch):
    rows = answer_rows(model, forget_batch)
    kept = []
    for b in range(2):
        kept += [row for row in rows if row[0] == b][ignore_first:]
    grad = zero_grad_for(forget_batch, rows)
    total = 0.0
    for b, t, token, log_probs in kept:
        target = log_probs.exp()
        target[token] = 0
        target = target / target.sum()
        total -= float((target * log_probs).sum()) / len(kept)
        grad[b, t] = 0.5 * (log_probs.exp() - target) / len(kept)

    loss = CEU(ignore_first_n_answer_tokens=ignore_first, gamma=0.5).compute_loss(model, {"forget": forget_batch})

    assert len(kept) == len(rows) - 2 * ignore_first
    assert loss.item() == pytest.approx(0.5 * total, rel=1e-5)
    assert_same_grad(trainable_grad(model, loss), expected_grad(model, (forget_batch, grad)))
