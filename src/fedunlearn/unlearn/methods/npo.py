"""Negative Preference Optimization (Zhang et al., 2024, "Negative Preference
Optimization: From Catastrophic Collapse to Effective Unlearning").

    L = -gamma * (2 / beta) * mean_i log sigmoid(-beta * (log p_theta(y_i|x_i) - log p_ref(y_i|x_i)))
        + alpha * L_retain

``log p(y|x)`` sums the log-probabilities of the answer tokens of forget item
``i`` (prompt and padding excluded); the mean runs over the items of the batch.
``L_retain`` is the retain NLL or KL term of ``ForgetRetainMethod``. The
reference ``p_ref`` is the model at the start of unlearning: its
log-probability of every forget item is computed once in ``prepare`` (in eval
mode), so training runs no reference forward pass for the forget term.
Defaults as in OpenUnlearning's ``configs/trainer/NPO.yaml``: ``beta = 0.1``,
``gamma = 1``, ``alpha = 1``, ``retain_loss_type = NLL``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedunlearn.data.collator import pad_batch
from fedunlearn.losses import sequence_nll
from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_integer, check_positive


class NPO(ForgetRetainMethod):
    """NPO with a retain term.

    Args:
        beta: inverse temperature (> 0, default 0.1).
        gamma: weight of the forget term (default 1.0).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        retain_loss_type: ``NLL`` (default) or ``KL``.
        batch_size: batch size of the reference pass in ``prepare`` (default 16).
    """

    def __init__(self, beta: float = 0.1, gamma: float = 1.0, alpha: float = 1.0, retain_loss_type: str = "NLL",
                 batch_size: int = 16):
        super().__init__(gamma, alpha, retain_loss_type)
        self.beta = check_positive("NPO", "beta", beta)
        self.batch_size = check_integer("NPO", "batch_size", batch_size, 1)

    def prepare(self, model, forget_examples, context):
        super().prepare(model, forget_examples, context)
        store_reference_nll(model, forget_examples, context.pad_token_id, self.batch_size)

    def forget_loss(self, model, forget):
        if "ref_nll" not in forget:
            raise RuntimeError("NPO.prepare must run before training: the forget batch has no ref_nll")
        # log p_theta - log p_ref = NLL_ref - NLL_theta
        log_ratio = forget["ref_nll"].float() - sequence_nll(model, forget)
        return -2.0 / self.beta * F.logsigmoid(-self.beta * log_ratio).mean()


@torch.no_grad()
def store_reference_nll(model, examples: list[dict], pad_token_id: int, batch_size: int) -> None:
    """Store each example's summed answer-token NLL under the model, in eval mode, under the key ``ref_nll``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            inputs = {k: v.to(device) for k, v in pad_batch(chunk, pad_token_id).items()}
            for example, nll in zip(chunk, sequence_nll(model, inputs).tolist()):
                example["ref_nll"] = nll
    finally:
        model.train(was_training)
