"""The MUSE evaluator on a tiny random Llama and a small corpus in MUSE's layout, checked against hand computations."""

import json

import pytest
import torch
from muse_corpus import FORGET, FORGET_QA, FORGET_QA_ICL, HOLDOUT, VERBMEM, write_muse_corpus
from rouge_score import rouge_scorer

from fedunlearn.data.muse import fewshot_prompt
from fedunlearn.evals.metrics.muse_rouge import cut_at_stop_strings, rouge_l_f1
from fedunlearn.evals.muse import EVAL_FILE, SUMMARY_FILE, MuseSettings, evaluate_muse

PLAIN = {"apply_chat_template": False}
SETTINGS = MuseSettings(batch_size=2, generation_batch_size=2, verbmem_max_new_tokens=6, knowmem_max_new_tokens=5,
                        max_length=24)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_muse_corpus(tmp_path_factory.mktemp("muse-data"))


@pytest.fixture(scope="module")
def model(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()


@pytest.fixture(scope="module")
def results(model, tokenizer, corpus, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("muse-eval")
    summary = evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=output_dir, data_dir=corpus,
                            settings=SETTINGS)
    return summary, json.loads((output_dir / EVAL_FILE).read_text()), output_dir


def hand_forward(model, ids):
    """Return the float64 log-softmax at every position of one unpadded sequence."""
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" Ilse Brandt\n\nQuestion: Who?", "Ilse Brandt"),
        ("312 birds\nQuestion: next", "312 birds"),
        ("green Question: and", "green"),
        ("no stop string here ", "no stop string here"),
    ],
)
def test_cut_at_stop_strings(text, expected):
    assert cut_at_stop_strings(text) == expected


def test_rouge_l_f1_hand_counts():
    # "the cat sat on the mat" against "the cat sat": LCS 3, P = 3/3, R = 3/6, F1 = 2/3.
    # "a b c d" against "d c": LCS 1, P = 1/2, R = 1/4, F1 = 2 * (1/8) / (3/4) = 1/3.
    per_item, agg = rouge_l_f1(["the cat sat", "d c"], ["The cat sat on the mat.", "a b c d"])

    assert per_item[0]["rougeL_f1"] == pytest.approx(2 / 3)
    assert per_item[1]["rougeL_f1"] == pytest.approx(1 / 3)
    assert agg == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_summary_lists_metrics_and_prerequisite(results):
    summary, logs, output_dir = results

    assert set(summary) == {"forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "forget_verbmem_ROUGE", "privleak",
                            "extraction_strength", "mia_min_k"}
    assert json.loads((output_dir / SUMMARY_FILE).read_text()) == summary
    assert {name: logs[name]["agg_value"] for name in summary} == summary


def test_verbmem_compares_cut_continuation(results, tokenizer):
    _, logs, _ = results
    items = logs["forget_verbmem_ROUGE"]["value_by_index"]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    assert len(items) == len(VERBMEM)
    for index, record in enumerate(VERBMEM):
        item = items[str(index)]
        truth = tokenizer.decode(tokenizer(record["gt"], add_special_tokens=False)["input_ids"][:6])
        assert item["input"] == record["prompt"]
        assert item["ground_truth"] == truth
        assert item["rougeL_f1"] == pytest.approx(scorer.score(truth, item["generation"])["rougeL"].fmeasure)
    mean = sum(item["rougeL_f1"] for item in items.values()) / len(items)
    assert logs["forget_verbmem_ROUGE"]["agg_value"] == pytest.approx(mean)


def test_verbmem_generation_matches_unbatched(results, model, tokenizer):
    _, logs, _ = results
    record = VERBMEM[0]
    ids = tokenizer(record["prompt"], add_special_tokens=True)["input_ids"]

    output = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    text = tokenizer.decode(output[0, len(ids):], skip_special_tokens=True).strip()

    assert logs["forget_verbmem_ROUGE"]["value_by_index"]["0"]["generation"] == text


def test_knowmem_asks_after_shots(results, tokenizer):
    _, logs, _ = results
    items = logs["forget_knowmem_ROUGE"]["value_by_index"]

    assert len(items) == len(FORGET_QA)
    for index, record in enumerate(FORGET_QA):
        item = items[str(index)]
        assert item["input"] == fewshot_prompt(tokenizer, FORGET_QA_ICL, record["question"], PLAIN)
        assert item["ground_truth"] == record["answer"]
        assert item["generation"] == cut_at_stop_strings(item["generation"])


def test_extraction_strength_hand_computed(results, model, tokenizer):
    _, logs, _ = results
    items = logs["extraction_strength"]["value_by_index"]

    for index, record in enumerate(VERBMEM):
        prompt = tokenizer(record["prompt"], add_special_tokens=True)["input_ids"]
        truth = tokenizer(record["gt"], add_special_tokens=False)["input_ids"][:6]
        log_p = hand_forward(model, prompt + truth)
        # Greedy prediction of each continuation token but the last, as OpenUnlearning scores it.
        matches = [int(log_p[len(prompt) + t - 1].argmax()) == truth[t] for t in range(len(truth) - 1)]
        n = len(matches)
        k = next((k for k in range(n) if all(matches[k:])), n - 1)
        assert items[str(index)]["score"] == pytest.approx(1 - k / n)


