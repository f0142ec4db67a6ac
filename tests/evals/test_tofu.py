import json
import math
import zlib

import numpy as np
import pytest
from evals.hand_scores import manual_norms, manual_token_stats
from scipy.stats import hmean, ks_2samp

import fedunlearn.evals.scorer as scorer_module
from fedunlearn.data.template import tokenize_qa
from fedunlearn.evals.metrics.model_utility import MODEL_UTILITY_COMPONENTS
from fedunlearn.evals.scoring import answer_nll
from fedunlearn.evals.tofu import DEFAULT_METRICS, METRICS, evaluate_tofu

CHAT = {"apply_chat_template": True}
REFERENCE_SCORES = [0.5, 1.0, 2.0]
REFERENCE_MIN_K_AUC = 0.6
ROUGE_KEYS = {"rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}
ATTACKS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "mia_gradnorm")


def run(model, tokenizer, data_dir, output_dir, **kwargs):
    settings = {"forget_split": "forget01", "holdout_split": "holdout01", "max_samples": 3, "max_new_tokens": 8,
                "batch_size": 8}
    settings.update(kwargs)
    return evaluate_tofu(model, tokenizer, CHAT, data_dir=data_dir, output_dir=output_dir, **settings)


def read_split(data_dir, split, count=3):
    lines = (data_dir / "tofu" / f"{split}.json").read_text().splitlines()
    return [json.loads(line) for line in lines[:count]]


def pair_auc(members, nonmembers):
    """Share of (member, non-member) pairs where the non-member scores higher, ties counting half."""
    wins = sum((n > m) + 0.5 * (n == m) for m in members for n in nonmembers)
    return wins / (len(members) * len(nonmembers))


