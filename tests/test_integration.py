"""The whole flow on the real SmolLM2-135M-Instruct and real TOFU authors.

Fine-tune a 2-client federation on 2 forget authors and 2 others, train the
retain reference, let client 0 unlearn its forget authors with GradDiff, and
evaluate the three models. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.integration


def test_run_forgets_and_retains(smollm2_path, tofu_data_dir, tmp_path, capsys):
    root = tmp_path / "run"
    code = run_cli(
        "run",
        f"paths.output_dir={root}",
        f"data_dir={tofu_data_dir}",
        "data.max_authors=2",
        "finetune.method_args.num_clients=2",
        "finetune.method_args.global_rounds=2",
        "finetune.args.learning_rate=1e-3",
        "unlearn.method_args.num_clients=2",
        "unlearn.method_args.global_rounds=1",
        "unlearn.method_args.unlearn_epochs=3",
        "unlearn.args.learning_rate=3e-4",
        "eval.tofu.max_samples=10",
        "eval.tofu.generation.max_new_tokens=16",
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "| unlearn |" in table

    results = json.loads((root / "results.json").read_text())
    finetuned, unlearned, retain = results["finetune"], results["unlearn"], results["retain"]
    # Fine-tuning on the forget authors made their answers likelier than the retain model finds them.
    assert finetuned["forget_Q_A_Prob"] > retain["forget_Q_A_Prob"]
    # Unlearning removes at least half of the fine-tuned forget probability.
    assert unlearned["forget_Q_A_Prob"] < 0.5 * finetuned["forget_Q_A_Prob"]
    # The retained authors stay within 25% of their fine-tuned probability.
    assert unlearned["retain_Q_A_Prob"] > 0.75 * finetuned["retain_Q_A_Prob"]
    assert unlearned["forget_quality"] is not None
    assert (root / "unlearn" / "adapter_config.json").is_file()
