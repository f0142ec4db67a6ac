"""Answer probability, plain and normalised against wrong options (TOFU's Q_A_Prob metrics).

A model's probability of an answer is ``p = exp(-avg_loss)``, where ``avg_loss``
is the mean negative log-likelihood per answer token, so ``p`` is the geometric
mean of the per-token probabilities and does not shrink with answer length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# OpenUnlearning adds this to the denominator of the normalised probability.
EPSILON = 1e-10


def probability(avg_losses: Sequence[float]) -> tuple[np.ndarray, float]:
    """Compute ``p_i = exp(-avg_loss_i)`` per item and their mean.

    Returns ``(per_item, agg_value)``.
    """
    probs = np.exp(-np.asarray(avg_losses, dtype=np.float64))
    _check_not_empty(probs, "avg_losses")
    return probs, float(np.mean(probs))


def probability_with_options(
    correct_avg_losses: Sequence[float], wrong_avg_losses_per_item: Sequence[Sequence[float]]
) -> tuple[np.ndarray, float]:
    """Compute the probability of the correct answer relative to the wrong ones, per item, and their mean.

    ``p_norm_i = p_c / (p_c + sum_k p_w,k + 1e-10)`` with ``p = exp(-avg_loss)``,
    where ``p_c`` belongs to item ``i``'s correct answer and ``p_w,k`` to its
    ``k``-th wrong answer. OpenUnlearning calls this ``probability_w_options``
    and reports it as ``ra_Q_A_Prob_normalised`` and ``wf_Q_A_Prob_normalised``.

    Returns ``(per_item, agg_value)``.
    """
    if len(correct_avg_losses) != len(wrong_avg_losses_per_item):
        raise ValueError(
            f"got {len(correct_avg_losses)} correct answers but {len(wrong_avg_losses_per_item)} lists of wrong answers: "
            "pass one list of wrong-answer losses per item"
        )
    correct = np.exp(-np.asarray(correct_avg_losses, dtype=np.float64))
    _check_not_empty(correct, "correct_avg_losses")
    wrong_sums = np.array([np.exp(-np.asarray(losses, dtype=np.float64)).sum() for losses in wrong_avg_losses_per_item])
    normalised = correct / (correct + wrong_sums + EPSILON)
    return normalised, float(np.mean(normalised))


def _check_not_empty(values: np.ndarray, name: str) -> None:
    if values.size == 0:
        raise ValueError(f"{name} is empty: a metric needs at least one item")
