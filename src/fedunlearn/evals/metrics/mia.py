"""Membership inference attack (MIA) scores of LLM sequences, and their ROC AUC.

Each ``*_score`` function maps one sequence to one number, oriented as in
OpenUnlearning's attacks: a **higher score means "more likely a non-member"**
(a loss-like quantity). ``auc`` turns the scores of members (data the model was
trained on, for example the forget set) and of non-members (data it never saw,
for example TOFU's holdout set) into the ROC AUC of telling them apart:

* 1.0: members score lower than every non-member, so the model still "knows" them;
* 0.5: members and non-members are indistinguishable. Unlearning aims at the
  AUC of a model that never saw the members. On TOFU, where both sets are
  fictitious authors, that AUC is expected near 0.5;
* below 0.5: members look less likely than data the model never saw.

Token log-probabilities are ``log p(x_t | x_<t)`` (natural log) of a sequence's
target tokens, in order. Which tokens count is the caller's choice: OpenUnlearning
scores every answer token for LOSS, ZLib and Reference (its ``avg_loss``), and
every answer token but the last (the end-of-sequence token) for Min-K%,
Min-K%++ and GradNorm.

Attacks and their sources:

* LOSS (Yeom et al., 2018): the mean negative log-likelihood.
* ZLib (Carlini et al., "Extracting Training Data from Large Language Models",
  USENIX Security 2021): the loss divided by the zlib-compressed length of the
  text in bytes.
* Min-K% (Shi et al., "Detecting Pretraining Data from Large Language Models",
  arXiv:2310.16789): minus the mean of the ``k`` share of lowest token
  log-probabilities.
* Min-K%++ (Zhang et al., github.com/zjysteven/mink-plus-plus): the same over
  token log-probabilities standardised by the mean and variance of ``log p``
  under the model's own next-token distribution.
* Reference (Carlini et al., 2021, as above): the evaluated model's loss minus
  a reference model's loss on the same sequence.
* GradNorm (arXiv:2402.17012): the mean over parameter tensors of the p-norm
  of the loss gradient.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

# OpenUnlearning's default share of tokens for Min-K% and Min-K%++ on TOFU and MUSE.
DEFAULT_K = 0.4
# Lower bound on the variance in Min-K%++, as in OpenUnlearning, so a one-hot distribution does not divide by 0.
MIN_VARIANCE = 1e-6


def loss_score(token_logprobs: Sequence[float]) -> float:
    """Return the LOSS score ``-mean_t log p(x_t)``: the mean negative log-likelihood in nats."""
    values = _as_array(token_logprobs)
    if values.size == 0:
        raise ValueError("token_logprobs is empty: the LOSS score needs at least one token")
    return float(-values.mean())


def zlib_score(token_logprobs: Sequence[float], text: str) -> float:
    """Return the ZLib score ``loss_score / len(zlib.compress(text.encode("utf-8")))``.

    ``text`` is the scored target text (the decoded target tokens). Its
    compressed length in bytes measures how predictable the text is by itself,
    so the score calibrates the loss for text that is easy for any model.
    """
    return loss_score(token_logprobs) / len(zlib.compress(text.encode("utf-8")))


def min_k_score(token_logprobs: Sequence[float], k: float = DEFAULT_K) -> float:
    """Return the Min-K% score ``-mean(lowest max(1, floor(k * n)) of the n token log-probabilities)``.

    An empty sequence scores 0.0, as in OpenUnlearning.
    """
    _check_k(k)
    values = _as_array(token_logprobs)
    if values.size == 0:
        return 0.0
    count = max(1, int(values.size * k))
    return float(-np.sort(values)[:count].mean())


def min_k_plus_plus_score(
    token_logprobs: Sequence[float], vocab_mean: Sequence[float], vocab_var: Sequence[float], k: float = DEFAULT_K
) -> float:
    """Return the Min-K%++ score: Min-K% over standardised token log-probabilities.

    At each position ``t``, ``z_t = (log p(x_t) - mu_t) / sqrt(max(sigma2_t, 1e-6))``
    where ``mu_t = E_{v ~ p}[log p(v)]`` and ``sigma2_t = Var_{v ~ p}[log p(v)]``
    over the model's next-token distribution ``p`` (see ``vocab_moments``). The
    score is ``-mean(lowest max(1, floor(k * n)) of the z_t)``; an empty sequence scores 0.0.
    """
    _check_k(k)
    values, mean, var = _as_array(token_logprobs), _as_array(vocab_mean), _as_array(vocab_var)
    if not values.size == mean.size == var.size:
        raise ValueError(
            f"got {values.size} token log-probabilities but {mean.size} means and {var.size} variances: "
            "pass one mean and one variance per token"
        )
    if values.size == 0:
        return 0.0
    standardised = (values - mean) / np.sqrt(np.maximum(var, MIN_VARIANCE))
    count = max(1, int(values.size * k))
    return float(-np.sort(standardised)[:count].mean())


def vocab_moments(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the mean and variance of ``log p(v)`` under ``p`` at each position, the Min-K%++ statistics.

    ``log_probs`` has shape ``(..., vocab)`` and contains normalised log-probabilities
    (``log_softmax`` of the logits). Returns ``mu = sum_v p(v) log p(v)`` (minus the
    entropy) and ``sigma2 = sum_v p(v) (log p(v) - mu)^2``, each of shape ``(...)``,
    computed in float32. ``sigma2`` equals OpenUnlearning's ``sum_v p(v) log p(v)^2 - mu^2``
    but avoids its cancellation error: both terms are near ``log(vocab)^2``.
    """
    log_probs = log_probs.float()
    probs = log_probs.exp()
    mean = (probs * log_probs).sum(dim=-1)
    var = (probs * (log_probs - mean.unsqueeze(-1)).square()).sum(dim=-1)
    return mean, var


def reference_score(target_loss: float, reference_loss: float) -> float:
    """Return the Reference score ``target_loss - reference_loss`` of one sequence.

    Both are mean negative log-likelihoods of the same tokens (``loss_score``),
    one under the evaluated model and one under the reference model.
    """
    return float(target_loss - reference_loss)


def gradnorm_score(parameter_grad_norms: Sequence[float]) -> float:
    """Return the GradNorm score: the mean over parameter tensors of ``||d loss / d W||_p``.

    ``parameter_grad_norms`` contains one p-norm per parameter tensor that received
    a gradient (see ``fedunlearn.evals.gradnorm``). A larger gradient means the
    model fits the sequence less well, so a larger score points to a non-member.
    """
    values = _as_array(parameter_grad_norms)
    if values.size == 0:
        raise ValueError("parameter_grad_norms is empty: no parameter received a gradient")
    return float(values.mean())


def auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """Return the ROC AUC of separating non-members from members by their scores.

    Computed with ``sklearn.metrics.roc_auc_score`` on labels 0 for members and 1
    for non-members, so the AUC is the probability that a random non-member
    scores higher than a random member (ties count half). See the module
    docstring for how to read it.
    """
    members, nonmembers = _as_array(member_scores), _as_array(nonmember_scores)
    if members.size == 0 or nonmembers.size == 0:
        raise ValueError(
            f"an MIA AUC needs scores on both sides, got {members.size} member and {nonmembers.size} non-member scores"
        )
    labels = np.concatenate([np.zeros(members.size), np.ones(nonmembers.size)])
    return float(roc_auc_score(labels, np.concatenate([members, nonmembers])))


def _as_array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _check_k(k: float) -> None:
    if not 0 < k <= 1:
        raise ValueError(f"k must be a share of tokens in (0, 1], got {k}")
