"""IdkDPO: direct preference optimisation (Rafailov et al., 2023, "Direct Preference
Optimization: Your Language Model is Secretly a Reward Model") that prefers a
refusal to the forget answer, as TOFU (Maini et al., 2024) and OpenUnlearning
(``trainer=DPO`` on the ``idk`` forget data) run it.

    L = -gamma * (2 / beta) * mean_i log sigmoid(beta * (r_i(idk) - r_i(forget))) + alpha * L_retain
    r_i(y) = log p_theta(y | x_i) - log p_ref(y | x_i)

``log p(y|x)`` sums the log-probabilities of the answer tokens of item ``i``
(prompt and padding excluded): the forget answer, or the item's refusal from
``data.idk``, one per forget item drawn from the seed. The reference is the
model at the start of unlearning; both its log-probabilities are computed once
per forget item in ``prepare``. ``L_retain`` is the retain NLL or KL term of
``ForgetRetainMethod``. Defaults as in OpenUnlearning's
``configs/trainer/DPO.yaml``: ``beta = 0.1``, ``gamma = 1``, ``alpha = 1``,
``retain_loss_type = NLL``.
"""

from __future__ import annotations

import torch.nn.functional as F

from fedunlearn.losses import sequence_nll
from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_integer, check_positive
from fedunlearn.unlearn.methods.npo import store_reference_nll
from fedunlearn.unlearn.methods.refusal import RefusalAnswers, require


class IdkDPO(ForgetRetainMethod):
    """DPO with the refusal as the preferred answer and the forget answer as the rejected one.

    Args:
        beta: inverse temperature (> 0, default 0.1).
        gamma: weight of the preference term (default 1.0).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        retain_loss_type: ``NLL`` (default) or ``KL``.
        batch_size: batch size of the reference pass in ``prepare`` (default 16).
    """

    refusals: RefusalAnswers | None = None

    def __init__(self, beta: float = 0.1, gamma: float = 1.0, alpha: float = 1.0, retain_loss_type: str = "NLL",
                 batch_size: int = 16):
        super().__init__(gamma, alpha, retain_loss_type)
        self.beta = check_positive("IdkDPO", "beta", beta)
        self.batch_size = check_integer("IdkDPO", "batch_size", batch_size, 1)

    def prepare(self, model, forget_examples, context):
        super().prepare(model, forget_examples, context)
        self.refusals = RefusalAnswers(forget_examples, context)
        store_reference_nll(model, forget_examples, context.pad_token_id, self.batch_size)
        store_reference_nll(model, self.refusals.examples, context.pad_token_id, self.batch_size)

    def forget_loss(self, model, forget):
        refusal = require(self.refusals, "IdkDPO", forget).batch(forget)
        # r = log p_theta - log p_ref = NLL_ref - NLL_theta
        chosen = refusal["ref_nll"].float() - sequence_nll(model, refusal)
        rejected = forget["ref_nll"].float() - sequence_nll(model, forget)
        return -2.0 / self.beta * F.logsigmoid(self.beta * (chosen - rejected)).mean()
