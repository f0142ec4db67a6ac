import logging

import pytest

from fedunlearn.evals.metrics.forget_quality import forget_quality


def test_forget_quality_separated_samples():
    # Every model ratio lies below every reference ratio, so the KS statistic is D = 1.
    # Exact two-sided p-value for n = m = 3: of the C(6, 3) = 20 equally likely
    # orderings, 2 reach D = 1 (all of one sample first), so p = 2 / 20 = 0.1.
    assert forget_quality([0.1, 0.2, 0.3], [0.7, 0.8, 0.9]) == pytest.approx(0.1)


def test_forget_quality_identical_samples():
    # Identical samples give D = 0 and p = 1.
    assert forget_quality([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == pytest.approx(1.0)


def test_forget_quality_without_reference(caplog):
    with caplog.at_level(logging.WARNING):
        assert forget_quality([0.1, 0.2], None) is None
    assert "reference" in caplog.text


def test_forget_quality_rejects_empty_reference():
    with pytest.raises(ValueError, match="got 2 for the model and 0 for the reference"):
        forget_quality([0.1, 0.2], [])
