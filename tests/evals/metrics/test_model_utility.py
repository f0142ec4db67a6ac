import pytest

from fedunlearn.evals.metrics.model_utility import MODEL_UTILITY_COMPONENTS, model_utility


def test_model_utility_is_harmonic_mean():
    values = dict.fromkeys(MODEL_UTILITY_COMPONENTS, 1.0)
    values["retain_Q_A_Prob"] = 0.5
    values["ra_Truth_Ratio"] = 0.25
    values["unrelated_metric"] = 0.0

    # 9 / (1/0.5 + 1/0.25 + 7 * 1/1) = 9 / (2 + 4 + 7) = 9/13; the extra key is ignored.
    assert model_utility(values) == pytest.approx(9 / 13)


def test_model_utility_zero_component_gives_zero():
    values = dict.fromkeys(MODEL_UTILITY_COMPONENTS, 0.8)
    values["wf_Q_A_ROUGE"] = 0.0

    assert model_utility(values) == 0.0


def test_model_utility_rejects_missing_component():
    values = dict.fromkeys(MODEL_UTILITY_COMPONENTS, 0.8)
    del values["wf_Truth_Ratio"]
    values["ra_Q_A_ROUGE"] = None

    with pytest.raises(ValueError, match=r"\['ra_Q_A_ROUGE', 'wf_Truth_Ratio'\]"):
        model_utility(values)
