"""Sharded fine-tuning and protocol=sharded: retraining one shard is exact for the sharded model."""

from __future__ import annotations

import pytest
import torch

from fedunlearn.trainers.shards import assign_shards, combine_shards, read_shards_index

from .conftest import t
from .federation import adapter, finetune, summary, unlearn


def test_assign_shards_round_robin():
    assert assign_shards(5, 2) == [[0, 2, 4], [1, 3]]
    assert assign_shards(3, 3) == [[0], [1], [2]]


@pytest.mark.parametrize("num_shards", [0, 4])
def test_assign_shards_out_of_range_raises(num_shards):
    with pytest.raises(ValueError, match=f"num_shards must be between 1 and num_clients=3, got {num_shards}"):
        assign_shards(3, num_shards)


def test_combine_weights_by_records():
    states = [{"a": t(1.0, 0.0)}, {"a": t(0.0, 4.0)}, None]

    combined = combine_shards(states, [3, 1, 0])

    assert torch.allclose(combined["a"], t(0.75, 1.0))


def test_combine_drops_empty_shard():
    combined = combine_shards([{"a": t(1.0)}, {"a": t(5.0)}], [0, 2])

    assert torch.equal(combined["a"], t(5.0))


@pytest.fixture(scope="module")
def sharded(tiny_llama_path, tofu_data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("sharded")
    finetune(tiny_llama_path, tofu_data_dir, output_dir, "trainer.method_args.num_shards=2")
    return output_dir


def test_sharded_finetune_averages_shards(sharded):
    from safetensors.torch import load_file

    index = read_shards_index(sharded)
    shard_states = [load_file(sharded / "shards" / f"shard_{s}" / "state.safetensors") for s in (0, 1)]
    saved = adapter(sharded)

    assert [s["clients"] for s in index["shards"]] == [[0, 2], [1]]
    assert [s["num_examples"] for s in index["shards"]] == [80, 20]
    for name, value in saved.items():
        key = next(k for k in shard_states[0] if k.replace(".default", "") == name)
        assert torch.allclose(value, (80 * shard_states[0][key] + 20 * shard_states[1][key]) / 100), name


def test_sharded_unlearning_equals_sharded_training_without_forget_data(sharded, tiny_llama_path, tofu_data_dir,
                                                                         tmp_path):
    assert unlearn(sharded, tofu_data_dir, tmp_path / "unlearned", "trainer.method_args.protocol=sharded") == 0
    finetune(tiny_llama_path, tofu_data_dir, tmp_path / "never_saw", "trainer.method_args.num_shards=2",
             "data.train_split=retain99")

    result, expected = adapter(tmp_path / "unlearned"), adapter(tmp_path / "never_saw")
    for name in expected:
        assert torch.equal(result[name], expected[name]), name
    details = summary(tmp_path / "unlearned")
    assert details["protocol_details"]["retrained_shard"] == 0
    assert details["protocol_details"]["shard_examples"] == [40, 20]
    assert details["cost"]["client_steps"] == 2 * 2  # shard 0's clients 0 and 2, 2 rounds of 1 step; shard 1 reused


def test_history_protocols_reject_sharded_model(sharded, tofu_data_dir, tmp_path, capsys):
    code = unlearn(sharded, tofu_data_dir, tmp_path / "out", "trainer.method_args.protocol=subtract")

    assert code == 2
    assert "was fine-tuned in 2 shards: use protocol=sharded or protocol=retrain" in capsys.readouterr().err


def test_sharded_protocol_rejects_unsharded_model(finetuned, tofu_data_dir, tmp_path, capsys):
    code = unlearn(finetuned, tofu_data_dir, tmp_path / "out", "trainer.method_args.protocol=sharded")

    assert code == 2
    assert "fine-tune with trainer.method_args.num_shards=2" in capsys.readouterr().err
