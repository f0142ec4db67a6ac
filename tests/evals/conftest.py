"""A fresh copy of the tiny random Llama for each test, in eval mode."""

import pytest


@pytest.fixture
def tiny_llama(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
