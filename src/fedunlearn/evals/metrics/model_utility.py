"""Model utility on TOFU: the harmonic mean of nine retain-side metrics.

``model_utility = hmean(retain_Q_A_Prob, retain_Q_A_ROUGE, retain_Truth_Ratio,
ra_Q_A_Prob_normalised, ra_Q_A_ROUGE, ra_Truth_Ratio, wf_Q_A_Prob_normalised,
wf_Q_A_ROUGE, wf_Truth_Ratio)``, computed with ``scipy.stats.hmean`` as in
OpenUnlearning. The harmonic mean is 0 as soon as one component is 0, so a
model must keep every ability to score well.
"""

from __future__ import annotations

from collections.abc import Mapping

from scipy.stats import hmean

MODEL_UTILITY_COMPONENTS = (
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised",
    "ra_Q_A_ROUGE",
    "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised",
    "wf_Q_A_ROUGE",
    "wf_Truth_Ratio",
)


def model_utility(components: Mapping[str, float]) -> float:
    """Return the harmonic mean of the nine ``MODEL_UTILITY_COMPONENTS`` values in ``components``.

    Extra keys are ignored. A missing or None component raises ``ValueError``.
    """
    missing = [name for name in MODEL_UTILITY_COMPONENTS if components.get(name) is None]
    if missing:
        raise ValueError(f"model_utility is missing components {missing}: compute them first")
    return float(hmean([components[name] for name in MODEL_UTILITY_COMPONENTS]))
