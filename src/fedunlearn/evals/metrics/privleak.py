"""Privacy leakage (``privleak``, Shi et al., 2024, "MUSE: Machine Unlearning Six-Way Evaluation").

The relative gap between the evaluated model's membership inference AUC on
forget versus holdout data and that of a reference model trained without the
forget data (the retain model):

    privleak = ((1 - auc) - (1 - ref_auc)) / ((1 - ref_auc) + 1e-10) * 100

``auc`` is oriented as in ``fedunlearn.evals.metrics.mia`` (1 when the forget
data is much more likely than the holdout data). MUSE reports the AUC the other
way round, so OpenUnlearning, whose formula this is, takes ``1 - auc`` on both
sides. The attack is Min-K% (``mia_min_k``). Reading the value:

* 0: the model leaks as much as the retain model (ideal);
* negative: forget data is easier to detect than under the retain model
  (under-unlearning, for example the fine-tuned model);
* positive: forget data looks less likely than unseen data (over-unlearning).

Without a reference, ``ref_auc`` is 0.5 (OpenUnlearning's ``ref_value``), the AUC
of a model that cannot tell the two sets apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_REFERENCE_AUC = 0.5
# OpenUnlearning's privleak metric reads this metric's agg_value from the retain model's logs.
REFERENCE_METRIC = "mia_min_k"
EPSILON = 1e-10


def privleak(auc: float, reference_auc: float | None = None) -> float:
    """Return ``((1 - auc) - (1 - ref)) / ((1 - ref) + 1e-10) * 100``, with ``ref = reference_auc`` or 0.5."""
    if reference_auc is None:
        log.warning("privleak uses the reference AUC %s because no retain model logs were given", DEFAULT_REFERENCE_AUC)
        reference_auc = DEFAULT_REFERENCE_AUC
    for name, value in (("auc", auc), ("reference_auc", reference_auc)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be an AUC in [0, 1], got {value}")
    score, reference = 1 - auc, 1 - reference_auc
    return (score - reference) / (reference + EPSILON) * 100


def reference_auc_from_logs(logs: Mapping[str, Any], metric: str = REFERENCE_METRIC) -> float:
    """Return ``logs[metric]["agg_value"]``: the retain model's MIA AUC from its evaluation file.

    ``logs`` is a parsed ``TOFU_EVAL.json`` or ``MUSE_EVAL.json`` in OpenUnlearning's
    layout. Raises ``ValueError`` when the metric or its value is missing.
    """
    entry = logs.get(metric)
    value = entry.get("agg_value") if isinstance(entry, Mapping) else None
    if value is None:
        raise ValueError(
            f"the retain model logs have no {metric}.agg_value: evaluate the retain model with the {metric} metric "
            "first, or leave retain_logs_path unset to compare against an AUC of 0.5"
        )
    return float(value)
