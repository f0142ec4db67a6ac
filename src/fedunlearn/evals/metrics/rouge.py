"""ROUGE of generated answers against the ground truth (TOFU's Q_A_ROUGE metrics).

Scores come from ``rouge_score.rouge_scorer.RougeScorer(["rouge1", "rougeL"],
use_stemmer=True)`` with the ground truth as target and the generation as
prediction. Per item: ``rouge1_recall``, ``rougeL_f1`` and ``rougeL_recall``,
where recall is the share of ground-truth unigrams (rouge1) or of the
ground truth's longest common subsequence with the generation (rougeL) that the
generation reproduces. The aggregate is the mean ``rougeL_recall``, as in
OpenUnlearning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer

# rouge_score logs an INFO line through absl for every scorer it builds.
logging.getLogger("absl").setLevel(logging.WARNING)


def rouge(generations: Sequence[str], ground_truths: Sequence[str]) -> tuple[list[dict[str, float]], float]:
    """Score each generation against its ground truth.

    Returns ``(per_item, agg_value)``: one dict of the three scores per item and
    the mean ``rougeL_recall``.
    """
    if len(generations) != len(ground_truths):
        raise ValueError(f"got {len(generations)} generations but {len(ground_truths)} ground truths: pass one of each per item")
    if not generations:
        raise ValueError("generations is empty: ROUGE needs at least one item")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    per_item = []
    for generation, ground_truth in zip(generations, ground_truths):
        scores = scorer.score(ground_truth, generation)
        per_item.append(
            {
                "rouge1_recall": scores["rouge1"].recall,
                "rougeL_f1": scores["rougeL"].fmeasure,
                "rougeL_recall": scores["rougeL"].recall,
            }
        )
    return per_item, float(np.mean([item["rougeL_recall"] for item in per_item]))
