"""The per-step hook of local training: it runs after every optimizer step and may edit the weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedunlearn.federated.client import TrainingArgs, train_locally


class Weights(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0]))


class LinearObjective:
    """Loss ``c . w``; records the weights each batch's loss is taken at."""

    def __init__(self):
        self.c = torch.tensor([0.3, -0.7])
        self.seen = []

    def compute_loss(self, model, batch):
        self.seen.append(model.w.detach().clone())
        return (self.c * model.w).sum()


def batches(count):
    return [{"input_ids": [i], "attention_mask": [1], "labels": [i]} for i in range(count)]


@pytest.mark.parametrize(("accumulation", "expected_calls"), [(1, 5), (2, 3)])  # 5 batches: 5 steps, or 2 + 1 partial
def test_hook_runs_after_each_optimizer_step(accumulation, expected_calls):
    model = Weights()
    calls = []
    args = TrainingArgs(learning_rate=0.1, per_device_train_batch_size=1, gradient_accumulation_steps=accumulation)

    train_locally(model, {"train": batches(5)}, "train", LinearObjective(), args, seed=0, pad_token_id=0,
                  step_hook=lambda params: calls.append([p.detach().clone() for p in params]))

    assert len(calls) == expected_calls
    assert torch.equal(calls[-1][0], model.w.detach())


def test_hook_edits_reach_the_next_step():
    model = Weights()
    objective = LinearObjective()
    args = TrainingArgs(learning_rate=0.1, per_device_train_batch_size=1)

    train_locally(model, {"train": batches(3)}, "train", objective, args, seed=0, pad_token_id=0,
                  step_hook=lambda params: params[0].zero_())

    assert torch.equal(objective.seen[1], torch.zeros(2))
    assert torch.equal(objective.seen[2], torch.zeros(2))
    assert torch.equal(model.w.detach(), torch.zeros(2))
