import pytest
import torch

from fedunlearn.federated.aggregation import FedAvg, FedProx
from fedunlearn.federated.client import Client, TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.inprocess import InProcessRuntime
from fedunlearn.federated.server import FederatedServer, ResumeError
from fedunlearn.federated.state import get_trainable_state

from .toy import LinearObjective, Weights, examples

ARGS = TrainingArgs(learning_rate=0.1, per_device_train_batch_size=1, num_train_epochs=1, max_grad_norm=0)
START = get_trainable_state(Weights())


def make_server(model, root, aggregator, num_rounds=1, fingerprint="fp"):
    clients = [
        Client(0, {"train": examples(3)}, "train", LinearObjective([0.3, -0.7]), ARGS, 3),
        Client(1, {"train": examples(1)}, "train", LinearObjective([-1.0, 0.5]), ARGS, 1),
    ]
    runtime = InProcessRuntime(model, clients, seed=0, pad_token_id=0)
    server = FederatedServer(runtime, aggregator, History(root), num_rounds=num_rounds, fingerprint=fingerprint)
    return server, clients


def test_fedprox_mu_reaches_clients(tmp_path):
    model = Weights()
    grads = []
    model.w.register_hook(lambda grad: grads.append(grad.clone()))
    server, clients = make_server(model, tmp_path, FedProx(proximal_mu=0.5))

    server.run(START)

    # Client 0 trains first, on 3 batches, so its third gradient is c + mu * (w - w_global).
    objective = clients[0].objective
    expected = objective.c + 0.5 * (objective.seen[2] - objective.seen[0])
    assert torch.allclose(grads[2], expected, atol=1e-7)
    assert not torch.allclose(grads[2], objective.c)


def test_round_is_weighted_mean(tmp_path):
    server, _ = make_server(Weights(), tmp_path, FedAvg())

    final = server.run(START)

    start = server.history.load_global(0)["w"]
    client_states = [start + server.history.load_update(1, k)["w"] for k in (0, 1)]
    assert torch.allclose(final["w"], (3 * client_states[0] + 1 * client_states[1]) / 4)
    assert torch.equal(server.history.load_global(1)["w"], final["w"])


def test_round_records(tmp_path):
    server, _ = make_server(Weights(), tmp_path, FedAvg())

    server.run(START)

    record = server.history.records()[1]
    assert record["participants"] == [0, 1]
    assert record["num_examples"] == {"0": 3, "1": 1}
    assert record["metrics"]["0"]["steps"] == 3


def test_existing_run_needs_resume(tmp_path):
    make_server(Weights(), tmp_path, FedAvg())[0].run(START)
    server, _ = make_server(Weights(), tmp_path, FedAvg(), num_rounds=2)

    with pytest.raises(ResumeError, match="holds 1 completed round\\(s\\) of a run: pass resume=true"):
        server.run(START)


def test_resume_other_settings_raises(tmp_path):
    make_server(Weights(), tmp_path, FedAvg())[0].run(START)
    server, _ = make_server(Weights(), tmp_path, FedAvg(), num_rounds=2, fingerprint="other")

    with pytest.raises(ResumeError, match="made with other settings"):
        server.run(START, resume=True)


def test_resume_matches_straight_run(tmp_path):
    straight = make_server(Weights(), tmp_path / "straight", FedAvg(), num_rounds=2)[0].run(START)
    make_server(Weights(), tmp_path / "resumed", FedAvg(), num_rounds=1)[0].run(START)

    resumed = make_server(Weights(), tmp_path / "resumed", FedAvg(), num_rounds=2)[0].run(START, resume=True)

    assert torch.equal(resumed["w"], straight["w"])


def test_zero_rounds_raises(tmp_path):
    with pytest.raises(ValueError, match="the number of rounds must be >= 1, got 0"):
        make_server(Weights(), tmp_path, FedAvg(), num_rounds=0)
