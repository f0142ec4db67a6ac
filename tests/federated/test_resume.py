"""An interrupted federation resumes from its last completed round and ends as if never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import run_cli, tiny_overrides
from safetensors.torch import load_file

from fedunlearn.federated.server import FederatedServer

TRAIN = ["train", "--config-name=train-lora.yaml", "experiment=finetune/tofu/default", "task_name=resume"]


def _adapter(folder):
    return load_file(folder / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tiny_llama_path, tofu_data_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    assert run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=3)) == 0
    return output_dir


def test_interrupted_run_resumes_to_same_adapter(uninterrupted, tiny_llama_path, tofu_data_dir, tmp_path, monkeypatch,
                                                 capsys):
    output_dir = tmp_path / "interrupted"
    original = FederatedServer._run_round

    def stop_before_round_3(self, server_round, global_state):
        if server_round == 3:
            raise KeyboardInterrupt
        return original(self, server_round, global_state)

    monkeypatch.setattr(FederatedServer, "_run_round", stop_before_round_3)
    assert run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=3)) == 130
    assert "resume=true" in capsys.readouterr().err
    assert json.loads((output_dir / "federation" / "checkpoint.json").read_text())["completed_rounds"] == 2
    assert not (output_dir / "adapter_config.json").exists()

    monkeypatch.setattr(FederatedServer, "_run_round", original)
    assert run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=3), "resume=true") == 0
    resumed, expected = _adapter(output_dir), _adapter(uninterrupted)
    assert resumed.keys() == expected.keys()
    for name in expected:
        assert (resumed[name] == expected[name]).all(), name
    rounds = json.loads((output_dir / "federation" / "history.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]


def test_checkpoint_without_resume_fails(uninterrupted, tiny_llama_path, tofu_data_dir, capsys):
    code = run_cli(*TRAIN, *tiny_overrides(tiny_llama_path, tofu_data_dir, uninterrupted, rounds=3))
    assert code == 2
    assert "pass resume=true" in capsys.readouterr().err


def test_resume_with_other_settings_fails(uninterrupted, tiny_llama_path, tofu_data_dir, capsys):
    overrides = tiny_overrides(tiny_llama_path, tofu_data_dir, uninterrupted, rounds=3)
    code = run_cli(*TRAIN, *overrides, "resume=true", "trainer.args.learning_rate=0.5")
    assert code == 2
    assert "made with other settings" in capsys.readouterr().err


def test_sigint_between_rounds_then_resume(uninterrupted, tiny_llama_path, tofu_data_dir, tmp_path):
    """Stop a real ``fedunlearn`` process with Ctrl-C once a round is checkpointed, then resume it."""
    output_dir = tmp_path / "killed"
    overrides = tiny_overrides(tiny_llama_path, tofu_data_dir, output_dir, rounds=3)
    command = [sys.executable, "-c", "from fedunlearn.cli import main; main()", *TRAIN, *overrides]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    checkpoint = output_dir / "federation" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.is_file() and json.loads(checkpoint.read_text())["completed_rounds"] >= 1:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    process.wait(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    assert json.loads(checkpoint.read_text())["completed_rounds"] >= 1

    assert run_cli(*TRAIN, *overrides, "resume=true") == 0
    resumed, expected = _adapter(output_dir), _adapter(uninterrupted)
    for name in expected:
        assert (resumed[name] == expected[name]).all(), name
