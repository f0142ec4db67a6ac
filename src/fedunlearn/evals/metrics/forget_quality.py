"""Forget quality (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", section 2.2.3).

The p-value of the two-sample Kolmogorov-Smirnov test
(``scipy.stats.ks_2samp``, two-sided) between the forget-set truth ratios of
the evaluated model and those of a reference model trained only on the retain
set. A high p-value means the test cannot distinguish the two distributions, so
forgetting is close to retraining from scratch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.stats import ks_2samp

log = logging.getLogger(__name__)


def forget_quality(forget_truth_ratios: Sequence[float], reference_truth_ratios: Sequence[float] | None) -> float | None:
    """Return the KS-test p-value, or None with a warning when there is no reference."""
    if reference_truth_ratios is None:
        log.warning(
            "forget_quality is None because no reference truth ratios were given: "
            "pass those of a model trained on the retain set only"
        )
        return None
    forget = np.asarray(forget_truth_ratios, dtype=np.float64)
    reference = np.asarray(reference_truth_ratios, dtype=np.float64)
    if forget.size == 0 or reference.size == 0:
        raise ValueError(
            f"forget_quality needs truth ratios on both sides, got {forget.size} for the model "
            f"and {reference.size} for the reference"
        )
    return float(ks_2samp(forget, reference).pvalue)
