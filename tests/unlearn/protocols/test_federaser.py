"""protocol=federaser: stored updates keep their norm per tensor and take the calibration's direction."""

from __future__ import annotations

import math

import pytest
import torch

from fedunlearn.federated.aggregation import Aggregator, ClientUpdate
from fedunlearn.federated.client import TrainingArgs
from fedunlearn.unlearn.protocols.cost import CostMeter
from fedunlearn.unlearn.protocols.federaser import FedEraserCalibration, calibrate, calibration_args

from .conftest import W0, t
from .federation import summary, unlearn


def test_calibrate_by_hand():
    stored = {"a": t(3.0, 4.0), "b": t(-2.0)}  # norms 5 and 2
    calibration = {"a": t(0.0, 0.1), "b": t(0.5)}

    result = calibrate(stored, calibration)

    assert torch.allclose(result["a"], t(0.0, 5.0))
    assert torch.allclose(result["b"], t(2.0))


def test_calibrate_zero_direction_gives_zero():
    result = calibrate({"a": t(3.0, 4.0)}, {"a": t(0.0, 0.0)})

    assert torch.equal(result["a"], t(0.0, 0.0))


@pytest.mark.parametrize(("settings", "expected"), [
    ({"num_train_epochs": 2.0}, {"num_train_epochs": 1.0, "max_steps": -1}),
    ({"max_steps": 3}, {"num_train_epochs": 1.0, "max_steps": 2}),  # ceil(0.5 * 3)
])
def test_calibration_args_scale_local_training(settings, expected):
    args = calibration_args(TrainingArgs(**settings), 0.5)

    assert args.num_train_epochs == expected["num_train_epochs"]
    assert args.max_steps == expected["max_steps"]


def test_calibration_ratio_must_be_positive():
    with pytest.raises(ValueError, match="calibration_ratio must be > 0, got 0"):
        calibration_args(TrainingArgs(), 0)


def test_calibration_round_by_hand(hand_history, tmp_path):
    # Replaying stored round 1 from w~_0 = w_0 with clients 1 (2 records) and 2 (1 record).
    aggregator = FedEraserCalibration(hand_history, [1], Aggregator(), CostMeter(tmp_path / "cost.json"))
    trained = [ClientUpdate(1, {"a": t(3.0, 4.0), "b": t(-2.0)}, 2), ClientUpdate(2, {"a": t(0.0, -1.0), "b": t(0.0)}, 1)]

    state = aggregator.aggregate_train(1, dict(W0), trained)

    # Client 1: stored norms |U_1^1.a| = 1, |U_1^1.b| = 1 -> a = [0.6, 0.8], b = [-1].
    # Client 2: stored norm |U_2^1.a| = 2 sqrt(2) -> a = [0, -2 sqrt(2)]; its b calibration is zero.
    assert torch.allclose(state["a"], t(2 * 0.6 / 3, (2 * 0.8 - 2 * math.sqrt(2)) / 3))
    assert torch.allclose(state["b"], t(-2 / 3))


def test_configure_train_sends_stored_round(hand_history, tmp_path):
    class RoundEcho(Aggregator):
        def configure_train(self, server_round):
            return {"round": server_round}

    aggregator = FedEraserCalibration(hand_history, [1, 3, 5], RoundEcho(), CostMeter(tmp_path / "cost.json"))

    assert aggregator.configure_train(2) == {"round": 3}


def test_sample_request_calibrates_every_round(finetuned, tofu_data_dir, tmp_path):
    assert unlearn(finetuned, tofu_data_dir, tmp_path / "out", "trainer.method_args.protocol=federaser") == 0

    result = summary(tmp_path / "out")
    assert result["protocol_details"]["replayed_rounds"] == [1, 2]
    assert not result["protocol_details"]["reused_first_round"]
    assert [r["num_examples"] for r in result["rounds"][1:]] == [{"0": 20, "1": 20, "2": 20}] * 2
    assert result["cost"]["client_steps"] == 3 * 2  # ceil(0.5 * max_steps=1) step per client and stored round
    assert result["cost"]["history_states_read"] == 3 * 2


def test_client_request_reuses_first_round(finetuned, tofu_data_dir, tmp_path):
    from fedunlearn.federated.history import History

    assert unlearn(finetuned, tofu_data_dir, tmp_path / "out", "trainer.method_args.protocol=federaser",
                   "trainer.method_args.request=client") == 0

    result = summary(tmp_path / "out")
    assert result["protocol_details"]["replayed_rounds"] == [2]
    assert [r["participants"] for r in result["rounds"][1:]] == [[1, 2]]
    # The first rebuilt state is w_0 plus clients 1 and 2's stored round-1 updates (20 records each).
    original = History(finetuned / "federation")
    start = History(tmp_path / "out" / "federation").load_global(0)
    w0, u1, u2 = original.load_global(0), original.load_update(1, 1), original.load_update(1, 2)
    for name in w0:
        assert torch.allclose(start[name], w0[name] + (u1[name] + u2[name]) / 2), name
