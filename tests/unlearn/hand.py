"""Hand computations for the method tests: losses and their gradients written as loops over answer tokens.

The token at position t + 1 is predicted by the logits at position t, and only
positions whose label is not -100 (the answer) count. Gradients are checked
through the chain rule: a hand-computed dL/dlogits (or dL/dhidden) ``G`` gives
the expected parameter gradient as the gradient of ``sum(G * logits)``.
"""

from __future__ import annotations

import torch

from fedunlearn.data.template import IGNORE_INDEX


@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()


def answer_rows(model, batch) -> list[tuple[int, int, int, torch.Tensor]]:
    """Return ``(row, position, token, log-probabilities)`` for every answer token of the batch."""
    log_probs = torch.log_softmax(logits_of(model, batch), dim=-1)
    rows = []
    for b in range(batch["labels"].shape[0]):
        for t in range(batch["labels"].shape[1] - 1):
            token = int(batch["labels"][b, t + 1])
            if token != IGNORE_INDEX:
                rows.append((b, t, token, log_probs[b, t]))
    return rows


def nll_grad(log_probs: torch.Tensor, token: int) -> torch.Tensor:
    """Return d(-log p_token)/dlogits = softmax - onehot(token)."""
    grad = log_probs.exp()
    grad[token] -= 1
    return grad


def zero_grad_for(batch, rows) -> torch.Tensor:
    """Return a zero dL/dlogits tensor ``[batch, seq, vocab]`` for the batch whose answer rows are ``rows``."""
    return torch.zeros(*batch["input_ids"].shape, rows[0][3].shape[0], dtype=torch.float64)


def hand_nll(model, batch) -> tuple[float, torch.Tensor]:
    """Return the mean answer-token NLL and its gradient with respect to the logits."""
    rows = answer_rows(model, batch)
    grad = zero_grad_for(batch, rows)
    total = 0.0
    for b, t, token, log_probs in rows:
        total -= float(log_probs[token])
        grad[b, t] = nll_grad(log_probs, token) / len(rows)
    return total / len(rows), grad


def hand_sequence_nll(model, batch) -> tuple[list[float], list[int]]:
    """Return each sequence's summed answer-token NLL and its number of answer tokens."""
    sums = [0.0] * batch["labels"].shape[0]
    counts = [0] * batch["labels"].shape[0]
    for b, _, token, log_probs in answer_rows(model, batch):
        sums[b] -= float(log_probs[token])
        counts[b] += 1
    return sums, counts


def hand_sequence_nll_grad(model, batch, coefficients: list[float]) -> torch.Tensor:
    """Return dL/dlogits for ``L = sum_i coefficients[i] * NLL_i`` over the sequences ``i``."""
    rows = answer_rows(model, batch)
    grad = zero_grad_for(batch, rows)
    for b, t, token, log_probs in rows:
        grad[b, t] = coefficients[b] * nll_grad(log_probs, token)
    return grad


def hand_kl(model, reference, batch) -> tuple[float, torch.Tensor]:
    """Return the mean over answer tokens of KL(p_ref || p) and its gradient (p - p_ref) / T."""
    rows = answer_rows(model, batch)
    ref_log_probs = torch.log_softmax(logits_of(reference, batch), dim=-1)
    grad = zero_grad_for(batch, rows)
    total = 0.0
    for b, t, _, log_probs in rows:
        ref = ref_log_probs[b, t]
        total += float((ref.exp() * (ref - log_probs)).sum())
        grad[b, t] = (log_probs.exp() - ref.exp()) / len(rows)
    return total / len(rows), grad


def trainable_grad(model, loss: torch.Tensor) -> torch.Tensor:
    """Return the gradient of ``loss`` over the trainable parameters, flattened."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def logit_surrogate(model, batch, grad: torch.Tensor) -> torch.Tensor:
    """Return ``sum(grad * logits)``, whose parameter gradient is the chain rule applied to the hand-computed ``grad``."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return (logits * grad.to(logits.dtype)).sum()


def expected_grad(model, *pairs: tuple[dict, torch.Tensor]) -> torch.Tensor:
    """Return the parameter gradient implied by hand-computed dL/dlogits, one ``(batch, grad)`` pair per forward pass."""
    return trainable_grad(model, sum(logit_surrogate(model, batch, grad) for batch, grad in pairs))


def assert_same_grad(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert float(expected.norm()) > 0, "the hand-computed gradient is zero, so the check would prove nothing"
    cosine = torch.nn.functional.cosine_similarity(actual, expected, dim=0)
    assert float(cosine) > 0.9999
    assert torch.allclose(actual, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))


def with_extra_padding(batch: dict, columns: int, seed: int = 0) -> dict:
    """Return ``batch`` with ``columns`` more padding positions on the right holding random token ids."""
    rows = batch["input_ids"].shape[0]
    generator = torch.Generator().manual_seed(seed)
    junk = torch.randint(0, 1000, (rows, columns), generator=generator)
    padded = dict(batch)
    padded["input_ids"] = torch.cat([batch["input_ids"], junk], dim=1)
    padded["attention_mask"] = torch.cat([batch["attention_mask"], torch.zeros(rows, columns, dtype=torch.long)], dim=1)
    padded["labels"] = torch.cat([batch["labels"], torch.full((rows, columns), IGNORE_INDEX)], dim=1)
    return padded
