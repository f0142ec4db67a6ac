"""``fedunlearn eval`` on TOFU: the settings of eval/tofu.yaml reach the evaluation, per-client results included."""

import json

import pytest
from cli_helpers import run_cli

from fedunlearn.evals.tofu_metrics import DEFAULT_METRICS


def eval_args(model_path, data_dir, output_dir, *overrides):
    return [
        "eval", "experiment=eval/tofu/default", "task_name=cli", "forget_split=forget01", "holdout_split=holdout01",
        f"model.model_args.pretrained_model_name_or_path={model_path}", f"data_dir={data_dir}",
        f"paths.output_dir={output_dir}", "eval.tofu.max_samples=2", "eval.tofu.generation.max_new_tokens=4",
        "eval.tofu.per_client_max_samples=2", *overrides,
    ]


def open_unlearning_retain_logs(path):
    """Write a retain model's TOFU_EVAL.json as OpenUnlearning lays it out."""
    path.write_text(json.dumps({
        "forget_truth_ratio": {"agg_value": 0.6, "value_by_index": {"0": {"score": 0.7}, "1": {"score": 1.3}}},
        "mia_min_k": {"agg_value": 0.55, "auc": 0.55,
                      "forget": {"agg_value": 3.0, "value_by_index": {"0": {"score": 3.0}}},
                      "holdout": {"agg_value": 3.1, "value_by_index": {"0": {"score": 3.1}}}},
    }))
    return path


def test_eval_default_metrics_are_full_suite(capsys):
    assert run_cli("eval", "experiment=eval/tofu/default", "task_name=cli", "--cfg", "job") == 0

    out = capsys.readouterr().out
    for name in DEFAULT_METRICS:
        assert f"- {name}\n" in out, name


def test_eval_federated_model_writes_client_results(trained, tiny_llama_path, tofu_data_dir, tmp_path):
    retain_logs = open_unlearning_retain_logs(tmp_path / "retain.json")
    output_dir = tmp_path / "eval"

    code = run_cli(*eval_args(trained, tofu_data_dir, output_dir, "eval.tofu.metrics=[forget_quality,privleak]",
                              f"retain_logs_path={retain_logs}", f"eval.tofu.retrain_model_path={tiny_llama_path}"))

    assert code == 0
    summary = json.loads((output_dir / "TOFU_SUMMARY.json").read_text())
    assert set(summary) == {"forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob", "forget_truth_ratio", "forget_quality",
                            "mia_min_k", "privleak"}
    assert summary["privleak"] == pytest.approx(((1 - summary["mia_min_k"]) - 0.45) / (0.45 + 1e-10) * 100)
    clients = json.loads((output_dir / "CLIENTS_EVAL.json").read_text())
    assert clients["federation_config"] == str(trained / "config.yaml")
    assert set(clients["clients"]) == {"0", "1", "2"}
    assert clients["clients"]["0"]["forget"]["num_records"] == 2
    assert clients["clients"]["0"]["forget"]["kl_to_retrain"] > 0
    assert clients["retrain_model_path"] == tiny_llama_path


def test_eval_per_client_off(trained, tofu_data_dir, tmp_path):
    output_dir = tmp_path / "eval"

    code = run_cli(*eval_args(trained, tofu_data_dir, output_dir, "eval.tofu.metrics=[forget_Q_A_Prob]",
                              "eval.tofu.per_client=false"))

    assert code == 0
    assert (output_dir / "TOFU_SUMMARY.json").is_file()
    assert not (output_dir / "CLIENTS_EVAL.json").exists()


def test_eval_plain_model_skips_per_client(tiny_llama_path, tofu_data_dir, tmp_path):
    output_dir = tmp_path / "eval"

    code = run_cli(*eval_args(tiny_llama_path, tofu_data_dir, output_dir, "eval.tofu.metrics=[forget_Q_A_Prob]"))

    assert code == 0
    assert not (output_dir / "CLIENTS_EVAL.json").exists()


def test_eval_per_client_without_federation_fails(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    code = run_cli(*eval_args(tiny_llama_path, tofu_data_dir, tmp_path / "eval", "eval.tofu.per_client=true"))

    assert code == 2
    assert "per-client evaluation needs the training run's config.yaml" in capsys.readouterr().err


def test_eval_federation_config_setting(trained, tiny_llama_path, tofu_data_dir, tmp_path):
    # The retain reference of a pipeline: a model folder without its own federation, verified against a given one.
    output_dir = tmp_path / "eval"

    code = run_cli(*eval_args(tiny_llama_path, tofu_data_dir, output_dir, "eval.tofu.metrics=[forget_Q_A_Prob]",
                              f"eval.tofu.federation_config={trained / 'config.yaml'}"))

    assert code == 0
    assert json.loads((output_dir / "CLIENTS_EVAL.json").read_text())["target_client_idx"] == 0


def test_eval_reference_attack(trained, tiny_llama_path, tofu_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDUNLEARN_CACHE_DIR", str(tmp_path / "cache"))
    output_dir = tmp_path / "eval"

    code = run_cli(*eval_args(trained, tofu_data_dir, output_dir, "eval.tofu.metrics=[mia_reference]",
                              f"eval.tofu.reference_model_path={tiny_llama_path}", "eval.tofu.per_client=false"))

    assert code == 0
    logs = json.loads((output_dir / "TOFU_EVAL.json").read_text())
    assert 0 <= logs["mia_reference"]["auc"] <= 1
    assert len(list((tmp_path / "cache" / "mia_reference").iterdir())) == 2


def test_eval_reference_attack_without_model_fails(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    code = run_cli(*eval_args(tiny_llama_path, tofu_data_dir, tmp_path / "eval", "eval.tofu.metrics=[mia_reference]"))

    assert code == 2
    assert "mia_reference needs reference_model_path" in capsys.readouterr().err


def test_eval_rejects_invalid_per_client(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    code = run_cli(*eval_args(tiny_llama_path, tofu_data_dir, tmp_path / "eval", "eval.tofu.per_client=sometimes"))

    assert code == 2
    assert "invalid eval.tofu.per_client 'sometimes'" in capsys.readouterr().err
