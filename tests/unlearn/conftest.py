"""Fixtures for the unlearning methods: a tiny Llama that has memorised its forget answers, with and without LoRA."""

from __future__ import annotations

import pytest
import torch

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa
from fedunlearn.data.tofu import load_split
from fedunlearn.unlearn.methods import UnlearnContext

CHAT = {"apply_chat_template": True}


def tokenize_split(tokenizer, data_dir, split, count):
    records = load_split(split, data_dir)[:count]
    return [tokenize_qa(tokenizer, r["question"], r["answer"], CHAT) for r in records]


def load_model(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


@pytest.fixture(scope="session")
def forget_examples(tokenizer, tofu_data_dir):
    """Two forget01 pairs of different lengths, so the shorter one is padded in a batch."""
    examples = tokenize_split(tokenizer, tofu_data_dir, "forget01", 2)
    assert len(examples[0]["input_ids"]) != len(examples[1]["input_ids"])
    return examples


@pytest.fixture(scope="session")
def retain_batch(tokenizer, tofu_data_dir):
    return pad_batch(tokenize_split(tokenizer, tofu_data_dir, "retain99", 2), tokenizer.pad_token_id)


@pytest.fixture(scope="session")
def memorised_llama_path(tiny_llama_path, forget_examples, retain_batch, tokenizer, tmp_path_factory):
    """Save the tiny Llama with its forget and retain answers memorised to probabilities spread over (0, 1).

    A random model gives every token a probability near 1 / vocabulary size,
    where the token weights of WGA and SatImp vanish and the tests would check
    little. In place of slow training, each answer token's output embedding row
    gains ``s * h / ||h||`` for the final hidden state ``h`` that predicts it,
    with ``s ~ U[0.3, 1.0)``; this gives probabilities from about 0.001 to 0.99.
    """
    model = load_model(tiny_llama_path)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in (pad_batch(forget_examples, tokenizer.pad_token_id), retain_batch):
            hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            labels = batch["labels"][:, 1:]
            for b, t in (labels != IGNORE_INDEX).nonzero().tolist():
                scale = 0.3 + 0.7 * float(torch.rand(1, generator=generator))
                model.lm_head.weight[labels[b, t]] += scale * hidden[b, t] / hidden[b, t].norm()
    path = tmp_path_factory.mktemp("memorised-llama")
    model.save_pretrained(path)
    return str(path)


@pytest.fixture
def model(memorised_llama_path):
    """The memorised tiny Llama with every parameter trainable (full fine-tuning)."""
    return load_model(memorised_llama_path)


@pytest.fixture
def lora_model(memorised_llama_path):
    """The memorised tiny Llama with a LoRA adapter whose B matrices are non-zero, as after federated fine-tuning."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(load_model(memorised_llama_path), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model.eval()


@pytest.fixture
def context(tokenizer):
    return UnlearnContext(tokenizer, max_length=512, seed=0)


@pytest.fixture
def examples(forget_examples):
    """Fresh copies of the forget examples, since ``prepare`` adds keys to them."""
    return [dict(e) for e in forget_examples]
