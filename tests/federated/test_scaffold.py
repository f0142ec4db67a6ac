"""SCAFFOLD: the server's two-round update and the client's corrected steps, by hand."""

from collections import OrderedDict

import pytest
import torch

from fedunlearn.federated.aggregation import SCAFFOLD, ClientUpdate
from fedunlearn.federated.client import Client, TrainingArgs, run_client_round

from .toy import LinearObjective, Weights, examples

# --- server -------------------------------------------------------------------------------------------


def update(client_id, state, n, control_delta):
    return ClientUpdate(client_id, {"w": torch.tensor(state)}, n,
                        extra_states={"control_delta": {"w": torch.tensor(control_delta)}})


def test_server_two_rounds():
    server = SCAFFOLD(server_learning_rate=0.5)
    server.setup([0, 1, 2])  # N = 3 clients, two reply each round

    assert server.configure_train(1)["scaffold_control"] == {}  # c = 0 before the first round
    x1 = server.aggregate_train(1, {"w": torch.tensor([0.0, 0.0])},
                                [update(0, [4.0, -4.0], 1, [0.3, 0.0]), update(2, [0.0, 4.0], 3, [0.0, 0.6])])
    # x1 = 0 + 0.5 * (1*[4, -4] + 3*[0, 4]) / 4 = 0.5 * [1, 2] = [0.5, 1]
    assert x1["w"].tolist() == pytest.approx([0.5, 1.0])
    # c1 = 0 + ([0.3, 0] + [0, 0.6]) / 3 = [0.1, 0.2]
    assert server.configure_train(2)["scaffold_control"]["w"].tolist() == pytest.approx([0.1, 0.2])

    x2 = server.aggregate_train(2, x1, [update(0, [1.5, 5.0], 1, [-0.3, 0.3]), update(1, [0.5, -3.0], 3, [0.6, 0.0])])
    # Δ2 = (1*[1, 4] + 3*[0, -4]) / 4 = [0.25, -2];  x2 = [0.5, 1] + 0.5 * [0.25, -2] = [0.625, 0]
    assert x2["w"].tolist() == pytest.approx([0.625, 0.0])
    # c2 = [0.1, 0.2] + ([-0.3, 0.3] + [0.6, 0]) / 3 = [0.2, 0.3]
    assert server.state_dict()["control"]["w"].tolist() == pytest.approx([0.2, 0.3])


def test_server_state_round_trip():
    server = SCAFFOLD()
    server.setup([0, 1])
    server.aggregate_train(1, {"w": torch.zeros(2)}, [update(0, [1.0, 1.0], 1, [0.5, 0.5])])
    restored = SCAFFOLD()
    restored.load_state_dict(server.state_dict())

    assert torch.equal(restored.configure_train(2)["scaffold_control"]["w"], torch.tensor([0.25, 0.25]))


def test_server_needs_control_delta():
    server = SCAFFOLD()
    server.setup([0])

    with pytest.raises(ValueError, match=r"the replies of clients \[0\] carry no 'control_delta'"):
        server.aggregate_train(1, {"w": torch.zeros(2)}, [ClientUpdate(0, {"w": torch.ones(2)}, 1)])


def test_server_needs_setup():
    with pytest.raises(RuntimeError, match="call setup"):
        SCAFFOLD().aggregate_train(1, {"w": torch.zeros(2)}, [update(0, [1.0, 1.0], 1, [0.0, 0.0])])


# --- client -------------------------------------------------------------------------------------------


ARGS = TrainingArgs(learning_rate=0.1, per_device_train_batch_size=1, num_train_epochs=1, max_grad_norm=0)
GLOBAL = OrderedDict(w=torch.tensor([1.0, -2.0]))


def client_round(config, client_state, args=ARGS):
    client = Client(0, {"train": examples(3)}, "train", LinearObjective([0.3, -0.7]), args, 3)
    return run_client_round(Weights(), client, GLOBAL, config, server_round=1, seed=0, pad_token_id=0,
                            client_state=client_state)


def test_client_corrected_steps():
    state = {"scaffold_control": OrderedDict(w=torch.tensor([0.2, 0.0]))}  # c_i
    reply = client_round({"scaffold_control": OrderedDict(w=torch.tensor([0.7, 0.2]))}, state)  # c

    # c - c_i = [0.5, 0.2]. Each of the 3 steps: w -= 0.1 * sign([0.3, -0.7]) + 0.1 * [0.5, 0.2] = 0.1 * [1.5, -0.8]
    #   y = [1, -2] - 3 * 0.1 * [1.5, -0.8] = [0.55, -1.76]
    assert reply.state["w"].tolist() == pytest.approx([0.55, -1.76], abs=1e-6)
    # Option II: Δc_i = (x - y) / (3 * 0.1) - (c - c_i) = [1.5, -0.8] - [0.5, 0.2] = [1, -1]
    assert reply.extra_states["control_delta"]["w"].tolist() == pytest.approx([1.0, -1.0], abs=1e-5)
    # c_i+ = c_i + Δc_i = [1.2, -1]
    assert state["scaffold_control"]["w"].tolist() == pytest.approx([1.2, -1.0], abs=1e-5)
    assert "learning_rate_sum" not in reply.metrics


def test_client_first_round_is_plain():
    state = {}
    reply = client_round({"scaffold_control": {}}, state)

    # c = c_i = 0: three plain steps, y = [1, -2] - 3 * 0.1 * [1, -1] = [0.7, -1.7]; Δc_i = [1, -1]
    assert reply.state["w"].tolist() == pytest.approx([0.7, -1.7], abs=1e-6)
    assert reply.extra_states["control_delta"]["w"].tolist() == pytest.approx([1.0, -1.0], abs=1e-5)


def test_client_option_two_sums_rates():
    # With lr_scale 0.5 the steps are 0.05: y = [1, -2] - 3 * 0.05 * [1, -1] and Σ lr = 0.15,
    # so Δc_i is again (x - y) / 0.15 = [1, -1].
    reply = client_round({"scaffold_control": {}, "lr_scale": 0.5}, {})

    assert reply.state["w"].tolist() == pytest.approx([0.85, -1.85], abs=1e-6)
    assert reply.extra_states["control_delta"]["w"].tolist() == pytest.approx([1.0, -1.0], abs=1e-5)


def test_client_without_state_raises():
    with pytest.raises(ValueError, match="SCAFFOLD needs a client_state"):
        client_round({"scaffold_control": {}}, None)


def test_lr_scale_shrinks_steps():
    reply = client_round({"lr_scale": 0.5}, None)

    assert reply.state["w"].tolist() == pytest.approx([0.85, -1.85], abs=1e-6)
    assert reply.extra_states == {}
