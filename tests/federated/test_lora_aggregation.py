"""LoRA aggregation: the gap of averaging A and B separately, and FFA-LoRA's exact average."""

import math

import pytest
import torch

from fedunlearn.data.template import tokenize_qa
from fedunlearn.data.tofu import load_split
from fedunlearn.federated.aggregation import FedAvg
from fedunlearn.federated.aggregation.lora import lora_product_gap, prepare_lora_aggregation
from fedunlearn.federated.client import Client, TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.inprocess import InProcessRuntime
from fedunlearn.federated.server import FederatedServer
from fedunlearn.federated.state import get_trainable_state
from fedunlearn.losses import FineTune

A = "base_model.model.layers.0.q_proj.lora_A.default.weight"
B = "base_model.model.layers.0.q_proj.lora_B.default.weight"


def test_gap_by_hand():
    first = {A: torch.tensor([[1.0, 0.0]]), B: torch.tensor([[1.0], [0.0]])}  # B A = [[1, 0], [0, 0]]
    second = {A: torch.tensor([[0.0, 1.0]]), B: torch.tensor([[0.0], [1.0]])}  # B A = [[0, 0], [0, 1]]

    # mean(B A) = [[0.5, 0], [0, 0.5]], mean(B) mean(A) = [[0.25, 0.25], [0.25, 0.25]]
    # ||difference|| = sqrt(4 * 0.25²) = 0.5, ||mean(B A)|| = sqrt(0.5): gap = 0.5 / 0.7071068
    assert lora_product_gap([first, second], [1, 1]) == pytest.approx(0.5 / math.sqrt(0.5))


def test_gap_weighted_by_hand():
    first = {A: torch.tensor([[1.0, 0.0]]), B: torch.tensor([[1.0], [0.0]])}
    second = {A: torch.tensor([[0.0, 1.0]]), B: torch.tensor([[0.0], [1.0]])}

    # Weights 3:1: mean(B A) = [[0.75, 0], [0, 0.25]], mean(B) mean(A) = [0.75, 0.25]^T [0.75, 0.25]
    #   = [[0.5625, 0.1875], [0.1875, 0.0625]]; difference [[0.1875, -0.1875], [-0.1875, 0.1875]]
    #   gap = 0.375 / sqrt(0.625)
    assert lora_product_gap([first, second], [3, 1]) == pytest.approx(0.375 / math.sqrt(0.625))


def test_gap_zero_for_shared_a():
    shared = torch.tensor([[1.0, 2.0]])
    states = [{A: shared, B: torch.tensor([[1.0], [3.0]])}, {A: shared, B: torch.tensor([[-2.0], [0.5]])}]

    assert lora_product_gap(states, [2, 5]) == pytest.approx(0.0, abs=1e-7)


def test_gap_none_without_pairs():
    assert lora_product_gap([{B: torch.ones(2, 1)}], [1]) is None
    assert lora_product_gap([{"w": torch.ones(2)}], [1]) is None


# --- on the tiny Llama with LoRA ----------------------------------------------------------------------


def lora_model(tiny_llama_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_path),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))


@pytest.fixture(scope="module")
def examples(tokenizer, tofu_data_dir):
    records = load_split("forget01", tofu_data_dir)[:6]
    return [tokenize_qa(tokenizer, r["question"], r["answer"], {"apply_chat_template": False}, 64) for r in records]


def federation(model, examples, root, pad_token_id):
    args = TrainingArgs(learning_rate=1e-2, per_device_train_batch_size=2, max_steps=2)
    clients = [Client(0, {"train": examples[:2]}, "train", FineTune(), args, 2),
               Client(1, {"train": examples[2:]}, "train", FineTune(), args, 4)]
    runtime = InProcessRuntime(model, clients, seed=0, pad_token_id=pad_token_id)
    return FederatedServer(runtime, FedAvg(), History(root), num_rounds=1, fingerprint="fp")


def test_ffa_freezes_a(tiny_llama_path):
    model = lora_model(tiny_llama_path)

    prepare_lora_aggregation(model, "ffa")

    state = get_trainable_state(model)
    assert len(state) == 4  # 2 layers x (q_proj, v_proj), lora_B only
    assert all(".lora_B." in name for name in state)


def test_separate_leaves_model(tiny_llama_path):
    model = lora_model(tiny_llama_path)

    prepare_lora_aggregation(model, "separate")

    assert len(get_trainable_state(model)) == 8


def test_unknown_mode_raises(tiny_llama_path):
    with pytest.raises(ValueError, match=r"invalid trainer.method_args.lora_aggregation 'svd': choose one of \['separate', 'ffa'\]"):
        prepare_lora_aggregation(lora_model(tiny_llama_path), "svd")


def test_ffa_without_lora_raises():
    with pytest.raises(ValueError, match="lora_aggregation=ffa needs a LoRA model"):
        prepare_lora_aggregation(torch.nn.Linear(2, 2), "ffa")


def test_separate_round_records_gap(tiny_llama_path, examples, tokenizer, tmp_path):
    model = lora_model(tiny_llama_path)
    server = federation(model, examples, tmp_path, tokenizer.pad_token_id)

    server.run(get_trainable_state(model))

    gap = server.history.records()[1]["lora_product_gap"]
    assert 0 < gap < 1


def test_ffa_round_averages_products_exactly(tiny_llama_path, examples, tokenizer, tmp_path):
    model = lora_model(tiny_llama_path)
    prepare_lora_aggregation(model, "ffa")
    start = get_trainable_state(model)
    server = federation(model, examples, tmp_path, tokenizer.pad_token_id)

    final = server.run(start)

    record = server.history.records()[1]
    assert record["lora_product_gap"] is None  # A is not exchanged
    frozen_a = {name: p.detach() for name, p in model.named_parameters() if ".lora_A." in name}
    for b_name, b_global in final.items():
        a = frozen_a[b_name.replace(".lora_B.", ".lora_A.")]
        clients_b = [start[b_name] + server.history.load_update(1, k)[b_name] for k in (0, 1)]
        mean_of_products = (2 * (clients_b[0] @ a) + 4 * (clients_b[1] @ a)) / 6
        assert not torch.equal(clients_b[0], clients_b[1])
        assert torch.allclose(b_global @ a, mean_of_products, atol=1e-7), b_name
