"""protocol=retrain: training the federation again without the forgotten records is exact."""

from __future__ import annotations

import pytest
import torch
from .federation import adapter, finetune, summary, unlearn


@pytest.fixture(scope="module")
def retrained(finetuned, tofu_data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("retrain")
    assert unlearn(finetuned, tofu_data_dir, output_dir, "trainer.method_args.protocol=retrain") == 0
    return output_dir


def test_retrain_equals_training_without_forget_data(retrained, tiny_llama_path, tofu_data_dir, tmp_path):
    never_saw = tmp_path / "retain99"
    finetune(tiny_llama_path, tofu_data_dir, never_saw, "data.train_split=retain99")

    expected, result = adapter(never_saw), adapter(retrained)
    assert result.keys() == expected.keys()
    for name in expected:
        assert torch.equal(result[name], expected[name]), name


def test_retrain_differs_from_finetuned(retrained, finetuned):
    before, after = adapter(finetuned), adapter(retrained)

    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_retrain_summary_counts_cost(retrained, finetuned):
    result = summary(retrained)
    rounds = result["rounds"][1:]
    # Each of the 3 clients trains max_steps=1 batch in each of the 2 rounds.
    assert result["cost"]["client_steps"] == 3 * 2
    assert result["cost"]["client_steps"] == sum(m["steps"] for r in rounds for m in r["metrics"].values())
    # Each round sends the global state to 3 clients and receives 3 states of the same size.
    assert result["cost"]["bytes_sent"] == sum(6 * r["global_bytes"] for r in rounds)
    assert result["cost"]["aggregations"] == 2
    assert result["cost"]["wall_seconds"] >= result["cost"]["client_seconds"] > 0
    assert result["protocol"] == "retrain"
    assert result["method"] is None
    # Client 0 keeps its 20 records of the retained author; the 40 forget01 records are gone.
    assert result["forget_records"] == 40
    assert [r["num_examples"] for r in rounds] == [{"0": 20, "1": 20, "2": 20}] * 2

