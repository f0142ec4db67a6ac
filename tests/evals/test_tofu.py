import json
import math

import pytest
from scipy.stats import hmean, ks_2samp

import fedunlearn.evals.tofu as tofu
from fedunlearn.evals.metrics.model_utility import MODEL_UTILITY_COMPONENTS
from fedunlearn.evals.tofu import DEFAULT_METRICS, METRICS, evaluate_tofu

CHAT = {"apply_chat_template": True}
REFERENCE_SCORES = [0.5, 1.0, 2.0]
ROUGE_KEYS = {"rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}


def run(model, tokenizer, data_dir, output_dir, **kwargs):
    settings = {"forget_split": "forget01", "max_samples": 3, "max_new_tokens": 8, "batch_size": 8}
    settings.update(kwargs)
    return evaluate_tofu(model, tokenizer, CHAT, data_dir=data_dir, output_dir=output_dir, **settings)


@pytest.fixture(scope="module")
def full_run(tiny_llama_path, tokenizer, tofu_data_dir, tmp_path_factory):
    """Evaluate the default metrics once, with a reference file for forget_quality."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    folder = tmp_path_factory.mktemp("tofu-eval")
    reference = folder / "retain_model" / "TOFU_EVAL.json"
    reference.parent.mkdir()
    reference.write_text(json.dumps(
        {"forget_truth_ratio": {"agg_value": 0.5, "value_by_index": {str(i): {"score": s} for i, s in enumerate(REFERENCE_SCORES)}}}
    ))
    output_dir = folder / "model"
    summary = run(model, tokenizer, tofu_data_dir, output_dir, retain_logs_path=reference)
    logs = json.loads((output_dir / "TOFU_EVAL.json").read_text())
    summary_file = json.loads((output_dir / "TOFU_SUMMARY.json").read_text())
    return summary, logs, summary_file


def test_evaluate_tofu_stores_all_prerequisites(full_run):
    summary, logs, summary_file = full_run

    assert set(logs) == set(METRICS)  # the default metrics need every other metric
    assert list(summary) == list(METRICS)
    assert summary_file == summary
    assert summary == {name: logs[name]["agg_value"] for name in METRICS}


def test_evaluate_tofu_probability_layout(full_run):
    _, logs, _ = full_run

    for name in ("forget_Q_A_Prob", "forget_Q_A_PARA_Prob", "retain_Q_A_Prob", "ra_Q_A_Prob", "wf_Q_A_Prob"):
        items = logs[name]["value_by_index"]
        assert list(items) == ["0", "1", "2"], name
        for item in items.values():
            assert set(item) == {"prob", "avg_loss"}, name
            assert item["prob"] == pytest.approx(math.exp(-item["avg_loss"])), name
        assert logs[name]["agg_value"] == pytest.approx(sum(i["prob"] for i in items.values()) / 3), name


def test_evaluate_tofu_perturbed_layout(full_run):
    _, logs, _ = full_run

    for name, answers_per_item in (("forget_Q_A_PERT_Prob", 5), ("retain_Q_A_PERT_Prob", 5), ("ra_Q_A_PERT_Prob", 3)):
        items = logs[name]["value_by_index"]
        assert list(items) == ["0", "1", "2"], name
        for item in items.values():
            assert len(item["prob"]) == len(item["avg_loss"]) == answers_per_item, name


def test_evaluate_tofu_rouge_layout(full_run, tofu_data_dir):
    _, logs, _ = full_run
    first_question = json.loads((tofu_data_dir / "tofu" / "forget01.json").read_text().splitlines()[0])

    for name in ("forget_Q_A_ROUGE", "retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE"):
        items = logs[name]["value_by_index"]
        assert list(items) == ["0", "1", "2"], name
        for item in items.values():
            assert set(item) == ROUGE_KEYS, name
        assert logs[name]["agg_value"] == pytest.approx(sum(i["rougeL_recall"] for i in items.values()) / 3), name
    item = logs["forget_Q_A_ROUGE"]["value_by_index"]["0"]
    assert item["ground_truth"] == first_question["answer"]
    assert first_question["question"] in item["input"]


def test_evaluate_tofu_truth_ratio_from_stored_losses(full_run):
    _, logs, _ = full_run
    para = logs["forget_Q_A_PARA_Prob"]["value_by_index"]
    pert = logs["forget_Q_A_PERT_Prob"]["value_by_index"]

    for key, item in logs["forget_truth_ratio"]["value_by_index"].items():
        wrong_prob = math.exp(-sum(pert[key]["avg_loss"]) / len(pert[key]["avg_loss"]))
        correct_prob = math.exp(-para[key]["avg_loss"])
        assert item == {"score": pytest.approx(wrong_prob / (correct_prob + 1e-10))}
    # ra_Truth_Ratio compares the plain answer (not a paraphrase) with the perturbed ones.
    ra_correct = logs["ra_Q_A_Prob"]["value_by_index"]["0"]["avg_loss"]
    ra_wrong = logs["ra_Q_A_PERT_Prob"]["value_by_index"]["0"]["avg_loss"]
    expected = math.exp(-sum(ra_wrong) / 3) / (math.exp(-ra_correct) + 1e-10)
    assert logs["ra_Truth_Ratio"]["value_by_index"]["0"]["score"] == pytest.approx(expected)


def test_evaluate_tofu_forget_quality_against_reference(full_run):
    _, logs, _ = full_run
    scores = [item["score"] for item in logs["forget_truth_ratio"]["value_by_index"].values()]

    assert logs["forget_quality"] == {"agg_value": pytest.approx(ks_2samp(scores, REFERENCE_SCORES).pvalue)}


def test_evaluate_tofu_model_utility(full_run):
    _, logs, _ = full_run

    expected = hmean([logs[name]["agg_value"] for name in MODEL_UTILITY_COMPONENTS])
    assert logs["model_utility"] == {"agg_value": pytest.approx(expected)}


def test_evaluate_tofu_selected_metric_with_prerequisites(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    summary = run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_truth_ratio"])

    assert list(summary) == ["forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob", "forget_truth_ratio"]
    assert set(json.loads((tmp_path / "TOFU_EVAL.json").read_text())) == set(summary)


def test_evaluate_tofu_forget_quality_without_reference(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    summary = run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_quality"], max_samples=2)

    assert summary["forget_quality"] is None
    assert json.loads((tmp_path / "TOFU_EVAL.json").read_text())["forget_quality"] == {"agg_value": None}


def test_evaluate_tofu_reuses_stored_metrics(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob"], max_samples=2)
    eval_file = tmp_path / "TOFU_EVAL.json"
    logs = json.loads(eval_file.read_text())
    logs["forget_Q_A_Prob"]["agg_value"] = 123.0  # a value no model produces
    eval_file.write_text(json.dumps(logs))

    reused = run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob"], max_samples=2, overwrite=False)
    other_size = run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob"], max_samples=1, overwrite=False)

    assert reused["forget_Q_A_Prob"] == 123.0
    assert other_size["forget_Q_A_Prob"] != 123.0
    assert len(json.loads(eval_file.read_text())["forget_Q_A_Prob"]["value_by_index"]) == 1


def test_evaluate_tofu_overwrite_recomputes(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob"], max_samples=1)
    eval_file = tmp_path / "TOFU_EVAL.json"
    eval_file.write_text(json.dumps({"forget_Q_A_Prob": {"agg_value": 123.0, "value_by_index": {"0": {}}}}))

    summary = run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob"], max_samples=1)

    assert summary["forget_Q_A_Prob"] != 123.0


def test_evaluate_tofu_crash_leaves_no_summary(tiny_llama, tokenizer, tofu_data_dir, tmp_path, monkeypatch):
    (tmp_path / "TOFU_SUMMARY.json").write_text('{"forget_truth_ratio": 0.9}')  # from an earlier run
    real_answer_nll = tofu.answer_nll
    calls = []

    def fail_on_second_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real_answer_nll(*args, **kwargs)

    monkeypatch.setattr(tofu, "answer_nll", fail_on_second_call)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_truth_ratio"], max_samples=1)

    assert not (tmp_path / "TOFU_SUMMARY.json").exists()
    assert set(json.loads((tmp_path / "TOFU_EVAL.json").read_text())) == {"forget_Q_A_PARA_Prob"}


def test_evaluate_tofu_rejects_unknown_metric(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown TOFU metric\(s\) \['forget_rouge'\].*forget_Q_A_ROUGE"):
        run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob", "forget_rouge"])


def test_evaluate_tofu_rejects_missing_retain_logs(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    missing = tmp_path / "retain" / "TOFU_EVAL.json"

    with pytest.raises(FileNotFoundError, match="retain_logs_path .*retain/TOFU_EVAL.json.* not found"):
        run(tiny_llama, tokenizer, tofu_data_dir, tmp_path / "out", retain_logs_path=missing)

    assert not (tmp_path / "out").exists()  # rejected before any scoring


def test_evaluate_tofu_rejects_reference_without_truth_ratio(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    reference = tmp_path / "TOFU_EVAL.json"
    reference.write_text('{"forget_Q_A_Prob": {"agg_value": 0.5}}')

    with pytest.raises(ValueError, match="has no forget_truth_ratio"):
        run(tiny_llama, tokenizer, tofu_data_dir, tmp_path / "out", metrics=["forget_quality"], retain_logs_path=reference)


def test_evaluate_tofu_rejects_zero_max_samples(tiny_llama, tokenizer, tofu_data_dir, tmp_path):
    with pytest.raises(ValueError, match="max_samples must be a positive number"):
        run(tiny_llama, tokenizer, tofu_data_dir, tmp_path, max_samples=0)


def test_default_metrics_are_known():
    assert set(DEFAULT_METRICS) <= set(METRICS)
