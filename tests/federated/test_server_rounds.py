"""The server's round settings: client sampling, learning-rate decay, rejected and missing replies."""

import json

import pytest

from fedunlearn.federated.aggregation import FedAvg
from fedunlearn.federated.client import Client, TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.inprocess import InProcessRuntime
from fedunlearn.federated.server import SERVER_KEYS, FederatedServer, RoundFailedError, RoundSettings
from fedunlearn.federated.state import get_trainable_state

from .toy import LinearObjective, Weights, examples

ARGS = TrainingArgs(learning_rate=0.1, per_device_train_batch_size=1, num_train_epochs=1, max_grad_norm=0)
START = get_trainable_state(Weights())


def make_clients(count, gradients=None):
    gradients = gradients or {}
    return [Client(k, {"train": examples(k + 1)}, "train", LinearObjective(gradients.get(k, [0.3, -0.7])), ARGS, k + 1)
            for k in range(count)]


class DroppingRuntime(InProcessRuntime):
    """An in-process runtime whose clients in ``dropped`` train but whose replies never arrive."""

    def __init__(self, *args, dropped=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.dropped = set(dropped)

    def train(self, server_round, global_state, client_ids, config):
        self.configs = getattr(self, "configs", []) + [config]
        return [u for u in super().train(server_round, global_state, client_ids, config) if u.client_id not in self.dropped]


def make_server(root, clients, settings=RoundSettings(), num_rounds=1, seed=0, dropped=()):
    runtime = DroppingRuntime(Weights(), clients, seed=0, pad_token_id=0, dropped=dropped)
    return FederatedServer(runtime, FedAvg(), History(root), num_rounds=num_rounds, fingerprint="fp",
                           settings=settings, seed=seed)


# --- sampling -----------------------------------------------------------------------------------------


def test_all_clients_by_default(tmp_path):
    assert make_server(tmp_path, make_clients(4)).select_clients(1) == [0, 1, 2, 3]


def test_fraction_fit_size(tmp_path):
    server = make_server(tmp_path, make_clients(10), RoundSettings(fraction_fit=0.35))

    selected = server.select_clients(1)

    assert len(selected) == 3  # int(0.35 * 10)
    assert selected == sorted(set(selected))
    assert set(selected) <= set(range(10))


def test_min_fit_clients_raises_sample(tmp_path):
    server = make_server(tmp_path, make_clients(10), RoundSettings(fraction_fit=0.1, min_fit_clients=4))

    assert len(server.select_clients(1)) == 4  # max(int(0.1 * 10), 4)


def test_sampling_seeded_by_seed_and_round(tmp_path):
    settings = RoundSettings(fraction_fit=0.5)
    server = make_server(tmp_path, make_clients(10), settings, seed=3)
    again = make_server(tmp_path, make_clients(10), settings, seed=3)
    other_seed = make_server(tmp_path, make_clients(10), settings, seed=4)

    rounds = [server.select_clients(r) for r in range(1, 6)]

    assert rounds == [again.select_clients(r) for r in range(1, 6)]
    assert len({tuple(s) for s in rounds}) > 1  # the selection changes from round to round
    assert rounds != [other_seed.select_clients(r) for r in range(1, 6)]


def test_too_few_available_raises(tmp_path):
    server = make_server(tmp_path, make_clients(2), RoundSettings(min_available_clients=3))

    with pytest.raises(RoundFailedError, match="round 1: 2 clients are available, fewer than min_available_clients=3"):
        server.run(START)


def test_only_selected_clients_train(tmp_path):
    server = make_server(tmp_path, make_clients(4), RoundSettings(fraction_fit=0.5), num_rounds=2)

    server.run(START)

    for record in server.history.records()[1:]:
        assert record["selected"] == server.select_clients(record["round"])
        assert record["participants"] == record["selected"]
        assert record["num_examples"] == {str(k): k + 1 for k in record["selected"]}


# --- learning-rate decay ------------------------------------------------------------------------------


def test_round_lr_decay_scales_steps(tmp_path):
    server = make_server(tmp_path, make_clients(1), RoundSettings(round_lr_decay=0.5), num_rounds=2)

    final = server.run(START)

    # Round 1: one step of 0.1 * sign([0.3, -0.7]); round 2: one step of 0.05.
    assert final["w"].tolist() == pytest.approx([1.0 - 0.15, -2.0 + 0.15], abs=1e-6)
    assert [c["lr_scale"] for c in server.runtime.configs] == [1.0, 0.5]
    assert [r["lr_scale"] for r in server.history.records()[1:]] == [1.0, 0.5]


# --- rejected and missing replies ---------------------------------------------------------------------


def test_large_update_rejected(tmp_path, caplog):
    # Client k takes k + 1 steps of 0.1 per coordinate: update norms 0.141, 0.283, 0.424.
    server = make_server(tmp_path, make_clients(3), RoundSettings(max_update_norm=0.3))

    final = server.run(START)

    record = server.history.records()[1]
    assert record["participants"] == [0, 1]
    assert list(record["rejected"]) == ["2"]
    assert record["rejected"]["2"].startswith("update norm 0.4243 exceeds max_update_norm=0.3")
    assert "rejected the update of client 2: update norm" in caplog.text
    # FedAvg of the two valid clients: (1 * 1 step + 2 * 2 steps) / 3 = 5/3 steps of 0.1
    assert final["w"].tolist() == pytest.approx([1.0 - 0.5 / 3, -2.0 + 0.5 / 3], abs=1e-6)
    assert not (server.history.round_dir(1) / "client_2.safetensors").exists()


def test_nan_update_rejected(tmp_path):
    server = make_server(tmp_path, make_clients(3, {1: [float("nan"), 0.1]}))

    server.run(START)

    record = server.history.records()[1]
    assert record["participants"] == [0, 2]
    assert record["rejected"] == {"1": "w has 1 NaN or infinite values"}  # AdamW keeps the coordinates apart


def test_missing_client_round_completes(tmp_path, caplog):
    server = make_server(tmp_path, make_clients(3), RoundSettings(min_fit_clients=2), dropped={1})

    server.run(START)

    record = json.loads((tmp_path / "history.json").read_text())[1]
    assert record["selected"] == [0, 1, 2]
    assert record["missing"] == [1]
    assert record["participants"] == [0, 2]
    assert "round 1: clients [1] did not reply" in caplog.text


def test_too_few_replies_fails_round(tmp_path):
    server = make_server(tmp_path, make_clients(3), RoundSettings(min_fit_clients=2, max_update_norm=0.3),
                         dropped={0}, num_rounds=2)

    with pytest.raises(RoundFailedError, match=r"round 1: 1 valid replies from the 3 selected clients \[0, 1, 2\], "
                                               r"fewer than min_fit_clients=2 \(missing: \[0\], rejected: \{'2'"):
        server.run(START)
    assert server.history.load_checkpoint()["completed_rounds"] == 0


# --- settings from trainer.method_args ----------------------------------------------------------------


def test_settings_from_method_args():
    settings = RoundSettings.from_method_args({"fraction_fit": "0.5", "min_fit_clients": 2, "max_update_norm": None,
                                               "num_clients": 3})

    assert settings == RoundSettings(fraction_fit=0.5, min_fit_clients=2)
    assert set(SERVER_KEYS) == {"fraction_fit", "min_fit_clients", "min_available_clients", "round_lr_decay",
                                "max_update_norm"}


@pytest.mark.parametrize(
    "args, message",
    [
        ({"fraction_fit": 0}, r"trainer.method_args.fraction_fit must be in \(0, 1\], got 0"),
        ({"fraction_fit": 1.5}, r"fraction_fit must be in \(0, 1\], got 1.5"),
        ({"min_fit_clients": 0}, "trainer.method_args.min_fit_clients must be an integer >= 1, got 0"),
        ({"min_available_clients": 1.5}, "min_available_clients must be an integer >= 1, got 1.5"),
        ({"round_lr_decay": -1}, "trainer.method_args.round_lr_decay must be > 0, got -1"),
        ({"max_update_norm": 0}, "trainer.method_args.max_update_norm must be > 0 or null, got 0"),
        ({"round_lr_decay": "fast"}, "trainer.method_args.round_lr_decay must be a number, got 'fast'"),
    ],
)
def test_bad_settings_raise(args, message):
    with pytest.raises(ValueError, match=message):
        RoundSettings.from_method_args(args)
