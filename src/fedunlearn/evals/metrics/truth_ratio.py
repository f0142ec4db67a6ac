"""Truth ratio (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", section 2.2.2).

Per item, ``tr = p_wrong / (p_correct + 1e-10)`` with

* ``p_wrong = exp(-mean_k avg_loss_wrong,k)``, the geometric mean of the
  per-answer probabilities of the wrong (perturbed) answers, and
* ``p_correct = exp(-avg_loss_correct)``,

where ``avg_loss`` is the mean negative log-likelihood per answer token. The
``1e-10`` matches OpenUnlearning's ``truth_ratio`` metric. ``tr`` below 1 means
the model prefers the correct answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPSILON = 1e-10


def truth_ratio(correct_avg_losses: Sequence[float], wrong_avg_losses_per_item: Sequence[Sequence[float]]) -> np.ndarray:
    """Compute the truth ratio of every item (formula in the module docstring)."""
    if len(correct_avg_losses) != len(wrong_avg_losses_per_item):
        raise ValueError(
            f"got {len(correct_avg_losses)} correct answers but {len(wrong_avg_losses_per_item)} lists of wrong answers: "
            "pass one list of wrong-answer losses per item"
        )
    if len(correct_avg_losses) == 0:
        raise ValueError("correct_avg_losses is empty: a truth ratio needs at least one item")
    correct_prob = np.exp(-np.asarray(correct_avg_losses, dtype=np.float64))
    wrong_mean_losses = np.array([np.mean(np.asarray(losses, dtype=np.float64)) for losses in wrong_avg_losses_per_item])
    wrong_prob = np.exp(-wrong_mean_losses)
    return wrong_prob / (correct_prob + EPSILON)


def closer_to_1_better(ratios: Sequence[float]) -> float:
    """Aggregate forget-set truth ratios as ``mean(min(tr, 1 / (tr + 1e-10)))``.

    On the forget set a model that never saw the data rates correct and wrong
    answers alike, so 1 (``tr == 1``) is best and 0 is worst.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.minimum(ratios, 1 / (ratios + EPSILON))))


def true_better(ratios: Sequence[float]) -> float:
    """Aggregate truth ratios on data the model should know as ``mean(max(0, 1 - tr))``.

    Values run from 0 (wrong answers at least as likely as the correct one) to
    1 (correct answer far more likely).
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.maximum(0.0, 1 - ratios)))
