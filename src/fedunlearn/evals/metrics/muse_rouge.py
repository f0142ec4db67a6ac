"""ROUGE-L F1 of generations, MUSE's score for verbatim and knowledge memorization.

* ``forget_verbmem_ROUGE`` (VerbMem): the model continues a prefix of a forget
  document, and the continuation is compared with the document's true
  continuation, cut to as many tokens as the model may generate.
* ``forget_knowmem_ROUGE`` and ``retain_knowmem_ROUGE`` (KnowMem): the model
  answers a question after a few answered examples, and the answer, cut at the
  first ``STOP_STRINGS`` occurrence, is compared with the true answer.

Per item the scores are those of ``fedunlearn.evals.metrics.rouge.rouge``
(``rouge_score`` with the Porter stemmer, as OpenUnlearning computes them; MUSE's
own scripts do not stem). The aggregate is the mean ``rougeL_f1``: ``F1 =
2 P R / (P + R)`` with ``P`` and ``R`` the longest common subsequence's share of
the generation and of the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedunlearn.evals.metrics.rouge import rouge

# MUSE's knowmem script cuts an answer at the first of these, so a model that goes on
# to write the next question is not penalised for it.
STOP_STRINGS = ("\n\n", "\nQuestion", "Question:")


def cut_at_stop_strings(text: str, stop_strings: Sequence[str] = STOP_STRINGS) -> str:
    """Return ``text`` up to the first occurrence of any stop string, without surrounding whitespace."""
    for stop in stop_strings:
        text = text.split(stop)[0]
    return text.strip()


def rouge_l_f1(generations: Sequence[str], ground_truths: Sequence[str]) -> tuple[list[dict[str, float]], float]:
    """Score each generation against its ground truth and return the per-item scores and the mean ``rougeL_f1``."""
    per_item, _ = rouge(generations, ground_truths)
    return per_item, float(np.mean([item["rougeL_f1"] for item in per_item]))
