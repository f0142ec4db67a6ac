import math

import pytest
import torch
from torch import nn

from fedunlearn.data.template import tokenize_qa
from fedunlearn.data.tofu import load_split
from fedunlearn.federated.client import TrainingArgs, batch_loader, count_batches, train_locally
from fedunlearn.federated.state import get_trainable_state, load_trainable_state
from fedunlearn.losses import FineTune

PLAIN = {"apply_chat_template": False}


# --- TrainingArgs ----------------------------------------------------------------------------------


def test_args_defaults():
    assert TrainingArgs.from_config(None) == TrainingArgs()


def test_args_ignore_unknown_keys():
    args = TrainingArgs.from_config({"learning_rate": 0.5, "logging_steps": 10})

    assert args.learning_rate == 0.5


def test_args_bad_optim_raises():
    with pytest.raises(ValueError, match="unsupported trainer.args.optim 'sgd'"):
        TrainingArgs.from_config({"optim": "sgd"})


@pytest.mark.parametrize("name", ["per_device_train_batch_size", "gradient_accumulation_steps"])
def test_args_zero_size_raises(name):
    with pytest.raises(ValueError, match=f"trainer.args.{name} must be >= 1, got 0"):
        TrainingArgs.from_config({name: 0})


def test_args_no_epochs_or_steps_raises():
    with pytest.raises(ValueError, match="set trainer.args.num_train_epochs > 0 or trainer.args.max_steps > 0"):
        TrainingArgs.from_config({"num_train_epochs": 0, "max_steps": -1})


def test_args_steps_without_epochs():
    assert TrainingArgs.from_config({"num_train_epochs": 0, "max_steps": 4}).max_steps == 4


# --- count_batches and batch_loader ----------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"num_train_epochs": 1}, 3),  # ceil(10 / 4)
        ({"num_train_epochs": 2}, 6),
        ({"num_train_epochs": 0.5}, 2),  # ceil(3 * 0.5)
        ({"num_train_epochs": 1.2}, 4),  # ceil(3 * 1.2)
        ({"max_steps": 5}, 5),
        ({"max_steps": 5, "gradient_accumulation_steps": 2}, 10),
        ({"max_steps": 5, "num_train_epochs": 3}, 5),  # max_steps wins
    ],
)
def test_count_batches(settings, expected):
    args = TrainingArgs(per_device_train_batch_size=4, **settings)

    assert count_batches(10, args) == expected


def numbered(count):
    return [{"input_ids": [i], "attention_mask": [1], "labels": [i]} for i in range(count)]


def test_loader_epoch_covers_anchor():
    batches = list(batch_loader({"train": numbered(5)}, "train", 2, 6, torch.Generator().manual_seed(0), 0))

    assert len(batches) == 6
    for first in (0, 3):  # each pass of the 5 examples is 3 batches (2, 2, 1)
        seen = [i for b in batches[first : first + 3] for i in b["train"]["input_ids"].flatten().tolist()]
        assert sorted(seen) == [0, 1, 2, 3, 4], first


def test_loader_pairs_other_streams():
    streams = {"forget": numbered(4), "retain": numbered(3)}

    batches = list(batch_loader(streams, "forget", 2, 2, torch.Generator().manual_seed(0), 0))

    assert all(b["retain"]["input_ids"].shape == (2, 1) for b in batches)


# --- train_locally on the tiny Llama ---------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(tokenizer, tofu_data_dir):
    records = load_split("forget01", tofu_data_dir)[:4]
    return [tokenize_qa(tokenizer, r["question"], r["answer"], PLAIN, max_length=64) for r in records]


@pytest.fixture(scope="module")
def runs(tiny_llama_path, examples, tokenizer):
    """Train the tiny Llama three times from the same start: twice with seed 7, once with seed 1.

    Only the decoder layers are trainable, as an adapter would be. The model is in eval mode on
    entry. Returns the start state, the three end states, the first run's metrics and the model.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
    for name, param in model.named_parameters():
        param.requires_grad = ".layers." in name
    start = get_trainable_state(model)
    args = TrainingArgs(learning_rate=1e-3, per_device_train_batch_size=2, num_train_epochs=1)

    states, metrics = [], []
    for seed in (7, 7, 1):
        load_trainable_state(model, start)
        metrics.append(train_locally(model, {"train": examples}, "train", FineTune(), args, seed=seed,
                                     pad_token_id=tokenizer.pad_token_id))
        states.append(get_trainable_state(model))
    return start, states, metrics[0], model


def test_train_locally_metrics(runs):
    _, _, metrics, _ = runs

    assert metrics["steps"] == 2  # 4 examples in batches of 2
    assert math.isfinite(metrics["loss"])


def test_train_locally_moves_weights(runs):
    start, (first, _, _), _, _ = runs

    assert all(not torch.equal(first[name], start[name]) for name in start)


def test_train_locally_same_seed(runs):
    start, (first, second, _), _, _ = runs

    for name in start:
        assert torch.equal(first[name], second[name]), name


def test_train_locally_other_seed(runs):
    start, (first, _, other), _, _ = runs
    orders = [torch.randperm(4, generator=torch.Generator().manual_seed(s)).tolist() for s in (7, 1)]

    assert orders[0][:2] != orders[1][:2]  # the seeds put other examples in the first batch
    assert any(not torch.equal(first[name], other[name]) for name in start)


def test_train_locally_restores_mode(runs):
    *_, model = runs

    assert not model.training


# --- the FedProx proximal term ---------------------------------------------------------------------


class Weights(nn.Module):
    """A model that is one trainable vector ``w``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0]))


class LinearObjective:
    """Loss ``c . w``: its gradient is ``c`` at every ``w``, so any other gradient is the proximal term's.

    Records ``w`` at each call, i.e. the weights each batch's loss is taken at.
    """

    def __init__(self, c):
        self.c = c
        self.seen = []

    def compute_loss(self, model, batch):
        self.seen.append(model.w.detach().clone())
        return (self.c * model.w).sum()


def train_weights(proximal_mu):
    """Run 3 AdamW steps of the linear objective and return the objective, gradients and metrics."""
    model = Weights()
    grads = []
    model.w.register_hook(lambda grad: grads.append(grad.clone()))
    objective = LinearObjective(torch.tensor([0.3, -0.7]))
    args = TrainingArgs(learning_rate=0.1, per_device_train_batch_size=1, num_train_epochs=1, max_grad_norm=0)

    metrics = train_locally(model, {"train": numbered(3)}, "train", objective, args, seed=0, pad_token_id=0,
                            proximal_mu=proximal_mu)
    return objective, grads, metrics


def test_proximal_gradient_by_hand():
    mu = 0.5
    objective, grads, _ = train_weights(mu)
    w0 = objective.seen[0]

    assert len(grads) == 3
    assert not torch.equal(objective.seen[2], w0)  # the weights moved, so the term is not zero
    for k in range(3):
        # d/dw [c . w + mu/2 * ||w - w0||^2] = c + mu * (w - w0)
        expected = objective.c + mu * (objective.seen[k] - w0)
        assert torch.allclose(grads[k], expected, atol=1e-7), k


def test_proximal_loss_by_hand():
    mu = 0.5
    objective, _, metrics = train_weights(mu)
    w0 = objective.seen[0]

    losses = [float((objective.c * w).sum() + mu / 2 * ((w - w0) ** 2).sum()) for w in objective.seen]

    assert metrics["loss"] == pytest.approx(sum(losses) / 3, rel=1e-6)


def test_zero_mu_adds_nothing():
    objective, grads, _ = train_weights(0.0)

    for k in range(3):
        assert torch.equal(grads[k], objective.c), k