def hand_min_k(model, tokenizer, text, max_length, k=0.4):
    ids = tokenizer(text, add_special_tokens=True)["input_ids"][:max_length]
    log_p = hand_forward(model, ids)
    # Log-probabilities of tokens 1 .. n-2: the first has no context and OpenUnlearning leaves out the last.
    values = sorted(float(log_p[t - 1, ids[t]]) for t in range(1, len(ids) - 1))
    count = max(1, int(len(values) * k))
    return -sum(values[:count]) / count


def test_min_k_scores_hand_computed(results, model, tokenizer):
    _, logs, _ = results
    mia = logs["mia_min_k"]

    for side, texts in (("forget", FORGET), ("holdout", HOLDOUT)):
        scores = [mia[side]["value_by_index"][str(i)]["score"] for i in range(len(texts))]
        assert scores == pytest.approx([hand_min_k(model, tokenizer, text, 24) for text in texts])
        assert mia[side]["agg_value"] == pytest.approx(sum(scores) / len(scores))


def test_mia_auc_and_privleak_hand_computed(results):
    summary, logs, _ = results
    members = [item["score"] for item in logs["mia_min_k"]["forget"]["value_by_index"].values()]
    nonmembers = [item["score"] for item in logs["mia_min_k"]["holdout"]["value_by_index"].values()]
    # AUC: the share of (member, non-member) pairs where the non-member scores higher, ties half.
    pairs = [(m, n) for m in members for n in nonmembers]
    auc = sum(1.0 if n > m else 0.5 if n == m else 0.0 for m, n in pairs) / len(pairs)

    assert logs["mia_min_k"]["auc"] == pytest.approx(auc)
    assert summary["mia_min_k"] == pytest.approx(auc)
    # Without a reference the retain AUC is 0.5: ((1 - auc) - 0.5) / 0.5 * 100.
    assert summary["privleak"] == pytest.approx(((1 - auc) - 0.5) / 0.5 * 100)


def test_privleak_reads_retain_logs(results, model, tokenizer, corpus, tmp_path):
    summary, _, _ = results
    reference = tmp_path / "retain" / EVAL_FILE
    reference.parent.mkdir()
    reference.write_text(json.dumps({"mia_min_k": {"agg_value": 0.7}}))

    new = evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=tmp_path / "out", data_dir=corpus,
                        retain_logs_path=reference, settings=SETTINGS, metrics=["privleak"])

    assert new["mia_min_k"] == pytest.approx(summary["mia_min_k"])
    assert new["privleak"] == pytest.approx(((1 - summary["mia_min_k"]) - 0.3) / 0.3 * 100)


def test_retain_logs_without_mia_raises(model, tokenizer, corpus, tmp_path):
    reference = tmp_path / EVAL_FILE
    reference.write_text(json.dumps({"forget_verbmem_ROUGE": {"agg_value": 0.1}}))

    with pytest.raises(ValueError, match="no mia_min_k.agg_value"):
        evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=tmp_path / "out", data_dir=corpus,
                      retain_logs_path=reference, settings=SETTINGS, metrics=["privleak"])


def test_missing_retain_logs_raises(model, tokenizer, corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="retain_logs_path .* not found"):
        evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=tmp_path, data_dir=corpus,
                      retain_logs_path=tmp_path / "missing.json", settings=SETTINGS)


def test_unknown_metric_raises(model, tokenizer, corpus, tmp_path):
    with pytest.raises(ValueError, match=r"unknown MUSE metric\(s\) \['forget_Q_A_Prob'\]"):
        evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=tmp_path, data_dir=corpus,
                      metrics=["forget_Q_A_Prob"])


def test_stored_results_reused_without_overwrite(model, tokenizer, corpus, results, tmp_path):
    _, logs, _ = results
    stored = json.loads(json.dumps(logs))
    stored["forget_verbmem_ROUGE"]["agg_value"] = 0.123
    (tmp_path / EVAL_FILE).write_text(json.dumps(stored))

    summary = evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=tmp_path, data_dir=corpus,
                            settings=SETTINGS, metrics=["forget_verbmem_ROUGE"], overwrite=False)

    assert summary == {"forget_verbmem_ROUGE": 0.123}


def test_max_samples_limits_items(model, tokenizer, corpus, tmp_path):
    settings = MuseSettings(**{**SETTINGS.__dict__, "max_samples": 2})

    evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=tmp_path, data_dir=corpus, settings=settings,
                  metrics=["retain_knowmem_ROUGE"])

    logs = json.loads((tmp_path / EVAL_FILE).read_text())
    assert list(logs["retain_knowmem_ROUGE"]["value_by_index"]) == ["0", "1"]


def test_own_continuation_fully_extracted(model, tokenizer, tmp_path):
    # A corpus whose true continuations are the model's own greedy ones: every token is
    # reproduced, so extraction strength and ROUGE-L F1 are 1.
    data_dir = write_muse_corpus(tmp_path / "data")
    records = []
    for record in VERBMEM:
        ids = tokenizer(record["prompt"], add_special_tokens=True)["input_ids"]
        output = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        records.append({"prompt": record["prompt"], "gt": tokenizer.decode(output[0, len(ids):])})
    (data_dir / "muse" / "News" / "verbmem" / "forget.json").write_text("".join(json.dumps(r) + "\n" for r in records))

    summary = evaluate_muse(model, tokenizer, PLAIN, corpus="News", output_dir=tmp_path / "out", data_dir=data_dir,
                            settings=SETTINGS, metrics=["extraction_strength", "forget_verbmem_ROUGE"])

    assert summary["extraction_strength"] == pytest.approx(1.0)
    assert summary["forget_verbmem_ROUGE"] == pytest.approx(1.0)
