"""CE-U, cross-entropy unlearning (Yang, 2025, "CE-U: Cross Entropy Unlearning",
arXiv:2503.01224).

    q_t = softmax(sg(z_t) with z_t[y_t] = -inf)
    L = gamma * mean_t [ -sum_v q_t,v log softmax(z_t)_v ] + alpha * L_retain

``z_t`` are the current logits that predict answer token ``y_t`` of the forget
batch and ``sg`` stops the gradient: the target is the model's own next-token
distribution with the answer token removed, so the loss pulls that token's
probability to 0 without the unbounded growth of gradient ascent. The mean
runs over the answer tokens of the batch except the first
``ignore_first_n_answer_tokens`` of each answer (footnote on training settings
of the paper). OpenUnlearning's ``CEU`` has no retain term, which ``alpha = 0``
(the default here) reproduces; ``alpha > 0`` adds the retain NLL or KL term of
``ForgetRetainMethod``. Defaults as in OpenUnlearning's
``configs/trainer/CEU.yaml``: ``ignore_first_n_answer_tokens = 1``.
"""

from __future__ import annotations

import torch.nn.functional as F

from fedunlearn.losses import answer_logits, soft_cross_entropy
from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_integer


class CEU(ForgetRetainMethod):
    """Cross entropy towards the model's own distribution without the answer token.

    Args:
        ignore_first_n_answer_tokens: answer tokens at the start of each answer left out of the loss (>= 0, default 1).
        gamma: weight of the forget term (default 1.0).
        alpha: weight of the retain term (default 0.0, no retain term).
        retain_loss_type: ``NLL`` (default) or ``KL``.
    """

    def __init__(self, ignore_first_n_answer_tokens: int = 1, gamma: float = 1.0, alpha: float = 0.0,
                 retain_loss_type: str = "NLL"):
        super().__init__(gamma, alpha, retain_loss_type)
        self.ignore_first_n_answer_tokens = check_integer("CEU", "ignore_first_n_answer_tokens",
                                                          ignore_first_n_answer_tokens, 0)

    def forget_loss(self, model, forget):
        logits, labels, mask = answer_logits(model, forget)
        mask = mask & (mask.cumsum(dim=1) > self.ignore_first_n_answer_tokens)
        target_logits = logits.detach().scatter(-1, labels.masked_fill(~mask, 0).unsqueeze(-1), float("-inf"))
        return soft_cross_entropy(logits, F.softmax(target_logits, dim=-1), mask)