@pytest.fixture(scope="module")
def model(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()


@pytest.fixture(scope="module")
def full_run(model, tokenizer, tofu_data_dir, tmp_path_factory):
    """Evaluate the default metrics once, with a retain model file for forget_quality and privleak."""
    folder = tmp_path_factory.mktemp("tofu-eval")
    reference = folder / "retain_model" / "TOFU_EVAL.json"
    reference.parent.mkdir()
    reference.write_text(json.dumps({
        "forget_truth_ratio": {"agg_value": 0.5, "value_by_index": {str(i): {"score": s} for i, s in enumerate(REFERENCE_SCORES)}},
        "mia_min_k": {"agg_value": REFERENCE_MIN_K_AUC, "auc": REFERENCE_MIN_K_AUC},
    }))
    output_dir = folder / "model"
    summary = run(model, tokenizer, tofu_data_dir, output_dir, retain_logs_path=reference)
    logs = json.loads((output_dir / "TOFU_EVAL.json").read_text())
    summary_file = json.loads((output_dir / "TOFU_SUMMARY.json").read_text())
    return summary, logs, summary_file


@pytest.fixture(scope="module")
def forget_stats(model, tokenizer, tofu_data_dir):
    """Hand-computed token statistics of the first forget01 answer."""
    record = read_split(tofu_data_dir, "forget01_perturbed", 1)[0]
    return manual_token_stats(model, tokenizer, record["question"], record["answer"], CHAT)


def test_evaluate_tofu_stores_default_suite(full_run):
    summary, logs, summary_file = full_run

    assert set(logs) == set(DEFAULT_METRICS)
    assert list(summary) == list(DEFAULT_METRICS)
    assert summary_file == summary
    assert summary == {name: logs[name]["agg_value"] for name in DEFAULT_METRICS}


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


def test_evaluate_tofu_probability_matches_answer_nll(full_run, model, tokenizer, tofu_data_dir):
    _, logs, _ = full_run
    records = read_split(tofu_data_dir, "forget01")

    expected = answer_nll(model, tokenizer, [r["question"] for r in records], [r["answer"] for r in records], CHAT)

    items = logs["forget_Q_A_Prob"]["value_by_index"]
    assert [items[str(i)]["avg_loss"] for i in range(3)] == pytest.approx([e["avg_loss"] for e in expected], rel=1e-6)


def test_evaluate_tofu_rouge_layout(full_run, tofu_data_dir):
    _, logs, _ = full_run
    first = read_split(tofu_data_dir, "forget01_perturbed", 1)[0]

    for name in ("forget_Q_A_ROUGE", "forget_Q_A_PARA_ROUGE", "retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE"):
        items = logs[name]["value_by_index"]
        assert list(items) == ["0", "1", "2"], name
        for item in items.values():
            assert set(item) == ROUGE_KEYS, name
        assert logs[name]["agg_value"] == pytest.approx(sum(i["rougeL_recall"] for i in items.values()) / 3), name
    item = logs["forget_Q_A_ROUGE"]["value_by_index"]["0"]
    assert item["ground_truth"] == first["answer"]
    assert first["question"] in item["input"]
    assert logs["forget_Q_A_PARA_ROUGE"]["value_by_index"]["0"]["ground_truth"] == first["paraphrased_answer"]


def test_evaluate_tofu_perturbed_rouge_lists(full_run, tofu_data_dir):
    _, logs, _ = full_run
    first = read_split(tofu_data_dir, "forget01_perturbed", 1)[0]

    for name in ("forget_Q_A_PERT_ROUGE", "retain_Q_A_PERT_ROUGE"):
        items = logs[name]["value_by_index"]
        for item in items.values():
            assert set(item) == ROUGE_KEYS, name
            assert all(len(values) == 5 for values in item.values()), name
        expected = np.mean([np.mean(item["rougeL_recall"]) for item in items.values()])
        assert logs[name]["agg_value"] == pytest.approx(expected), name
    item = logs["forget_Q_A_PERT_ROUGE"]["value_by_index"]["0"]
    assert item["ground_truth"] == first["perturbed_answer"]
    # One greedy answer per question serves the plain, paraphrased and perturbed ROUGE.
    generation = logs["forget_Q_A_ROUGE"]["value_by_index"]["0"]["generation"]
    assert item["generation"] == [generation] * 5
    assert logs["forget_Q_A_PARA_ROUGE"]["value_by_index"]["0"]["generation"] == generation


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


def test_evaluate_tofu_mia_layout(full_run):
    _, logs, _ = full_run

    for name in ATTACKS:
        entry = logs[name]
        assert set(entry) == {"agg_value", "auc", "forget", "holdout"}, name
        assert entry["agg_value"] == entry["auc"], name
        for side in ("forget", "holdout"):
            scores = [item["score"] for item in entry[side]["value_by_index"].values()]
            assert list(entry[side]["value_by_index"]) == ["0", "1", "2"], name
            assert entry[side]["agg_value"] == pytest.approx(np.mean(scores)), name
        forget = [item["score"] for item in entry["forget"]["value_by_index"].values()]
        holdout = [item["score"] for item in entry["holdout"]["value_by_index"].values()]
        assert entry["auc"] == pytest.approx(pair_auc(forget, holdout)), name


def test_evaluate_tofu_mia_loss_scores_are_losses(full_run, model, tokenizer, tofu_data_dir):
    _, logs, _ = full_run
    holdout = read_split(tofu_data_dir, "holdout01")
    expected_holdout = answer_nll(model, tokenizer, [r["question"] for r in holdout], [r["answer"] for r in holdout], CHAT)

    forget_scores = [item["score"] for item in logs["mia_loss"]["forget"]["value_by_index"].values()]
    holdout_scores = [item["score"] for item in logs["mia_loss"]["holdout"]["value_by_index"].values()]

    probability_losses = [item["avg_loss"] for item in logs["forget_Q_A_Prob"]["value_by_index"].values()]
    assert forget_scores == pytest.approx(probability_losses)
    assert holdout_scores == pytest.approx([e["avg_loss"] for e in expected_holdout], rel=1e-6)


def test_evaluate_tofu_attack_scores_by_hand(full_run, forget_stats, tokenizer):
    _, logs, _ = full_run
    logprobs = forget_stats["logprobs"]
    kept = np.array(logprobs[:-1])  # the end-of-sequence token is dropped
    count = max(1, int(kept.size * 0.4))
    z = (kept - np.array(forget_stats["mean"][:-1])) / np.sqrt(np.maximum(forget_stats["var"][:-1], 1e-6))
    text = tokenizer.decode(forget_stats["target_ids"], skip_special_tokens=True)

    def forget_score(name):
        return logs[name]["forget"]["value_by_index"]["0"]["score"]

    assert forget_score("mia_min_k") == pytest.approx(-np.sort(kept)[:count].mean(), rel=1e-4)
    assert forget_score("mia_min_k_plus_plus") == pytest.approx(-np.sort(z)[:count].mean(), rel=1e-3)
    assert forget_score("mia_zlib") == pytest.approx(-np.mean(logprobs) / len(zlib.compress(text.encode())), rel=1e-4)


def test_evaluate_tofu_gradnorm_by_hand(full_run, model, tokenizer, tofu_data_dir):
    _, logs, _ = full_run
    record = read_split(tofu_data_dir, "holdout01", 1)[0]
    example = tokenize_qa(tokenizer, record["question"], record["answer"], CHAT)

    expected = np.mean(manual_norms(model, example, 2.0))

    assert logs["mia_gradnorm"]["holdout"]["value_by_index"]["0"]["score"] == pytest.approx(expected, rel=1e-4)


def test_evaluate_tofu_memorization_by_hand(full_run, forget_stats):
    _, logs, _ = full_run
    matches = forget_stats["match"][:-1]
    n = len(matches)
    k = next((k for k in range(n) if all(matches[k:])), n - 1)

    assert logs["exact_memorization"]["value_by_index"]["0"]["score"] == pytest.approx(sum(matches) / n)
    assert logs["extraction_strength"]["value_by_index"]["0"]["score"] == pytest.approx(1 - k / n)


def test_evaluate_tofu_privleak_against_reference(full_run):
    _, logs, _ = full_run
    auc, reference = logs["mia_min_k"]["agg_value"], REFERENCE_MIN_K_AUC

    expected = ((1 - auc) - (1 - reference)) / ((1 - reference) + 1e-10) * 100
    assert logs["privleak"] == {"agg_value": pytest.approx(expected)}


def test_evaluate_tofu_open_unlearning_retain_logs(model, tokenizer, tofu_data_dir, tmp_path):
    # A retain file in OpenUnlearning's layout: metrics it names differently, null items, extra metrics and fields.
    reference = tmp_path / "retain" / "TOFU_EVAL.json"
    reference.parent.mkdir()
    reference.write_text(json.dumps({
        "forget_Q_A_Prob": {"agg_value": 0.12, "value_by_index": {"0": {"prob": 0.12, "avg_loss": 2.1}}},
        "forget_Truth_Ratio": {"agg_value": 0.61, "value_by_index": {
            "0": {"score": 0.5}, "1": {"score": 1.0}, "2": {"score": None}, "3": {"score": 2.0}}},
        "mia_min_k": {
            "agg_value": 0.47, "auc": 0.47,
            "forget": {"agg_value": 3.2, "value_by_index": {"0": {"score": 3.2}}},
            "holdout": {"agg_value": 3.1, "value_by_index": {"0": {"score": 3.1}}},
        },
        "model_utility": {"agg_value": 0.59},
    }))

    summary = run(model, tokenizer, tofu_data_dir, tmp_path / "out", metrics=["forget_quality", "privleak"],
                  retain_logs_path=reference)

    logs = json.loads((tmp_path / "out" / "TOFU_EVAL.json").read_text())
    scores = [item["score"] for item in logs["forget_truth_ratio"]["value_by_index"].values()]
    assert summary["forget_quality"] == pytest.approx(ks_2samp(scores, REFERENCE_SCORES).pvalue)
    auc = logs["mia_min_k"]["agg_value"]
    assert summary["privleak"] == pytest.approx(((1 - auc) - 0.53) / (0.53 + 1e-10) * 100)


def test_evaluate_tofu_privleak_without_reference(model, tokenizer, tofu_data_dir, tmp_path):
    summary = run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["privleak"], max_samples=2)

    auc = summary["mia_min_k"]
    assert summary["privleak"] == pytest.approx(((1 - auc) - 0.5) / 0.5 * 100)


