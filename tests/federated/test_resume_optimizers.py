"""Server optimizer state and SCAFFOLD's control variates survive a resume, bit for bit.

Each case runs three rounds straight, and two rounds then a third in a new
server with a new aggregator and runtime (as a new process would), on the tiny
Llama with LoRA, and compares the final global states and optimizer states.
"""

import pytest
import torch

from fedunlearn.data.template import tokenize_qa
from fedunlearn.data.tofu import load_split
from fedunlearn.federated.aggregation import build_aggregator
from fedunlearn.federated.client import Client, TrainingArgs
from fedunlearn.federated.history import History
from fedunlearn.federated.runtime.inprocess import InProcessRuntime
from fedunlearn.federated.server import FederatedServer, RoundSettings
from fedunlearn.federated.state import get_trainable_state
from fedunlearn.losses import FineTune


@pytest.fixture(scope="module")
def setup(tiny_llama_path, tokenizer, tofu_data_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_path),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    records = load_split("forget01", tofu_data_dir)[:6]
    examples = [tokenize_qa(tokenizer, r["question"], r["answer"], {"apply_chat_template": False}, 64) for r in records]
    args = TrainingArgs(learning_rate=1e-2, per_device_train_batch_size=2, max_steps=1)
    clients = [Client(k, {"train": examples[2 * k: 2 * k + 2]}, "train", FineTune(), args, 2 + k) for k in range(3)]
    return model, clients, get_trainable_state(model), tokenizer.pad_token_id


def run(setup, root, strategy, args, num_rounds, resume=False):
    model, clients, start, pad_token_id = setup
    runtime = InProcessRuntime(model, clients, seed=0, pad_token_id=pad_token_id)
    # Two of the three clients each round, so SCAFFOLD's c is not simply the mean of the replies.
    server = FederatedServer(runtime, build_aggregator(strategy, **args), History(root), num_rounds=num_rounds,
                             fingerprint="fp", settings=RoundSettings(fraction_fit=0.67), seed=0)
    final = server.run(start, resume=resume)
    return final, server


@pytest.fixture(scope="module", params=[("FedAdam", {"eta": 1e-2}), ("SCAFFOLD", {})], ids=["FedAdam", "SCAFFOLD"])
def runs(request, setup, tmp_path_factory):
    """Return ``(strategy, (final, server) straight, (final, server) resumed after round 2)``."""
    strategy, args = request.param
    root = tmp_path_factory.mktemp(strategy)
    straight = run(setup, root / "straight", strategy, args, 3)
    run(setup, root / "resumed", strategy, args, 2)
    return strategy, straight, run(setup, root / "resumed", strategy, args, 3, resume=True)


def test_resumed_equals_straight(runs):
    _, (straight, _), (resumed, _) = runs

    assert resumed.keys() == straight.keys()
    for name in straight:
        assert torch.equal(resumed[name], straight[name]), name


def test_server_state_resumes(runs):
    _, (_, straight_server), (_, resumed_server) = runs
    expected, resumed = straight_server.aggregator.state_dict(), resumed_server.aggregator.state_dict()

    assert expected.keys() == resumed.keys() != set()
    for part in expected:
        for name in expected[part]:
            assert torch.equal(resumed[part][name], expected[part][name]), (part, name)


def test_client_controls_resume(runs):
    strategy, (_, straight_server), (_, resumed_server) = runs
    expected, resumed = straight_server.runtime.state_dict(), resumed_server.runtime.state_dict()
    if strategy != "SCAFFOLD":
        assert all(state == {} for state in [*expected.values(), *resumed.values()])
        return

    participated = {k for r in straight_server.history.records()[1:] for k in r["participants"]}
    assert participated == {0, 1, 2}
    for client_id in participated:
        controls = expected[client_id]["scaffold_control"]
        assert any(value.abs().sum() > 0 for value in controls.values())
        for name, value in controls.items():
            assert torch.equal(resumed[client_id]["scaffold_control"][name], value), (client_id, name)
