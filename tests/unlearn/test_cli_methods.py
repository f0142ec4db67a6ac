"""Every registered method through the command line: one round, one local step, on the tiny Llama with LoRA."""

import json
import math

import pytest
from cli_helpers import run_cli, tiny_overrides

from fedunlearn.unlearn.methods import METHODS

UNLEARN = ["train", "--config-name=unlearn-lora.yaml", "experiment=unlearn/tofu/default",
           "trainer=FederatedUnlearningTrainer", "task_name=cli"]
# One step of batch size 1 on two clients keeps each run to a few seconds.
ONE_STEP = ["trainer.args.max_steps=1", "trainer.args.per_device_train_batch_size=1",
            "trainer.method_args.num_clients=2", "data.max_authors=2"]
# The tiny Llama has 2 decoder layers, so RMU's default layer 7 does not exist. The key is set as
# OpenUnlearning users write it, without "+", since the trainer config lists every method key.
METHOD_OVERRIDES = {"RMU": ["trainer.method_args.layer_id=1"]}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_runs_one_step(name, tiny_llama_path, tofu_data_dir, tmp_path):
    output_dir = tmp_path / "out"

    code = run_cli(*UNLEARN, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=1), *ONE_STEP,
                   f"trainer.method_args.unlearn_trainer_cls={name}", *METHOD_OVERRIDES.get(name, []))

    assert code == 0
    summary = json.loads((output_dir / "federation.json").read_text())
    assert summary["method"] == name
    target_round = summary["rounds"][-1]
    assert target_round["roles"]["0"] == "unlearn"
    assert target_round["metrics"]["0"]["steps"] == 1
    assert math.isfinite(target_round["metrics"]["0"]["loss"])
    assert (output_dir / "adapter_config.json").is_file()


def test_rmu_bad_layer_fails_cleanly(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    output_dir = tmp_path / "out"

    code = run_cli(*UNLEARN, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=1), *ONE_STEP,
                   "trainer.method_args.unlearn_trainer_cls=RMU")

    assert code == 2
    assert "RMU layer_id=7 is out of range: the model has 2 decoder layers" in capsys.readouterr().err
