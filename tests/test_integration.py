"""The whole flow on the real SmolLM2-135M-Instruct and real TOFU authors.

The CPU preset (``experiment=run/tofu_cpu``) made smaller: 2 clients on the
2 forget01 authors and 2 others, 2 fine-tuning rounds, the retain reference,
one GradDiff unlearning round of 3 local epochs, and an evaluation of the three models on 5
items of each set with the metrics it checks. About 6 minutes on 2 CPU cores.
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
        "unlearn.method_args.num_clients=2",
        "unlearn.method_args.unlearn_epochs=3",
        "eval.tofu.max_samples=5",
        "eval.tofu.per_client_max_samples=5",
        "eval.tofu.generation.max_new_tokens=8",
        "eval.tofu.metrics=[forget_Q_A_Prob,forget_Q_A_ROUGE,forget_truth_ratio,forget_quality,retain_Q_A_Prob,privleak]",
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
    assert unlearned["privleak"] is not None
    assert (root / "eval" / "unlearn" / "CLIENTS_EVAL.json").is_file()
    assert (root / "report" / "report.html").is_file()
    assert (root / "unlearn" / "adapter_config.json").is_file()
