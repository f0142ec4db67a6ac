import math

import pytest

from fedunlearn.evals.metrics.probability import probability, probability_with_options

LN2, LN4 = math.log(2), math.log(4)


def test_probability_is_exp_of_negative_avg_loss():
    per_item, agg = probability([0.0, LN2, LN4])

    # exp(-0) = 1, exp(-ln 2) = 1/2, exp(-ln 4) = 1/4; mean = (1 + 0.5 + 0.25) / 3 = 0.58333...
    assert per_item.tolist() == pytest.approx([1.0, 0.5, 0.25])
    assert agg == pytest.approx(1.75 / 3)


def test_probability_rejects_empty_input():
    with pytest.raises(ValueError, match="empty"):
        probability([])


def test_probability_with_options_normalises_per_item():
    correct = [LN2, LN4]
    wrong = [[LN4, LN4], [0.0, LN2, LN4]]

    per_item, agg = probability_with_options(correct, wrong)

    # Item 0: p_c = 1/2, sum p_w = 1/4 + 1/4 = 1/2, so 0.5 / (0.5 + 0.5) = 0.5.
    # Item 1: p_c = 1/4, sum p_w = 1 + 1/2 + 1/4 = 7/4, so 0.25 / (0.25 + 1.75) = 0.125.
    assert per_item.tolist() == pytest.approx([0.5, 0.125])
    assert agg == pytest.approx((0.5 + 0.125) / 2)


def test_probability_with_options_rejects_length_mismatch():
    with pytest.raises(ValueError, match="2 correct answers but 1 lists"):
        probability_with_options([LN2, LN4], [[LN4]])
