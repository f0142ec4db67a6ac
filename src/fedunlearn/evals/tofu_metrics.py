"""The TOFU metrics by OpenUnlearning key name: the data each reads and how it is combined.

``{forget}`` in a split name is the forget split (for example ``forget10``) and
``{holdout}`` the holdout split (``holdout10``). As in OpenUnlearning's TOFU
configs, every forget metric reads ``{forget}_perturbed``, which contains the same
questions and answers as ``{forget}`` plus the paraphrased and perturbed answers.

Model-based metrics:

* ``{forget,retain}_Q_A_Prob``, ``_Q_A_PARA_Prob``, ``_Q_A_PERT_Prob``: answer
  probability ``exp(-avg_loss)`` of the ``answer``, ``paraphrased_answer`` or
  each ``perturbed_answer`` (``retain`` reads ``retain_perturbed``).
* ``{forget,retain}_Q_A_ROUGE``, ``_Q_A_PARA_ROUGE``, ``_Q_A_PERT_ROUGE``: ROUGE-L
  recall of the greedy answer to ``question`` against the answer, the
  paraphrased answer or each perturbed answer.
* ``ra_*`` (``real_authors_perturbed``) and ``wf_*`` (``world_facts_perturbed``):
  ``Q_A_Prob``, ``Q_A_PERT_Prob`` and ``Q_A_ROUGE``.
* ``mia_loss``, ``mia_zlib``, ``mia_min_k``, ``mia_min_k_plus_plus``,
  ``mia_reference``, ``mia_gradnorm``: ROC AUC of a membership inference attack
  telling ``{forget}_perturbed`` answers (members) from ``{holdout}`` answers.
* ``extraction_strength``, ``exact_memorization``: on ``{forget}_perturbed`` answers.

Metrics derived from stored results:

* ``*_Q_A_Prob_normalised`` (ra, wf): correct answer against perturbed answers.
* ``forget_truth_ratio`` (``closer_to_1_better``), ``retain_Truth_Ratio``,
  ``ra_Truth_Ratio`` and ``wf_Truth_Ratio`` (``true_better``): paraphrased (or,
  for ra and wf, plain) answer against perturbed answers.
* ``forget_quality``: KS test of ``forget_truth_ratio`` against the retain model's.
* ``model_utility``: harmonic mean of nine retain, ra and wf metrics.
* ``privleak``: ``mia_min_k`` relative to the retain model's ``mia_min_k``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from fedunlearn.evals.metrics.model_utility import MODEL_UTILITY_COMPONENTS
from fedunlearn.evals.metrics.truth_ratio import closer_to_1_better, true_better
from fedunlearn.evals.selection import select_metrics

FORGET_SPLIT = "{forget}_perturbed"
HOLDOUT_SPLIT = "{holdout}"
ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference", "gradnorm")
MODEL_KINDS = ("probability", "rouge", "mia", "memorization")


@dataclass(frozen=True)
class MetricSpec:
    """The data and the combination rule of one TOFU metric.

    ``kind`` is ``probability``, ``rouge``, ``mia`` or ``memorization`` for
    metrics that run the model on ``answer_field`` of ``split`` (``variant`` names
    the attack or the memorization metric). The other kinds
    (``normalised_probability``, ``truth_ratio``, ``forget_quality``,
    ``model_utility``, ``privleak``) combine the stored results of
    ``prerequisites``. For the first two, these are the correct and the wrong
    answers' probability metrics.
    """

    kind: str
    split: str | None = None
    answer_field: str | None = None
    prerequisites: tuple[str, ...] = ()
    aggregator: Callable[[np.ndarray], float] | None = None
    variant: str | None = None


def _qa_metrics(prefix: str, split: str) -> dict[str, MetricSpec]:
    """Specify the probability and ROUGE metrics of the answer, paraphrased answer and perturbed answers."""
    metrics = {}
    for suffix, answer_field in (("", "answer"), ("_PARA", "paraphrased_answer"), ("_PERT", "perturbed_answer")):
        metrics[f"{prefix}_Q_A{suffix}_Prob"] = MetricSpec("probability", split, answer_field)
        metrics[f"{prefix}_Q_A{suffix}_ROUGE"] = MetricSpec("rouge", split, answer_field)
    return metrics


def _option_metrics(prefix: str, split: str) -> dict[str, MetricSpec]:
    """Specify the metrics of a split without paraphrases (ra, wf): the plain answer is the correct option."""
    correct, wrong = f"{prefix}_Q_A_Prob", f"{prefix}_Q_A_PERT_Prob"
    return {
        correct: MetricSpec("probability", split, "answer"),
        wrong: MetricSpec("probability", split, "perturbed_answer"),
        f"{prefix}_Q_A_ROUGE": MetricSpec("rouge", split, "answer"),
        f"{prefix}_Q_A_Prob_normalised": MetricSpec("normalised_probability", prerequisites=(correct, wrong)),
        f"{prefix}_Truth_Ratio": MetricSpec("truth_ratio", prerequisites=(correct, wrong), aggregator=true_better),
    }


# Listed so that every metric comes after its prerequisites.
METRICS: dict[str, MetricSpec] = {
    **_qa_metrics("forget", FORGET_SPLIT),
    "forget_truth_ratio": MetricSpec(
        "truth_ratio", prerequisites=("forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob"), aggregator=closer_to_1_better
    ),
    "forget_quality": MetricSpec("forget_quality", prerequisites=("forget_truth_ratio",)),
    **_qa_metrics("retain", "retain_perturbed"),
    "retain_Truth_Ratio": MetricSpec(
        "truth_ratio", prerequisites=("retain_Q_A_PARA_Prob", "retain_Q_A_PERT_Prob"), aggregator=true_better
    ),
    **_option_metrics("ra", "real_authors_perturbed"),
    **_option_metrics("wf", "world_facts_perturbed"),
    "model_utility": MetricSpec("model_utility", prerequisites=MODEL_UTILITY_COMPONENTS),
    **{f"mia_{attack}": MetricSpec("mia", FORGET_SPLIT, "answer", variant=attack) for attack in ATTACKS},
    "privleak": MetricSpec("privleak", prerequisites=("mia_min_k",)),
    "extraction_strength": MetricSpec("memorization", FORGET_SPLIT, "answer", variant="extraction_strength"),
    "exact_memorization": MetricSpec("memorization", FORGET_SPLIT, "answer", variant="exact_memorization"),
}

# The full suite. mia_reference is left out because it needs a reference model (reference_model_path).
DEFAULT_METRICS = tuple(name for name in METRICS if name != "mia_reference")


def resolve_metrics(metrics: Iterable[str] | None) -> list[str]:
    """Return the requested metrics (default ``DEFAULT_METRICS``) and their prerequisites in computation order."""
    prerequisites = {name: spec.prerequisites for name, spec in METRICS.items()}
    return select_metrics(metrics, order=list(METRICS), defaults=DEFAULT_METRICS, prerequisites=prerequisites,
                          benchmark="TOFU")
