"""Weighted gradient ascent, WGA (Wang et al., 2025, "Rethinking LLM Unlearning
Objectives: A Gradient Perspective and Go Beyond", ICLR 2025).

    L = -gamma * mean_t [ sg(p_t)^beta * NLL_t ] + alpha * L_retain

``NLL_t = -log p_t`` is the NLL of answer token ``t`` of the forget batch and
``p_t`` its probability; ``sg`` stops the gradient, so the weight only rescales
each token's ascent step: tokens the model already finds unlikely are pushed
less. The mean runs over all answer tokens of the batch (prompt and padding
excluded). ``beta = 0`` is gradient ascent. ``L_retain`` is the retain NLL or KL
term of ``ForgetRetainMethod``. Defaults as in OpenUnlearning's
``configs/trainer/WGA.yaml``: ``beta = 1``, ``gamma = 1``, ``alpha = 1``,
``retain_loss_type = NLL``.
"""

from __future__ import annotations

from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_non_negative
from fedunlearn.unlearn.methods.token_weights import weighted_ascent_loss


class WGA(ForgetRetainMethod):
    """Gradient ascent with each answer token weighted by its probability to the power ``beta``.

    Args:
        beta: exponent of the token weight (>= 0, default 1.0).
        gamma: weight of the forget term (default 1.0).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        retain_loss_type: ``NLL`` (default) or ``KL``.
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, alpha: float = 1.0, retain_loss_type: str = "NLL"):
        super().__init__(gamma, alpha, retain_loss_type)
        self.beta = check_non_negative("WGA", "beta", beta)

    def forget_loss(self, model, forget):
        return weighted_ascent_loss(model, forget, lambda p: p**self.beta)
