"""A toy model and objective whose training steps can be computed by hand."""

import torch
from torch import nn


class Weights(nn.Module):
    """A model that is one trainable vector ``w = [1, -2]``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0]))


class LinearObjective:
    """Loss ``c . w``, whose gradient is ``c`` at every ``w``. Records ``w`` at each call.

    Each AdamW step without weight decay then moves ``w`` by ``lr * sign(c)``,
    and a NaN in ``c`` makes that coordinate of ``w`` NaN.
    """

    def __init__(self, c):
        self.c = torch.tensor(c)
        self.seen = []

    def compute_loss(self, model, batch):
        self.seen.append(model.w.detach().clone())
        return (self.c * model.w).sum()


def examples(count):
    """Return ``count`` one-token examples (the toy objective ignores their content)."""
    return [{"input_ids": [i], "attention_mask": [1], "labels": [i]} for i in range(count)]
