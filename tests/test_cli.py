"""The command line: Hydra's flags, and one-line errors that leave no output folder behind."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli, tiny_overrides

TRAIN = ["train", "--config-name=train-lora.yaml", "experiment=finetune/tofu/default", "task_name=cli"]
UNLEARN = ["train", "--config-name=unlearn.yaml", "experiment=unlearn/tofu/default", "trainer=FederatedUnlearningTrainer",
           "task_name=cli"]


def test_no_command_prints_usage(capsys):
    assert run_cli() == 2
    assert "usage: fedunlearn" in capsys.readouterr().out


def test_unknown_command_fails(capsys):
    assert run_cli("fit") == 2
    assert "unknown command 'fit'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "run"])
def test_hydra_help_works(command, capsys):
    assert run_cli(command, "--help") == 0
    assert "Powered by Hydra" in capsys.readouterr().out


def test_cfg_job_prints_composed_config(capsys):
    assert run_cli(*UNLEARN, "trainer.method_args.unlearn_trainer_cls=NPO", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert "unlearn_trainer_cls: NPO" in out
    assert "handler: FederatedUnlearningTrainer" in out


def test_run_preset_composes_forget01(capsys):
    assert run_cli("run", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert "forget_split: forget01" in out
    assert "max_authors: 3" in out


def _bad_data_dir(tmp_path, full_json: str):
    folder = tmp_path / "data"
    (folder / "tofu").mkdir(parents=True)
    (folder / "tofu" / "full.json").write_text(full_json)
    return folder


BAD_INPUTS = {
    "unknown method": (UNLEARN, ["trainer.method_args.unlearn_trainer_cls=Forgetful"], "unknown unlearning method 'Forgetful'"),
    "unknown aggregation": (TRAIN, ["trainer.method_args.aggregation_strategy=FedMagic"], "unknown aggregation_strategy 'FedMagic'"),
    "unknown trainer handler": (TRAIN, ["trainer.handler=Nope"], "unknown trainer 'Nope'"),
    "missing split": (TRAIN, ["data.train_split=full_v2"], "TOFU split 'full_v2' not found"),
    "more clients than authors": (TRAIN, ["trainer.method_args.num_clients=9"], "num_clients=9 needs at least 9 non-forget authors"),
    "target out of range": (TRAIN, ["trainer.method_args.target_client_idx=3"], "target_client_idx=3 is out of range"),
    "unknown partition": (TRAIN, ["trainer.method_args.partition=zipf"], "unknown partition 'zipf'"),
    "bad method argument": (UNLEARN, ["+trainer.method_args.temperature=2"], "invalid method_args for GradDiff"),
    "forget split without file": (UNLEARN, ["forget_split=forget07"], "TOFU split 'forget07' not found"),
    "zero learning rate": (TRAIN, ["trainer.args.learning_rate=0"], "trainer.args.learning_rate must be > 0"),
    "zero unlearn epochs": (UNLEARN, ["trainer.method_args.unlearn_epochs=0"], "unlearn_epochs must be > 0"),
    "zero rounds": (TRAIN, ["trainer.method_args.global_rounds=0"], "global_rounds must be >= 1"),
    "negative max_authors": (TRAIN, ["data.max_authors=-3"], "data.max_authors must be >= 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_cleanly(case, tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    command, overrides, message = BAD_INPUTS[case]
    output_dir = tmp_path / "out"
    code = run_cli(*command, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir), *overrides)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1]
    assert err[-1].startswith("error: ")
    assert not output_dir.exists()


def test_missing_model_path_fails(tofu_data_dir, tmp_path, capsys):
    output_dir = tmp_path / "out"
    code = run_cli(*TRAIN, *tiny_overrides(str(tmp_path / "no-such-model"), tofu_data_dir, output_dir))
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not output_dir.exists()


def test_unknown_trainer_config_fails(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    code = run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tofu_data_dir, tmp_path / "out"), "trainer=Sisyphus")
    assert code != 0
    assert "trainer/Sisyphus" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q", "answer": "a"}\n{"question": "q", \n', "malformed JSON"),
        ('{"question": "q"}\n', "has no 'answer' field"),
        ('{"answer": "a"}\n', "has no 'question' field"),
    ],
)
def test_bad_data_file_fails(content, message, tiny_llama_path, tmp_path, capsys):
    data_dir = _bad_data_dir(tmp_path, content)
    output_dir = tmp_path / "out"
    code = run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, data_dir, output_dir))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not output_dir.exists()


def test_missing_data_folder_fails(tiny_llama_path, tmp_path, capsys):
    code = run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tmp_path / "nowhere", tmp_path / "out"))
    assert code == 2
    assert "has no 'tofu' subfolder" in capsys.readouterr().err


def test_eval_missing_retain_logs_fails(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    output_dir = tmp_path / "out"
    code = run_cli("eval", "experiment=eval/tofu/default", "task_name=cli", f"paths.output_dir={output_dir}",
                   f"model.model_args.pretrained_model_name_or_path={tiny_llama_path}", f"data_dir={tofu_data_dir}",
                   f"retain_logs_path={tmp_path / 'missing.json'}")
    assert code == 2
    assert "retain_logs_path" in capsys.readouterr().err
    assert not output_dir.exists()


def test_multirun_writes_one_folder_per_job(tiny_llama_path, tofu_data_dir, tmp_path):
    output_dir = tmp_path / "sweep"
    code = run_cli("train", "-m", *TRAIN[1:], *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=1),
                   "trainer.method_args.aggregation_strategy=FedAvg,FedProx", f"paths.root_dir={tmp_path}")
    assert code == 0
    jobs = sorted(p.name for p in output_dir.iterdir())
    assert jobs == ["trainer.method_args.aggregation_strategy=FedAvg", "trainer.method_args.aggregation_strategy=FedProx"]
    for job in jobs:
        assert json.loads((output_dir / job / "federation.json").read_text())["trainer"] == "FederatedFinetune"


def test_forget_split_mismatch_fails(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    data_dir = tmp_path / "data"
    (data_dir / "tofu").mkdir(parents=True)
    full = (tofu_data_dir / "tofu" / "full.json").read_text()
    (data_dir / "tofu" / "full.json").write_text(full)
    # The first two authors posing as forget01, whose records are the last two authors of full.
    (data_dir / "tofu" / "forget01.json").write_text("".join(full.splitlines(keepends=True)[:40]))
    output_dir = tmp_path / "out"
    code = run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, data_dir, output_dir))
    assert code == 2
    assert "are not those of the last 2 authors of full" in capsys.readouterr().err
    assert not output_dir.exists()


def test_run_with_mismatched_retain_split_fails(tofu_data_dir, tmp_path, capsys):
    output_dir = tmp_path / "run"
    code = run_cli("run", "task_name=cli", f"paths.output_dir={output_dir}", f"data_dir={tofu_data_dir}",
                   "forget_split=forget01", "retain_split=retain90")
    assert code == 2
    assert "set retain_split=retain99" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not output_dir.exists()
