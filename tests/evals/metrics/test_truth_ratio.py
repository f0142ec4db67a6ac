import math

import pytest

from fedunlearn.evals.metrics.truth_ratio import closer_to_1_better, true_better, truth_ratio

LN2, LN4 = math.log(2), math.log(4)


def test_truth_ratio_uses_geometric_mean_of_wrong_answers():
    correct = [LN2, 0.0, LN4]
    wrong = [[LN4, 0.0], [LN4, LN4], [0.0, 0.0]]

    ratios = truth_ratio(correct, wrong)

    # Item 0: mean wrong loss = (ln 4 + 0) / 2 = ln 2, so p_w = 1/2; p_c = 1/2; tr = 1.
    #   (The arithmetic mean of the wrong probabilities, (1/4 + 1) / 2 = 0.625, would give 1.25.)
    # Item 1: p_w = exp(-ln 4) = 1/4, p_c = 1; tr = 0.25.
    # Item 2: p_w = 1, p_c = 1/4; tr = 4.
    assert ratios.tolist() == pytest.approx([1.0, 0.25, 4.0])


def test_truth_ratio_rejects_length_mismatch():
    with pytest.raises(ValueError, match="1 correct answers but 2 lists"):
        truth_ratio([LN2], [[LN2], [LN2]])


def test_closer_to_1_better_aggregate():
    # min(1, 1/1) = 1, min(0.25, 4) = 0.25, min(4, 0.25) = 0.25; mean = 1.5 / 3 = 0.5.
    assert closer_to_1_better([1.0, 0.25, 4.0]) == pytest.approx(0.5)


def test_true_better_aggregate():
    # max(0, 1 - 1) = 0, max(0, 1 - 0.25) = 0.75, max(0, 1 - 4) = 0; mean = 0.75 / 3 = 0.25.
    assert true_better([1.0, 0.25, 4.0]) == pytest.approx(0.25)
