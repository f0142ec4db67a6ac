"""fedunlearn compare: a grid of methods x protocols on one fine-tuned federation, on one table."""

from __future__ import annotations

import csv
import json

import pytest
from cli_helpers import run_cli

from fedunlearn.trainers.compare import Cell, comparison_rows, grid_cells, markdown_table


def compare_overrides(model_path, data_dir, output_dir) -> list[str]:
    """The tiny Llama on 5 TOFU authors: 1 fine-tuning round, 1 step per client round, 1 item per evaluation set."""
    return [
        f"model.model_args.pretrained_model_name_or_path={model_path}", f"data_dir={data_dir}",
        f"paths.output_dir={output_dir}", "data.max_length=128",
        "finetune.method_args.global_rounds=1", "finetune.args.max_steps=1", "unlearn.args.max_steps=1",
        "finetune.args.per_device_train_batch_size=4", "unlearn.args.per_device_train_batch_size=4",
        "finetune.args.bf16=false", "unlearn.args.bf16=false", "eval.tofu.bf16=false",
        "eval.tofu.max_samples=1", "eval.tofu.generation.max_new_tokens=4",
        "compare.methods=[GradAscent]", "compare.protocols=[local,subtract]",
    ]


@pytest.fixture(scope="module")
def compared(tiny_llama_path, tofu_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    assert run_cli("compare", *compare_overrides(tiny_llama_path, tofu_data_dir, root)) == 0
    return root


def test_grid_runs_every_cell(compared):
    rows = json.loads((compared / "results.json").read_text())

    assert [r["model"] for r in rows] == ["finetune", "retrain", "local-GradAscent", "subtract"]
    assert [r["exact"] for r in rows] == [None, "yes", "no", "no"]
    for name in ("retrain", "local-GradAscent", "subtract"):
        assert (compared / "cells" / name / "adapter_model.safetensors").is_file()
        assert (compared / "eval" / name / "TOFU_SUMMARY.json").is_file()


def test_table_matches_summaries_and_costs(compared):
    rows = {r["model"]: r for r in json.loads((compared / "results.json").read_text())}
    subtract = json.loads((compared / "eval" / "subtract" / "TOFU_SUMMARY.json").read_text())
    costs = {name: json.loads((compared / "cells" / name / "federation.json").read_text())["cost"]
             for name in ("retrain", "subtract")}

    assert rows["subtract"]["forget_Q_A_Prob"] == subtract["forget_Q_A_Prob"]
    assert rows["subtract"]["model_utility"] == subtract["model_utility"]
    assert rows["subtract"]["forget_quality"] is not None
    assert rows["retrain"]["forget_quality"] is None  # the reference itself
    # Retraining runs 1 round of 3 clients x 1 step, as does subtract's recovery round.
    assert rows["retrain"]["client_steps"] == 3
    assert rows["subtract"]["client_steps"] == 3
    assert rows["subtract"]["steps_vs_retrain"] == 1.0
    assert rows["subtract"]["wall_vs_retrain"] == pytest.approx(costs["subtract"]["wall_seconds"] /
                                                                costs["retrain"]["wall_seconds"])
    assert rows["retrain"]["steps_vs_retrain"] == 1.0


def test_markdown_and_csv_agree(compared):
    markdown = (compared / "results.md").read_text().splitlines()
    with open(compared / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))

    assert markdown[0].startswith("| model | protocol | method | exact | forget_quality |")
    assert len(markdown) == 2 + len(table) == 6
    assert [r["model"] for r in table] == ["finetune", "retrain", "local-GradAscent", "subtract"]
    assert float(table[3]["steps_vs_retrain"]) == 1.0
    assert "| subtract | subtract | - | no |" in markdown[5]


def test_resume_skips_finished_cells(compared, tiny_llama_path, tofu_data_dir, capsys):
    before = (compared / "results.md").read_text()
    mtimes = {p: p.stat().st_mtime for p in compared.glob("cells/*/adapter_model.safetensors")}

    code = run_cli("compare", *compare_overrides(tiny_llama_path, tofu_data_dir, compared), "resume=true")

    assert code == 0
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes
    assert (compared / "results.md").read_text() == before


def test_rerun_without_resume_fails(compared, tiny_llama_path, tofu_data_dir, capsys):
    code = run_cli("compare", *compare_overrides(tiny_llama_path, tofu_data_dir, compared))

    assert code == 2
    assert "pass resume=true" in capsys.readouterr().err


def test_grid_runs_method_free_protocols_once():
    cells = grid_cells(["GradAscent", "GradDiff"], ["local", "federaser", "pga", "retrain"])

    assert [c.name for c in cells] == ["retrain", "local-GradAscent", "local-GradDiff", "federaser",
                                       "pga-GradAscent", "pga-GradDiff"]


@pytest.mark.parametrize(("methods", "protocols", "message"), [
    (["GradAscent"], ["erase"], "unknown protocol 'erase' in compare.protocols"),
    (["Forgetful"], ["local"], "unknown method 'Forgetful' in compare.methods"),
    ([], ["local"], "compare.methods is empty"),
])
def test_bad_grid_raises(methods, protocols, message):
    with pytest.raises(ValueError, match=message):
        grid_cells(methods, protocols)


def test_rows_by_hand():
    cells = [Cell("retrain", None), Cell("pga", "GradAscent")]
    summaries = {"finetune": {"forget_quality": 0.01, "model_utility": 0.4, "forget_Q_A_Prob": 0.7},
                 "retrain": {"model_utility": 0.35, "forget_Q_A_Prob": 0.2, "privleak": 1.5},
                 "pga-GradAscent": {"forget_quality": 0.5, "model_utility": 0.3, "forget_Q_A_Prob": 0.1}}
    costs = {"retrain": {"client_steps": 40, "wall_seconds": 200.0, "bytes_sent": 2e6},
             "pga-GradAscent": {"client_steps": 10, "wall_seconds": 50.0, "bytes_sent": 5e5}}

    rows = comparison_rows(cells, summaries, costs, ["finetune"])

    assert rows[2]["steps_vs_retrain"] == 0.25
    assert rows[2]["wall_vs_retrain"] == 0.25
    assert rows[2]["MB_sent"] == 0.5
    assert rows[1]["privleak"] is None  # measured against the retrain model itself
    assert rows[2]["privleak"] is None
    table = markdown_table(rows).splitlines()
    assert table[2] == "| finetune | - | - | - | 0.0100 | 0.4000 | 0.7000 | n/a | - | - | - | - | - |"
    assert table[4] == "| pga-GradAscent | pga | GradAscent | no | 0.5000 | 0.3000 | 0.1000 | n/a | 10 | 0.25x | 50.0 | 0.25x | 0.5 |"


def test_cfg_job_composes_cpu_preset(capsys):
    assert run_cli("compare", "--cfg", "job") == 0
    out = capsys.readouterr().out
    assert "protocols:\n  - local\n  - retrain\n  - federaser\n  - subtract\n  - pga\n  - sharded" in out
    assert "max_samples: 10" in out
