"""A tiny fine-tuned federation that the protocol tests unlearn from."""

from __future__ import annotations

import pytest
import torch

from fedunlearn.federated.history import History

from .federation import finetune


@pytest.fixture(scope="session")
def finetuned(tiny_llama_path, tofu_data_dir, tmp_path_factory):
    """The fine-tuned federation's folder: client 0 holds the 2 forget01 authors and 1 other, clients 1 and 2 one each."""
    output_dir = tmp_path_factory.mktemp("finetuned")
    finetune(tiny_llama_path, tofu_data_dir, output_dir)
    return output_dir


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


# A history of 3 clients over 2 FedAvg rounds, small enough to follow by hand. Weights: records per round.
W0 = {"a": t(0.0, 0.0), "b": t(0.0)}
UPDATES = {
    1: {0: {"a": t(1.0, 0.0), "b": t(2.0)}, 1: {"a": t(0.0, 1.0), "b": t(-1.0)}, 2: {"a": t(2.0, 2.0), "b": t(0.0)}},
    2: {0: {"a": t(-1.0, 1.0), "b": t(4.0)}, 1: {"a": t(1.0, 1.0), "b": t(1.0)}},  # client 2 sat out round 2
}
RECORDS = {1: {0: 1, 1: 2, 2: 1}, 2: {0: 1, 1: 2}}


@pytest.fixture
def hand_history(tmp_path):
    """Save the hand-made federation: w_t = w_{t-1} + sum_k n_k U_k^t / sum_k n_k."""
    history = History(tmp_path / "federation")
    history.save_round(0, W0, {}, {"participants": []}, "fp", {})
    state = dict(W0)
    for server_round, updates in UPDATES.items():
        examples = RECORDS[server_round]
        total = sum(examples.values())
        state = {name: state[name] + sum(examples[k] * u[name] for k, u in updates.items()) / total for name in state}
        record = {"participants": sorted(updates), "num_examples": {str(k): n for k, n in examples.items()}}
        history.save_round(server_round, state, updates, record, "fp", {})
    return history
