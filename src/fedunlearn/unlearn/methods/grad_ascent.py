"""Gradient ascent on the forget set (Jang et al., 2023, "Knowledge Unlearning for
Mitigating Privacy Risks in Language Models").

    L = -NLL_forget

where ``NLL_forget`` is the mean NLL over all answer tokens of the forget batch
(prompt and padding positions excluded). Minimising ``L`` makes the forget
answers less likely without bound, so it is usually run for a few epochs only.
OpenUnlearning's ``GradAscent`` has no settings and no retain term; neither has
this one.
"""

from __future__ import annotations

from fedunlearn.losses import nll_loss
from fedunlearn.unlearn.methods.base import UnlearningMethod


class GradAscent(UnlearningMethod):
    """Maximise the forget-set NLL."""

    def compute_loss(self, model, batch):
        return -nll_loss(model, batch["forget"])
