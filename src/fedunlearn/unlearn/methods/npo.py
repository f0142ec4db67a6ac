"""Negative Preference Optimization (Zhang et al., 2024, "Negative Preference
Optimization: From Catastrophic Collapse to Effective Unlearning").

    L = -(2 / beta) * mean_i log sigmoid(-beta * (log p_theta(y_i|x_i) - log p_ref(y_i|x_i)))
        + alpha * NLL_retain

``log p(y|x)`` sums the log-probabilities of the answer tokens of forget item
``i`` (prompt and padding excluded); the mean runs over the items of the batch.
``NLL_retain`` is the mean answer-token NLL of a batch of the client's own
retained data. The reference ``p_ref`` is the model before unlearning: its
log-probabilities of every forget item are computed once in ``prepare`` (in
eval mode), so no second copy of the model is kept. Defaults as in
OpenUnlearning: ``beta = 0.1``, ``alpha = 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedunlearn.data.collator import pad_batch
from fedunlearn.losses import nll_loss, sequence_nll
from fedunlearn.unlearn.methods.base import UnlearningMethod


class NPO(UnlearningMethod):
    """NPO with a retain NLL term.

    Args:
        beta: inverse temperature (default 0.1).
        alpha: weight of the retain term (default 1.0); 0 drops it.
        batch_size: batch size of the reference pass in ``prepare`` (default 16).
    """

    def __init__(self, beta: float = 0.1, alpha: float = 1.0, batch_size: int = 16):
        if beta <= 0:
            raise ValueError(f"NPO beta must be > 0, got {beta}")
        self.beta = float(beta)
        self.alpha = float(alpha)
        self.batch_size = batch_size
        self.needs_retain = self.alpha != 0

    @torch.no_grad()
    def prepare(self, model, forget_examples, pad_token_id):
        """Store each forget example's reference NLL under the key ``ref_nll``."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        for start in range(0, len(forget_examples), self.batch_size):
            chunk = forget_examples[start : start + self.batch_size]
            inputs = {k: v.to(device) for k, v in pad_batch(chunk, pad_token_id).items()}
            for example, nll in zip(chunk, sequence_nll(model, inputs).tolist()):
                example["ref_nll"] = nll
        model.train(was_training)

    def compute_loss(self, model, batch):
        forget = batch["forget"]
        if "ref_nll" not in forget:
            raise RuntimeError("NPO.prepare must run before training: the forget batch has no ref_nll")
        # log p_theta - log p_ref = NLL_ref - NLL_theta
        log_ratio = forget["ref_nll"].float() - sequence_nll(model, forget)
        loss = -2.0 / self.beta * F.logsigmoid(-self.beta * log_ratio).mean()
        if self.alpha:
            loss = loss + self.alpha * nll_loss(model, batch["retain"])
        return loss
