"""Running the fine-tuning and unlearning commands on the tiny model, and reading their outputs."""

from __future__ import annotations

import json

from cli_helpers import run_cli, tiny_overrides
from safetensors.torch import load_file

TRAIN = ["train", "--config-name=train-lora.yaml", "experiment=finetune/tofu/default"]
UNLEARN = ["train", "--config-name=unlearn.yaml", "experiment=unlearn/tofu/default", "trainer=FederatedUnlearningTrainer"]


def adapter(folder) -> dict:
    return load_file(folder / "adapter_model.safetensors")


def summary(folder) -> dict:
    return json.loads((folder / "federation.json").read_text())


def finetune(tiny_llama_path, data_dir, output_dir, *overrides) -> None:
    """Fine-tune the tiny Llama with LoRA on TOFU full: 3 clients, 5 authors, 2 rounds of 1 step per client."""
    code = run_cli(*TRAIN, "task_name=protocols", *tiny_overrides(tiny_llama_path, data_dir, output_dir),
                   "trainer.args.max_steps=1", "trainer.args.learning_rate=1e-2", *overrides)
    assert code == 0


def unlearn(model_path, data_dir, output_dir, *overrides) -> int:
    """Serve client 0's request on the federation saved at ``model_path`` (1 step per client round); return the exit code."""
    return run_cli(*UNLEARN, "task_name=protocols", *tiny_overrides(str(model_path), data_dir, output_dir),
                   "trainer.args.max_steps=1", "trainer.args.learning_rate=1e-2", *overrides)
