import json
import os
import shutil

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from fedunlearn.data.template import tokenize_qa
from fedunlearn.evals.reference import ReferenceLosses
from fedunlearn.evals.scoring import score_examples

CHAT = {"apply_chat_template": True}
PAIRS = [("Who wrote Hamlet?", "Shakespeare."), ("Who wrote Faust?", "Goethe.")]


@pytest.fixture
def loader(tiny_llama_path):
    """Load models the plain way and count the loads."""
    calls = []

    def load(path):
        calls.append(path)
        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)

    load.calls = calls
    return load


def test_reference_losses_score_reference_model(tiny_llama_path, tokenizer, loader, tmp_path):
    examples = [tokenize_qa(tokenizer, q, a, CHAT) for q, a in PAIRS]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    expected = [s.avg_loss for s in score_examples(model, examples, tokenizer.pad_token_id)]

    losses = ReferenceLosses(tiny_llama_path, loader, tokenizer, cache_root=tmp_path).avg_losses("forget01", examples)

    assert losses == pytest.approx(expected, rel=1e-6)


def test_reference_losses_cached_per_split(tiny_llama_path, tokenizer, loader, tmp_path):
    examples = [tokenize_qa(tokenizer, q, a, CHAT) for q, a in PAIRS]
    first = ReferenceLosses(tiny_llama_path, loader, tokenizer, cache_root=tmp_path).avg_losses("forget01", examples)

    second = ReferenceLosses(tiny_llama_path, loader, tokenizer, cache_root=tmp_path).avg_losses("forget01", examples)

    assert second == first
    assert len(loader.calls) == 1
    [cache_file] = (tmp_path / "mia_reference").iterdir()
    assert cache_file.name.startswith("forget01-")
    assert json.loads(cache_file.read_text())["model_path"] == tiny_llama_path


def test_reference_losses_rescore_changed_model(tiny_llama_path, tokenizer, loader, tmp_path):
    model_path = str(shutil.copytree(tiny_llama_path, tmp_path / "model"))
    examples = [tokenize_qa(tokenizer, q, a, CHAT) for q, a in PAIRS]
    ReferenceLosses(model_path, loader, tokenizer, cache_root=tmp_path).avg_losses("forget01", examples)
    config = os.path.join(model_path, "config.json")
    stat = os.stat(config)
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the model was saved again

    ReferenceLosses(model_path, loader, tokenizer, cache_root=tmp_path).avg_losses("forget01", examples)
    ReferenceLosses(model_path, loader, tokenizer, cache_root=tmp_path).avg_losses("holdout01", examples[:1])

    assert len(loader.calls) == 3
    assert len(list((tmp_path / "mia_reference").iterdir())) == 3


def test_reference_losses_reject_other_vocabulary(tiny_llama_path, tokenizer, tmp_path):
    def load_with_extra_token(path):
        other = AutoTokenizer.from_pretrained(path)
        other.add_tokens(["<extra-token>"])
        return AutoModelForCausalLM.from_pretrained(path), other

    examples = [tokenize_qa(tokenizer, *PAIRS[0], CHAT)]
    reference = ReferenceLosses(tiny_llama_path, load_with_extra_token, tokenizer, cache_root=tmp_path)

    with pytest.raises(ValueError, match="uses a different vocabulary"):
        reference.avg_losses("forget01", examples)


def test_reference_losses_cached_apart_under_autocast(tiny_llama_path, tokenizer, loader, tmp_path):
    import torch

    examples = [tokenize_qa(tokenizer, q, a, CHAT) for q, a in PAIRS]
    full = ReferenceLosses(tiny_llama_path, loader, tokenizer, cache_root=tmp_path).avg_losses("forget01", examples)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ReferenceLosses(tiny_llama_path, loader, tokenizer, cache_root=tmp_path).avg_losses("forget01", examples)

    assert len(loader.calls) == 2
    assert mixed != full
    assert mixed == pytest.approx(full, rel=1e-2)
