"""SatImp (Yang et al., 2025, "Exploring Criteria of Loss Reweighting to Enhance
LLM Unlearning", ICML 2025): gradient ascent with each token weighted by its
saturation and its importance.

    L = -gamma * mean_t [ sg(p_t)^beta1 * sg(1 - p_t)^beta2 * NLL_t ] + alpha * L_retain

``NLL_t = -log p_t`` is the NLL of answer token ``t`` of the forget batch and
``p_t`` its probability; ``sg`` stops the gradient. ``p^beta1`` (saturation)
pushes tokens the model still predicts well, ``(1 - p)^beta2`` (importance)
damps tokens it is already certain of. The mean runs over all answer tokens of
the batch (prompt and padding excluded). ``L_retain`` is the retain NLL or KL
term of ``ForgetRetainMethod``. Defaults as in OpenUnlearning's
``configs/trainer/SatImp.yaml`` (the class there defaults to ``gamma = 1``,
``alpha = 0.1``, the config that its runs use sets the values here):
``beta1 = 5``, ``beta2 = 1``, ``gamma = 0.1``, ``alpha = 1``, ``retain_loss_type = NLL``.
"""

from __future__ import annotations

from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_non_negative
from fedunlearn.unlearn.methods.token_weights import weighted_ascent_loss


class SatImp(ForgetRetainMethod):
    """Gradient ascent weighted by ``p^beta1 * (1 - p)^beta2`` per answer token.

    Args:
        beta1: exponent of the saturation weight ``p`` (>= 0, default 5.0).
        beta2: exponent of the importance weight ``1 - p`` (>= 0, default 1.0).
        gamma: weight of the forget term (default 0.1).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        retain_loss_type: ``NLL`` (default) or ``KL``.
    """

    def __init__(self, beta1: float = 5.0, beta2: float = 1.0, gamma: float = 0.1, alpha: float = 1.0,
                 retain_loss_type: str = "NLL"):
        super().__init__(gamma, alpha, retain_loss_type)
        self.beta1 = check_non_negative("SatImp", "beta1", beta1)
        self.beta2 = check_non_negative("SatImp", "beta2", beta2)

    def forget_loss(self, model, forget):
        return weighted_ascent_loss(model, forget, lambda p: p**self.beta1 * (1 - p) ** self.beta2)
