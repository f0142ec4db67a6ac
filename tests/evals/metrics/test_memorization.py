import pytest

from fedunlearn.evals.metrics.memorization import exact_memorization, extraction_strength


def test_exact_memorization_share_of_matches():
    assert exact_memorization([True, False, True, True]) == pytest.approx(0.75)


def test_exact_memorization_rejects_empty():
    with pytest.raises(ValueError, match="at least one target token"):
        exact_memorization([])


def test_extraction_strength_full_match_is_one():
    assert extraction_strength([True, True, True, True]) == 1.0


def test_extraction_strength_from_matching_suffix():
    # The suffix from position 2 matches entirely, so k = 2 of n = 5 and ES = 1 - 2/5.
    assert extraction_strength([True, False, True, True, True]) == pytest.approx(0.6)


def test_extraction_strength_only_last_token():
    assert extraction_strength([False, False, False, True]) == pytest.approx(0.25)


def test_extraction_strength_no_match_floors_at_one_over_n():
    # As in OpenUnlearning, k stops at n - 1 when no suffix matches.
    assert extraction_strength([False, False, False, False]) == pytest.approx(0.25)


def test_extraction_strength_rejects_empty():
    with pytest.raises(ValueError, match="at least one target token"):
        extraction_strength([])
