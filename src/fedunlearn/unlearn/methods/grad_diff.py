"""Gradient difference (Liu et al., 2022, "Continual Learning and Private Unlearning"):
gradient ascent on the forget set and descent on retained data.

    L = -gamma * NLL_forget + alpha * L_retain

``NLL_forget`` is the mean NLL over the answer tokens of the forget batch.
``L_retain`` is the retain batch's mean answer-token NLL (``retain_loss_type=NLL``)
or the mean answer-token ``KL(p_ref || p_theta)`` to the model at the start of
unlearning (``retain_loss_type=KL``, the "KL minimisation" baseline of TOFU,
Maini et al., 2024). The retain batch is drawn from the requesting client's own
retained examples, since in a federation a client sees no one else's data.
Defaults as in OpenUnlearning's ``configs/trainer/GradDiff.yaml``: ``gamma = 1``,
``alpha = 1``, ``retain_loss_type = NLL``.
"""

from __future__ import annotations

from fedunlearn.losses import nll_loss
from fedunlearn.unlearn.methods.base import ForgetRetainMethod


class GradDiff(ForgetRetainMethod):
    """Ascent on forget, descent on retain.

    Args:
        gamma: weight of the forget term (default 1.0).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        retain_loss_type: ``NLL`` (default) or ``KL``.
    """

    def forget_loss(self, model, forget):
        return -nll_loss(model, forget)
