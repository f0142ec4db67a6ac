"""IdkNLL: fine-tune on refusals in place of the forget answers (the "IDK" baseline
of Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs").

    L = gamma * NLL_idk + alpha * L_retain

``NLL_idk`` is the mean NLL over the answer tokens of the forget batch's
questions paired with refusal answers ("I don't know." and the other phrasings
of ``data.idk``, one per forget item drawn from the seed); prompt and padding
positions are excluded. ``L_retain`` is the retain NLL or KL term of
``ForgetRetainMethod``. Defaults ``gamma = 1``, ``alpha = 1``,
``retain_loss_type = NLL``, as OpenUnlearning runs IdkNLL.
"""

from __future__ import annotations

from fedunlearn.losses import nll_loss
from fedunlearn.unlearn.methods.base import ForgetRetainMethod
from fedunlearn.unlearn.methods.refusal import RefusalAnswers, require


class IdkNLL(ForgetRetainMethod):
    """Descent on (forget question, refusal) pairs.

    Args:
        gamma: weight of the refusal term (default 1.0).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        retain_loss_type: ``NLL`` (default) or ``KL``.
    """

    refusals: RefusalAnswers | None = None

    def prepare(self, model, forget_examples, context):
        super().prepare(model, forget_examples, context)
        self.refusals = RefusalAnswers(forget_examples, context)

    def forget_loss(self, model, forget):
        return nll_loss(model, require(self.refusals, "IdkNLL", forget).batch(forget))