def test_evaluate_tofu_mia_reference_against_itself(model, tokenizer, tiny_llama_path, tofu_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDUNLEARN_CACHE_DIR", str(tmp_path / "cache"))

    summary = run(model, tokenizer, tofu_data_dir, tmp_path / "out", metrics=["mia_reference"], max_samples=2,
                  reference_model_path=tiny_llama_path)

    logs = json.loads((tmp_path / "out" / "TOFU_EVAL.json").read_text())
    for side in ("forget", "holdout"):
        assert [item["score"] for item in logs["mia_reference"][side]["value_by_index"].values()] == [0, 0]
    assert summary["mia_reference"] == 0.5  # every score ties
    assert len(list((tmp_path / "cache" / "mia_reference").iterdir())) == 2  # forget and holdout


def test_evaluate_tofu_scores_each_pair_once(model, tokenizer, tofu_data_dir, tmp_path, monkeypatch):
    counts = {"scored": 0, "generated": 0}
    real_score, real_generate = scorer_module.score_examples, scorer_module.generate_answers

    def score(model, examples, *args, **kwargs):
        counts["scored"] += len(examples)
        return real_score(model, examples, *args, **kwargs)

    def generate(model, tokenizer, questions, *args, **kwargs):
        counts["generated"] += len(questions)
        return real_generate(model, tokenizer, questions, *args, **kwargs)

    monkeypatch.setattr(scorer_module, "score_examples", score)
    monkeypatch.setattr(scorer_module, "generate_answers", generate)

    run(model, tokenizer, tofu_data_dir, tmp_path, metrics=[
        "forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_Q_A_PARA_ROUGE", "forget_Q_A_PERT_ROUGE", "mia_loss",
        "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "extraction_strength", "exact_memorization",
    ])

    assert counts == {"scored": 6, "generated": 3}  # 3 forget and 3 holdout answers, 3 forget questions


def test_evaluate_tofu_selected_metric_with_prerequisites(model, tokenizer, tofu_data_dir, tmp_path):
    summary = run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_truth_ratio"])

    assert list(summary) == ["forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob", "forget_truth_ratio"]
    assert set(json.loads((tmp_path / "TOFU_EVAL.json").read_text())) == set(summary)


def test_evaluate_tofu_forget_quality_without_reference(model, tokenizer, tofu_data_dir, tmp_path):
    summary = run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_quality"], max_samples=2)

    assert summary["forget_quality"] is None
    assert json.loads((tmp_path / "TOFU_EVAL.json").read_text())["forget_quality"] == {"agg_value": None}


def test_evaluate_tofu_reuses_stored_metrics(model, tokenizer, tofu_data_dir, tmp_path):
    metrics = ["forget_Q_A_Prob", "mia_loss"]
    run(model, tokenizer, tofu_data_dir, tmp_path, metrics=metrics, max_samples=2)
    eval_file = tmp_path / "TOFU_EVAL.json"
    logs = json.loads(eval_file.read_text())
    logs["forget_Q_A_Prob"]["agg_value"] = 123.0  # values no model produces
    logs["mia_loss"]["agg_value"] = 456.0
    eval_file.write_text(json.dumps(logs))

    reused = run(model, tokenizer, tofu_data_dir, tmp_path, metrics=metrics, max_samples=2, overwrite=False)
    other_size = run(model, tokenizer, tofu_data_dir, tmp_path, metrics=metrics, max_samples=1, overwrite=False)

    assert reused == {"forget_Q_A_Prob": 123.0, "mia_loss": 456.0}
    assert other_size["forget_Q_A_Prob"] != 123.0
    assert other_size["mia_loss"] != 456.0
    assert len(json.loads(eval_file.read_text())["forget_Q_A_Prob"]["value_by_index"]) == 1


def test_evaluate_tofu_overwrite_recomputes(model, tokenizer, tofu_data_dir, tmp_path):
    run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob"], max_samples=1)
    eval_file = tmp_path / "TOFU_EVAL.json"
    eval_file.write_text(json.dumps({"forget_Q_A_Prob": {"agg_value": 123.0, "value_by_index": {"0": {}}}}))

    summary = run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob"], max_samples=1)

    assert summary["forget_Q_A_Prob"] != 123.0


def test_evaluate_tofu_crash_leaves_no_summary(model, tokenizer, tofu_data_dir, tmp_path, monkeypatch):
    (tmp_path / "TOFU_SUMMARY.json").write_text('{"forget_truth_ratio": 0.9}')  # from an earlier run
    real_score = scorer_module.score_examples
    calls = []

    def fail_on_second_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(scorer_module, "score_examples", fail_on_second_call)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_truth_ratio"], max_samples=1)

    assert not (tmp_path / "TOFU_SUMMARY.json").exists()
    assert set(json.loads((tmp_path / "TOFU_EVAL.json").read_text())) == {"forget_Q_A_PARA_Prob"}


def test_evaluate_tofu_rejects_unknown_metric(model, tokenizer, tofu_data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"unknown TOFU metric\(s\) \['forget_rouge'\].*forget_Q_A_ROUGE"):
        run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["forget_Q_A_Prob", "forget_rouge"])


