"""protocol=subtract: the requesting client's weighted updates leave the global model, then recovery rounds."""

from __future__ import annotations

import pytest
import torch

from fedunlearn.unlearn.protocols.subtract import client_weights, subtract_client

from .conftest import t
from .federation import adapter, summary, unlearn


def test_weights_by_hand(hand_history):
    assert client_weights(hand_history, 0, 2) == {1: 1 / 4, 2: 1 / 3}
    assert client_weights(hand_history, 2, 2) == {1: 1 / 4}


def test_subtract_by_hand(hand_history):
    # w_2 = (a: [0.75 + 1/3, 2], b: [2]); remove U_0^1 / 4 and U_0^2 / 3.
    state = subtract_client(hand_history, 0, 2)

    assert torch.allclose(state["a"], t(0.75 + 1 / 3 - 1 / 4 + 1 / 3, 2.0 - 1 / 3))
    assert torch.allclose(state["b"], t(2.0 - 2 / 4 - 4 / 3))


def test_subtract_up_to_round_one(hand_history):
    # w_1 - U_2^1 / 4 = (a: [0.75 - 0.5, 1 - 0.5], b: [0])
    state = subtract_client(hand_history, 2, 1)

    assert torch.allclose(state["a"], t(0.25, 0.5))
    assert torch.allclose(state["b"], t(0.0))


@pytest.fixture(scope="module")
def subtracted(finetuned, tofu_data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("subtract")
    assert unlearn(finetuned, tofu_data_dir, output_dir, "trainer.method_args.protocol=subtract") == 0
    return output_dir


def test_recovery_round_keeps_retained_records(subtracted):
    result = summary(subtracted)

    assert result["protocol"] == "subtract"
    assert result["protocol_details"]["subtracted_weights"] == {"1": 0.6, "2": 0.6}  # 60 of 100 records each round
    assert [r["num_examples"] for r in result["rounds"][1:]] == [{"0": 20, "1": 20, "2": 20}]


def test_recovery_starts_from_subtracted_state(subtracted, finetuned):
    from fedunlearn.federated.history import History

    start = History(subtracted / "federation").load_global(0)
    expected = subtract_client(History(finetuned / "federation"), 0, 2)

    for name in expected:
        assert torch.equal(start[name], expected[name]), name


def test_subtract_cost(subtracted):
    cost = summary(subtracted)["cost"]

    assert cost["client_steps"] == 3  # one recovery round, 1 step per client
    assert cost["phases"]["subtraction"]["history_states_read"] == 3  # w_2 and client 0's two updates
    assert cost["phases"]["subtraction"]["client_steps"] == 0


def test_zero_recovery_rounds_saves_subtracted_model(finetuned, tofu_data_dir, tmp_path):
    from fedunlearn.federated.history import History

    assert unlearn(finetuned, tofu_data_dir, tmp_path / "out", "trainer.method_args.protocol=subtract",
                   "trainer.method_args.recovery_rounds=0") == 0

    expected = subtract_client(History(finetuned / "federation"), 0, 2)
    saved = adapter(tmp_path / "out")
    assert summary(tmp_path / "out")["cost"]["client_steps"] == 0
    for name, value in saved.items():
        key = next(k for k in expected if k.replace(".default", "") == name)
        assert torch.equal(value, expected[key]), name
