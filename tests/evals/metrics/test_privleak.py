import pytest

from fedunlearn.evals.metrics.privleak import privleak, reference_auc_from_logs


def test_privleak_against_reference():
    # ((1 - 0.8) - (1 - 0.6)) / (1 - 0.6) * 100 = (0.2 - 0.4) / 0.4 * 100
    assert privleak(0.8, reference_auc=0.6) == pytest.approx(-50.0)


def test_privleak_over_unlearning_is_positive():
    assert privleak(0.3, reference_auc=0.5) == pytest.approx(40.0)


def test_privleak_default_reference_is_half():
    assert privleak(0.5) == pytest.approx(0.0)
    assert privleak(0.75) == pytest.approx(-50.0)


def test_privleak_equal_to_reference_is_zero():
    assert privleak(0.63, reference_auc=0.63) == pytest.approx(0.0)


def test_privleak_rejects_invalid_auc():
    with pytest.raises(ValueError, match="auc must be an AUC in \\[0, 1\\], got 1.5"):
        privleak(1.5)


def test_reference_auc_from_open_unlearning_logs():
    logs = {
        "mia_min_k": {
            "agg_value": 0.61,
            "auc": 0.61,
            "forget": {"agg_value": 2.1, "value_by_index": {"0": {"score": 2.1}}},
            "holdout": {"agg_value": 2.4, "value_by_index": {"0": {"score": 2.4}}},
        }
    }

    assert reference_auc_from_logs(logs) == 0.61


def test_reference_auc_missing_metric():
    with pytest.raises(ValueError, match="no mia_min_k.agg_value"):
        reference_auc_from_logs({"forget_Q_A_Prob": {"agg_value": 0.3}})