def test_evaluate_tofu_rejects_missing_retain_logs(model, tokenizer, tofu_data_dir, tmp_path):
    missing = tmp_path / "retain" / "TOFU_EVAL.json"

    with pytest.raises(FileNotFoundError, match="retain_logs_path .*retain/TOFU_EVAL.json.* not found"):
        run(model, tokenizer, tofu_data_dir, tmp_path / "out", retain_logs_path=missing)

    assert not (tmp_path / "out").exists()  # rejected before any scoring


def test_evaluate_tofu_rejects_reference_without_truth_ratio(model, tokenizer, tofu_data_dir, tmp_path):
    reference = tmp_path / "TOFU_EVAL.json"
    reference.write_text('{"forget_Q_A_Prob": {"agg_value": 0.5}}')

    with pytest.raises(ValueError, match="has no forget_truth_ratio"):
        run(model, tokenizer, tofu_data_dir, tmp_path / "out", metrics=["forget_quality"], retain_logs_path=reference)


def test_evaluate_tofu_rejects_reference_without_min_k(model, tokenizer, tofu_data_dir, tmp_path):
    reference = tmp_path / "TOFU_EVAL.json"
    reference.write_text('{"forget_Q_A_Prob": {"agg_value": 0.5}}')

    with pytest.raises(ValueError, match="no mia_min_k.agg_value"):
        run(model, tokenizer, tofu_data_dir, tmp_path / "out", metrics=["privleak"], retain_logs_path=reference)

    assert not (tmp_path / "out").exists()


def test_evaluate_tofu_rejects_mia_without_holdout(model, tokenizer, tofu_data_dir, tmp_path):
    with pytest.raises(ValueError, match="need holdout_split"):
        run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["privleak"], holdout_split=None)


def test_evaluate_tofu_rejects_reference_attack_without_model(model, tokenizer, tofu_data_dir, tmp_path):
    with pytest.raises(ValueError, match="mia_reference needs reference_model_path"):
        run(model, tokenizer, tofu_data_dir, tmp_path, metrics=["mia_reference"])


def test_evaluate_tofu_rejects_zero_max_samples(model, tokenizer, tofu_data_dir, tmp_path):
    with pytest.raises(ValueError, match="max_samples must be a positive number"):
        run(model, tokenizer, tofu_data_dir, tmp_path, max_samples=0)


def test_default_metrics_are_known():
    assert set(DEFAULT_METRICS) <= set(METRICS)
    assert "mia_reference" not in DEFAULT_METRICS
    assert set(METRICS) - set(DEFAULT_METRICS) == {"mia_reference"}
