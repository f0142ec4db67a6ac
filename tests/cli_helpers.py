"""Running ``fedunlearn`` commands in-process, as a user would type them."""

from __future__ import annotations

import sys

from fedunlearn.cli import main


def run_cli(*args: str) -> int:
    """Run ``fedunlearn ARGS`` and return its exit code (0 when it returns normally)."""
    saved = sys.argv
    sys.argv = ["fedunlearn", *args]
    try:
        main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved
    return 0


def tiny_overrides(model_path: str, data_dir, output_dir, rounds: int = 2) -> list[str]:
    """Return overrides for a fast federation: the tiny Llama, 3 clients, 5 TOFU authors, 2 steps a round."""
    return [
        f"model.model_args.pretrained_model_name_or_path={model_path}",
        f"data_dir={data_dir}",
        f"paths.output_dir={output_dir}",
        "forget_split=forget01",
        "retain_split=retain99",
        "data.max_authors=3",
        "data.max_length=128",
        f"trainer.method_args.global_rounds={rounds}",
        "trainer.args.max_steps=2",
        "trainer.args.per_device_train_batch_size=4",
        "trainer.args.bf16=false",
    ]
