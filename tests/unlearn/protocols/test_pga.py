"""protocol=pga: the reference model, the radius, the projection after each step, and the run."""

from __future__ import annotations

import math

import pytest
import torch

from fedunlearn.unlearn.protocols.pga import (
    BallProjection,
    pga_radius,
    random_adapter_states,
    reference_state,
    squared_distance,
)

from .conftest import RECORDS, UPDATES, t
from .federation import summary, unlearn


def test_reference_by_hand(hand_history):
    # Round 2: w_1 = (a: [0.75, 1], b: [0]); the only other participant is client 1 with U = (a: [1, 1], b: [1]).
    state = reference_state(hand_history, 0, 2)

    assert torch.allclose(state["a"], t(1.75, 2.0))
    assert torch.allclose(state["b"], t(1.0))


def test_reference_matches_paper_formula(hand_history):
    # w_ref = (n w_T - n_k w_k^T) / (n - n_k), with w_k^T = w_{T-1} + U_k^T.
    n, n_k = sum(RECORDS[2].values()), RECORDS[2][0]
    w_prev, w_last = hand_history.load_global(1), hand_history.load_global(2)

    state = reference_state(hand_history, 0, 2)

    for name in state:
        client_model = w_prev[name] + UPDATES[2][0][name]
        assert torch.allclose(state[name], (n * w_last[name] - n_k * client_model) / (n - n_k)), name


def test_reference_without_other_clients_raises(tmp_path):
    from fedunlearn.federated.history import History

    history = History(tmp_path / "federation")
    history.save_round(0, {"a": t(0.0)}, {}, {"participants": []}, "fp", {})
    history.save_round(1, {"a": t(1.0)}, {0: {"a": t(1.0)}}, {"participants": [0], "num_examples": {"0": 3}}, "fp", {})

    with pytest.raises(ValueError, match="round 1 had no participant other than client 0"):
        reference_state(history, 0, 1)


def test_radius_by_hand():
    reference = {"a": t(0.0, 0.0)}
    randoms = [{"a": t(3.0, 0.0)}, {"a": t(0.0, 6.0)}]  # squared distances 9 and 36

    assert pga_radius(reference, randoms) == pytest.approx(math.sqrt((9 + 36) / 2 / 3))


def test_projection_inside_ball_leaves_weights():
    params = [t(0.5, 0.0), t(0.5)]
    projection = BallProjection([t(0.0, 0.0), t(0.0)], radius=1.0)

    projection(params)

    assert torch.equal(params[0], t(0.5, 0.0))
    assert projection.projections == 0


def test_projection_outside_ball_by_hand():
    # Distance from the center (1, 1, 1) is ||(3, 0, 4)|| = 5; radius 2 scales the offset by 2/5.
    params = [t(4.0, 1.0), t(5.0)]
    projection = BallProjection([t(1.0, 1.0), t(1.0)], radius=2.0)

    projection(params)

    assert torch.allclose(params[0], t(1.0 + 1.2, 1.0))
    assert torch.allclose(params[1], t(1.0 + 1.6))
    assert projection.projections == 1


def tiny_lora(path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)
    return model


def lora_weights(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def test_random_adapters_are_fresh_lora(tiny_llama_path):
    model = tiny_lora(tiny_llama_path)
    before = lora_weights(model)

    first, second = random_adapter_states(model, 2, seed=0)
    again = random_adapter_states(model, 1, seed=0)[0]

    assert all(torch.equal(value, lora_weights(model)[name]) for name, value in before.items())
    assert all(torch.equal(value, torch.zeros_like(value)) for name, value in first.items() if "lora_B" in name)
    assert squared_distance(first, second) > 0
    assert all(torch.equal(first[name], again[name]) for name in first)


def test_random_adapters_keep_frozen_lora_a(tiny_llama_path):
    model = tiny_lora(tiny_llama_path)
    for name, param in model.named_parameters():
        if "lora_A" in name:
            param.requires_grad_(False)
    before = lora_weights(model)

    (state,) = random_adapter_states(model, 1, seed=3)

    assert all("lora_B" in name for name in state)
    assert all(torch.equal(value, lora_weights(model)[name]) for name, value in before.items())


@pytest.fixture(scope="module")
def ascended(finetuned, tofu_data_dir, tmp_path_factory):
    """PGA with a radius small enough that the ascent leaves the ball."""
    output_dir = tmp_path_factory.mktemp("pga")
    assert unlearn(finetuned, tofu_data_dir, output_dir, "trainer.method_args.protocol=pga",
                   "trainer.method_args.unlearn_trainer_cls=GradAscent", "trainer.method_args.pga_radius=0.001") == 0
    return output_dir


def test_ascent_stays_in_ball(ascended):
    details = summary(ascended)["protocol_details"]

    assert details["radius"] == 0.001
    assert details["projected_steps"] == 1
    assert details["distance_unlearned_to_reference"] == pytest.approx(0.001, rel=1e-3)


def test_recovery_follows_ascent(ascended):
    result = summary(ascended)

    assert result["method"] == "GradAscent"
    assert result["cost"]["phases"]["projected_ascent"]["client_steps"] == 1
    assert result["cost"]["phases"]["recovery"]["client_steps"] == 3
    assert [r["num_examples"] for r in result["rounds"][1:]] == [{"0": 20, "1": 20, "2": 20}]
