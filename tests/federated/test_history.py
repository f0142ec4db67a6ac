import pytest
import torch

from fedunlearn.federated.history import History

GLOBAL_0 = {"w": torch.tensor([0.0, 0.0, 0.0])}
GLOBAL_1 = {"w": torch.tensor([1.0, 2.0, 3.0])}
UPDATES_1 = {0: {"w": torch.tensor([0.5, 0.5, 0.5])}, 2: {"w": torch.tensor([-1.0, 0.0, 1.0])}}
STATE_BYTES = 3 * 4  # three float32 values


@pytest.fixture
def history(tmp_path):
    """A history with the initial round and one round in which clients 0 and 2 took part."""
    history = History(tmp_path / "federation")
    history.save_round(0, GLOBAL_0, {}, {"participants": []}, "fp-1", {})
    history.save_round(1, GLOBAL_1, UPDATES_1, {"participants": [0, 2]}, "fp-1", {"momentum": torch.tensor([4.0])})
    return history


def test_empty_history(tmp_path):
    history = History(tmp_path / "federation")

    assert history.load_checkpoint() is None
    assert history.records() == []


def test_load_global(history):
    assert torch.equal(history.load_global(0)["w"], GLOBAL_0["w"])
    assert torch.equal(history.load_global(1)["w"], GLOBAL_1["w"])


@pytest.mark.parametrize("client_id", [0, 2])
def test_load_update(history, client_id):
    assert torch.equal(history.load_update(1, client_id)["w"], UPDATES_1[client_id]["w"])


def test_missing_update_raises(history):
    with pytest.raises(FileNotFoundError):
        history.load_update(1, 1)


def test_records_per_round(history):
    assert history.records() == [
        {"participants": [], "round": 0, "global_bytes": STATE_BYTES, "update_bytes": 0},
        {"participants": [0, 2], "round": 1, "global_bytes": STATE_BYTES, "update_bytes": 2 * STATE_BYTES},
    ]


def test_checkpoint_names_last_round(history):
    assert history.load_checkpoint() == {"completed_rounds": 1, "fingerprint": "fp-1"}


def test_aggregator_state_round_trip(history):
    assert history.load_aggregator_state(1)["momentum"].tolist() == [4.0]
    assert history.load_aggregator_state(0) == {}


def test_resaved_round_drops_later_records(history):
    history.save_round(2, GLOBAL_1, {}, {"participants": []}, "fp-1", {})

    history.save_round(1, GLOBAL_0, {}, {"participants": [1]}, "fp-1", {})

    assert [r["round"] for r in history.records()] == [0, 1]
    assert history.records()[1]["participants"] == [1]
    assert torch.equal(history.load_global(1)["w"], GLOBAL_0["w"])
    assert not (history.round_dir(1) / "client_0.safetensors").exists()


def test_size_report_counts_files(history):
    on_disk = {
        name: sum(f.stat().st_size for f in history.round_dir(r).iterdir())
        for r, name in ((0, "round_0000"), (1, "round_0001"))
    }

    report = history.size_report()

    assert report["rounds"] == on_disk
    assert report["total_bytes"] == on_disk["round_0000"] + on_disk["round_0001"]
    assert on_disk["round_0001"] > on_disk["round_0000"]


def test_round_files(history):
    names = sorted(f.name for f in history.round_dir(1).iterdir())

    assert names == ["aggregator.pt", "client_0.safetensors", "client_2.safetensors", "global.safetensors"]


def test_no_temporary_folders_left(history):
    assert sorted(p.name for p in history.rounds_dir.iterdir()) == ["round_0000", "round_0001"]

