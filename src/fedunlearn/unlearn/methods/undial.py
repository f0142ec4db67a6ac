"""UNDIAL (Dong et al., 2025, "UNDIAL: Self-Distillation with Adjusted Logits for
Robust Unlearning in Large Language Models", NAACL 2025): self-distillation
towards the reference model's logits with the answer token's logit lowered.

    q_t = softmax(z_ref_t - beta * onehot(y_t))
    L = gamma * mean_t [ -sum_v q_t,v log softmax(z_t)_v ] + alpha * L_retain

``z_t`` and ``z_ref_t`` are the current and reference logits that predict
answer token ``y_t`` of the forget batch. The reference is the model at the
start of unlearning (``base.Reference``, one extra forward pass per step). The
mean runs over the answer tokens only; OpenUnlearning's version averages over
every position of the batch, prompt and padding included. ``L_retain`` is the
retain NLL or KL term of ``ForgetRetainMethod``. Defaults as in
OpenUnlearning's ``configs/trainer/UNDIAL.yaml``: ``beta = 10``, ``gamma = 1``,
``alpha = 0`` (no retain term), ``retain_loss_type = NLL``.
"""

from __future__ import annotations

import torch.nn.functional as F

from fedunlearn.losses import answer_logits, soft_cross_entropy
from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_positive


class UNDIAL(ForgetRetainMethod):
    """Distil from the reference with the answer token's logit reduced by ``beta``.

    Args:
        beta: how far the answer token's reference logit is lowered (> 0, default 10.0).
        gamma: weight of the forget term (default 1.0).
        alpha: weight of the retain term (default 0.0, no retain term).
        retain_loss_type: ``NLL`` (default) or ``KL``.
    """

    def __init__(self, beta: float = 10.0, gamma: float = 1.0, alpha: float = 0.0, retain_loss_type: str = "NLL"):
        super().__init__(gamma, alpha, retain_loss_type)
        self.beta = check_positive("UNDIAL", "beta", beta)

    def needs_reference(self):
        return True

    def forget_loss(self, model, forget):
        ref_logits = self.reference_output(model, forget).logits[:, :-1].float()
        logits, labels, mask = answer_logits(model, forget)
        # Lower z_ref[y_t] by beta in place of building a [batch, seq, vocab] one-hot tensor.
        penalty = (-self.beta * mask.float()).unsqueeze(-1)
        adjusted = ref_logits.scatter_add(-1, labels.masked_fill(~mask, 0).unsqueeze(-1), penalty)
        return soft_cross_entropy(logits, F.softmax(adjusted, dim=-1), mask)
