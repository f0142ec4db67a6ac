"""Fixtures of the evaluation tests: the tiny random Llama and a federated run of it."""

import pytest
from cli_helpers import run_cli, tiny_overrides

TRAIN = ["train", "--config-name=train-lora.yaml", "experiment=finetune/tofu/default", "task_name=clients"]


@pytest.fixture
def tiny_llama(tiny_llama_path):
    """A fresh copy of the tiny random Llama for each test, in eval mode."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()


@pytest.fixture(scope="session")
def trained(tiny_llama_path, tofu_data_dir, tmp_path_factory):
    """A real federated LoRA fine-tuning run of the tiny model: 3 clients, 5 authors (2 of forget01), 1 round."""
    output_dir = tmp_path_factory.mktemp("federation") / "finetune"
    assert run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=1)) == 0
    return output_dir
