"""Fixtures for runtime=flower: a private FLWR_HOME, the tiny run's overrides, partition files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import run_cli


@pytest.fixture(scope="module")
def flwr_home(tmp_path_factory):
    """Point FLWR_HOME (Flower's connection profiles and installed apps) at a fresh folder for the module."""
    home = tmp_path_factory.mktemp("flwr-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLWR_HOME", str(home))
        yield home


def tiny_run(model_path: str, data_dir: Path, output_dir: Path, *, num_clients: int, rounds: int = 2) -> list[str]:
    """Return overrides for a fast LoRA federation: the tiny Llama, forget01 and 3 other authors, 1 step a round."""
    return [
        f"model.model_args.pretrained_model_name_or_path={model_path}",
        f"data_dir={data_dir}",
        f"paths.output_dir={output_dir}",
        "task_name=flower_test",
        "forget_split=forget01",
        "retain_split=retain99",
        "data.max_authors=3",
        "data.max_length=64",
        f"trainer.method_args.num_clients={num_clients}",
        f"trainer.method_args.global_rounds={rounds}",
        "trainer.args.max_steps=1",
        "trainer.args.per_device_train_batch_size=2",
        "trainer.args.bf16=false",
    ]


def write_partition_files(overrides: list[str], directory: Path) -> list[Path]:
    """Write the partition files of ``overrides`` with ``fedunlearn partition`` and return them, by client."""
    code = run_cli("partition", "--config-name=train-lora.yaml", *overrides, f"flower.partition_dir={directory}",
                   "flower.insecure=true")
    assert code == 0
    return sorted(directory.glob("client_*.jsonl"))
