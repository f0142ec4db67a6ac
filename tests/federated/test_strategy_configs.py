"""The aggregation settings from the command line: fine-tuning and unlearning runs, and bad values."""

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_cli, tiny_overrides
from safetensors.torch import load_file

from fedunlearn.federated.aggregation import AGGREGATORS, aggregator_args

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "fedunlearn" / "configs" / "trainer"
TRAIN = ["train", "--config-name=train-lora.yaml", "experiment=finetune/tofu/default", "task_name=strategies"]
UNLEARN = ["train", "--config-name=unlearn.yaml", "experiment=unlearn/tofu/default", "trainer=FederatedUnlearningTrainer",
           "task_name=strategies"]
METHOD = "trainer.method_args."


@pytest.mark.parametrize("name", ["FederatedFinetune.yaml", "FederatedUnlearningTrainer.yaml"])
def test_config_lists_every_setting(name):
    listed = yaml.safe_load((CONFIGS / name).read_text())["method_args"]["aggregation_args"]

    assert set(listed) == {arg for strategy in AGGREGATORS for arg in aggregator_args(strategy)}
    assert all(value is None for value in listed.values())


@pytest.fixture(scope="module")
def finetuned(tiny_llama_path, tofu_data_dir, tmp_path_factory):
    """Fine-tune with SCAFFOLD, FFA-LoRA, a Dirichlet partition, client sampling and a decaying learning rate."""
    output_dir = tmp_path_factory.mktemp("scaffold")
    code = run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=2),
                   f"{METHOD}aggregation_strategy=SCAFFOLD", f"{METHOD}aggregation_args.server_learning_rate=0.5",
                   f"{METHOD}lora_aggregation=ffa", f"{METHOD}partition=dirichlet", f"{METHOD}partition_alpha=2.0",
                   f"{METHOD}fraction_fit=0.67", f"{METHOD}min_fit_clients=2", f"{METHOD}round_lr_decay=0.5")
    assert code == 0
    return output_dir


def test_finetune_with_settings(finetuned):
    rounds = json.loads((finetuned / "federation" / "history.json").read_text())[1:]

    assert [len(r["selected"]) for r in rounds] == [2, 2]  # max(int(0.67 * 3), 2)
    assert [r["lr_scale"] for r in rounds] == [1.0, 0.5]
    assert all(r["participants"] == r["selected"] and r["missing"] == [] and r["rejected"] == {} for r in rounds)
    exchanged = load_file(finetuned / "federation" / "history" / "round_0002" / "global.safetensors")
    assert exchanged and all(".lora_B." in name for name in exchanged)  # FFA-LoRA: only B travels
    saved = load_file(finetuned / "adapter_model.safetensors")
    assert any(".lora_A." in name for name in saved)  # the frozen A is part of the saved adapter


def test_unlearn_with_fedadam(finetuned, tofu_data_dir, tmp_path):
    overrides = tiny_overrides(str(finetuned), tofu_data_dir, tmp_path / "unlearn", rounds=1)

    code = run_cli(*UNLEARN, *overrides, f"{METHOD}aggregation_strategy=FedAdam", f"{METHOD}aggregation_args.eta=1e-3",
                   f"{METHOD}max_update_norm=100", f"{METHOD}lora_aggregation=ffa", f"{METHOD}partition=dirichlet",
                   f"{METHOD}partition_alpha=2.0")

    assert code == 0
    history = tmp_path / "unlearn" / "federation"
    record = json.loads((history / "history.json").read_text())[1]
    assert record["participants"] == [0, 1, 2]
    assert set(record["roles"].values()) == {"unlearn", "retain"}
    assert all(0 < norm <= 100 for norm in record["update_norm"].values())
    assert (history / "history" / "round_0001" / "aggregator.pt").is_file()  # FedAdam's moments, for resume


@pytest.mark.parametrize(
    "command, overrides, message",
    [
        (TRAIN, ["aggregation_strategy=FedAdam", "aggregation_args.eta=-1"],
         "error: invalid trainer.method_args.aggregation_args for aggregation_strategy=FedAdam: eta must be > 0, got -1"),
        (TRAIN, ["aggregation_strategy=FedAvg", "aggregation_args.eta=0.1"],
         "error: unknown trainer.method_args.aggregation_args ['eta'] for aggregation_strategy=FedAvg: valid keys are none"),
        (TRAIN, ["aggregation_strategy=FedAvgM", "+trainer.method_args.aggregation_args.momentum=0.9"],
         "valid keys are ['server_learning_rate', 'server_momentum']"),
        (UNLEARN, ["aggregation_strategy=FedYogi", "aggregation_args.beta_2=1.5"],
         "error: invalid trainer.method_args.aggregation_args for aggregation_strategy=FedYogi: beta_2 must be in [0, 1)"),
        (UNLEARN, ["fraction_fit=0"], "error: trainer.method_args.fraction_fit must be in (0, 1], got 0.0"),
        (TRAIN, ["min_fit_clients=5"], "error: round 1: 3 clients are available, fewer than min_available_clients=1 or "
                                       "min_fit_clients=5"),
    ],
)
def test_bad_setting_fails_cleanly(command, overrides, message, tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    arguments = [o if o.startswith("+") else METHOD + o for o in overrides]

    code = run_cli(*command, *tiny_overrides(tiny_llama_path, tofu_data_dir, tmp_path / "out", rounds=1), *arguments)

    assert code == 2
    assert message in capsys.readouterr().err
