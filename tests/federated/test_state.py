import pytest
import torch
from torch import nn

from fedunlearn.federated.state import get_trainable_state, load_trainable_state, state_delta, state_nbytes


class TwoLayer(nn.Module):
    """A frozen embedding under a trainable linear layer, like a base model under an adapter."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(5, 3, dtype=dtype).requires_grad_(False)
        self.head = nn.Linear(3, 2, dtype=dtype)


def test_state_holds_trainable_only():
    state = get_trainable_state(TwoLayer())

    assert list(state) == ["head.weight", "head.bias"]


def test_state_is_float32():
    state = get_trainable_state(TwoLayer(dtype=torch.bfloat16))

    assert all(value.dtype == torch.float32 for value in state.values())


def test_state_is_copy():
    model = TwoLayer()
    state = get_trainable_state(model)
    before = model.head.bias.detach().clone()

    with torch.no_grad():
        model.head.bias.add_(1.0)

    assert torch.equal(state["head.bias"], before)


def test_state_round_trip():
    source, target = TwoLayer(), TwoLayer()
    with torch.no_grad():
        source.head.weight.mul_(-2.0)
    state = get_trainable_state(source)

    load_trainable_state(target, state)

    assert torch.equal(target.head.weight, source.head.weight)
    assert torch.equal(target.head.bias, source.head.bias)
    assert not torch.equal(target.head.weight, TwoLayer().head.weight)


def test_load_key_mismatch_raises():
    model = TwoLayer()
    state = get_trainable_state(model)
    state["head.scale"] = state.pop("head.bias")

    with pytest.raises(KeyError, match=r"missing \['head.bias'\], unexpected \['head.scale'\]"):
        load_trainable_state(model, state)


def test_lora_state_is_adapter(tiny_llama_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama_path),
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"]),
    )
    state = get_trainable_state(model)

    # 2 layers x 2 projections x (lora_A, lora_B)
    assert len(state) == 8
    assert all(".lora_A." in name or ".lora_B." in name for name in state)


def test_state_delta_by_hand():
    new = {"w": torch.tensor([1.5, -2.0]), "b": torch.tensor([3.0])}
    old = {"w": torch.tensor([0.5, 1.0]), "b": torch.tensor([3.0])}

    delta = state_delta(new, old)

    assert list(delta) == ["w", "b"]
    assert delta["w"].tolist() == [1.0, -3.0]
    assert delta["b"].tolist() == [0.0]


def test_state_nbytes():
    # 6 float32 values and 4 bfloat16 values: 6*4 + 4*2 bytes.
    state = {"a": torch.zeros(2, 3), "b": torch.zeros(4, dtype=torch.bfloat16)}

    assert state_nbytes(state) == 32
