"""SimNPO (Fan et al., 2024, "Simplicity Prevails: Rethinking Negative Preference
Optimization for LLM Unlearning"): NPO without a reference model, with a
length-normalised log-probability.

    L = -gamma * (2 / beta) * mean_i log sigmoid(beta * (NLL_i / |y_i| - delta))
        + alpha * L_retain

``NLL_i / |y_i|`` is the mean NLL over the answer tokens of forget item ``i``
(prompt and padding excluded), so the loss falls as every forget answer
becomes less likely per token; ``delta`` is the reward margin. ``L_retain`` is
the retain NLL or KL term of ``ForgetRetainMethod``. Defaults as in
OpenUnlearning's ``configs/trainer/SimNPO.yaml``: ``beta = 4.5``,
``delta = 0``, ``gamma = 0.125``, ``alpha = 1``, ``retain_loss_type = NLL``.
"""

from __future__ import annotations

import torch.nn.functional as F

from fedunlearn.losses import token_nll
from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_positive


class SimNPO(ForgetRetainMethod):
    """Reference-free NPO with length normalisation.

    Args:
        beta: inverse temperature (> 0, default 4.5).
        delta: reward margin (default 0.0).
        gamma: weight of the forget term (default 0.125).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        retain_loss_type: ``NLL`` (default) or ``KL``.
    """

    def __init__(self, beta: float = 4.5, delta: float = 0.0, gamma: float = 0.125, alpha: float = 1.0,
                 retain_loss_type: str = "NLL"):
        super().__init__(gamma, alpha, retain_loss_type)
        self.beta = check_positive("SimNPO", "beta", beta)
        self.delta = float(delta)

    def forget_loss(self, model, forget):
        nll, mask = token_nll(model, forget)
        mean_nll = nll.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return -2.0 / self.beta * F.logsigmoid(self.beta * (mean_nll - self.delta)).mean()
