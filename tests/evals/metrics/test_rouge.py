import pytest

from fedunlearn.evals.metrics.rouge import rouge


def test_rouge_scores_against_hand_counts():
    ground_truths = ["The cat sat on the mat.", "The cat sat on the mat.", "Dogs running"]
    generations = ["the cat sat", "mat, the cat", "dog runs"]

    per_item, agg = rouge(generations, ground_truths)

    # Item 0: the ground truth has 6 unigrams (the cat sat on the mat); the generation
    # matches 3 of them in order, so rouge1 and rougeL recall = 3/6, precision = 3/3,
    # rougeL F1 = 2 * 0.5 * 1 / (0.5 + 1) = 2/3.
    assert per_item[0]["rouge1_recall"] == pytest.approx(0.5)
    assert per_item[0]["rougeL_recall"] == pytest.approx(0.5)
    assert per_item[0]["rougeL_f1"] == pytest.approx(2 / 3)
    # Item 1: 3 unigrams match (rouge1 recall 3/6) but the longest common subsequence
    # is "the cat": rougeL recall = 2/6, precision = 2/3, F1 = 2 * (1/3) * (2/3) / 1 = 4/9.
    assert per_item[1]["rouge1_recall"] == pytest.approx(0.5)
    assert per_item[1]["rougeL_recall"] == pytest.approx(1 / 3)
    assert per_item[1]["rougeL_f1"] == pytest.approx(4 / 9)
    # Item 2: the Porter stemmer maps dogs/dog to "dog" and running/runs to "run".
    assert per_item[2]["rougeL_recall"] == pytest.approx(1.0)
    # Aggregate: mean rougeL recall = (1/2 + 1/3 + 1) / 3.
    assert agg == pytest.approx((0.5 + 1 / 3 + 1.0) / 3)


def test_rouge_rejects_length_mismatch():
    with pytest.raises(ValueError, match="2 generations but 1 ground truths"):
        rouge(["a", "b"], ["a"])
