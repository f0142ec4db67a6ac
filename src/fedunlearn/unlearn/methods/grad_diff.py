"""Gradient difference (Liu et al., 2022, "Continual Learning and Private Unlearning"):
gradient ascent on the forget set and descent on retained data.

    L = -gamma * NLL_forget + alpha * NLL_retain

Each NLL is the mean over answer tokens of its batch. The retain batch is drawn
from the requesting client's own retained examples, since in a federation a
client sees no one else's data. Defaults ``gamma = 1``, ``alpha = 1``.
"""

from __future__ import annotations

from fedunlearn.losses import nll_loss
from fedunlearn.unlearn.methods.base import UnlearningMethod


class GradDiff(UnlearningMethod):
    """Ascent on forget, descent on retain.

    Args:
        gamma: weight of the forget term (default 1.0).
        alpha: weight of the retain term (default 1.0).
    """

    needs_retain = True

    def __init__(self, gamma: float = 1.0, alpha: float = 1.0):
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def compute_loss(self, model, batch):
        return -self.gamma * nll_loss(model, batch["forget"]) + self.alpha * nll_loss(model, batch["retain"])
