import pytest
import torch

from fedunlearn.federated.aggregation import ClientUpdate, FedAvg, FedProx, build_aggregator, weighted_mean

STATES = [
    {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0, 4.0]])},
    {"a": torch.tensor([3.0, 6.0]), "b": torch.tensor([[2.0, 0.0]])},
    {"a": torch.tensor([-1.0, 0.0]), "b": torch.tensor([[1.0, 1.0]])},
]
WEIGHTS = [1, 2, 5]
# By hand, with total weight 8:
#   a = (1*[1, 2] + 2*[3, 6] + 5*[-1, 0]) / 8 = [2, 14] / 8
#   b = (1*[0, 4] + 2*[2, 0] + 5*[1, 1]) / 8 = [9, 9] / 8
EXPECTED = {"a": torch.tensor([0.25, 1.75]), "b": torch.tensor([[1.125, 1.125]])}


def updates():
    return [ClientUpdate(k, state, weight) for k, (state, weight) in enumerate(zip(STATES, WEIGHTS))]


def test_weighted_mean_three_states():
    result = weighted_mean(STATES, WEIGHTS)

    assert list(result) == ["a", "b"]
    for key, value in EXPECTED.items():
        assert torch.allclose(result[key], value), key


def test_weighted_mean_two_states():
    # (3*4 + 1*0) / 4 = 3
    result = weighted_mean([{"w": torch.tensor([4.0])}, {"w": torch.tensor([0.0])}], [3, 1])

    assert result["w"].tolist() == [3.0]


def test_weighted_mean_empty_raises():
    with pytest.raises(ValueError, match="cannot aggregate zero client updates"):
        weighted_mean([], [])


def test_weighted_mean_zero_weight_raises():
    with pytest.raises(ValueError, match=r"client weights must sum to a positive number, got \[0, 0\]"):
        weighted_mean(STATES[:2], [0, 0])


def test_fedavg_matches_hand_mean():
    result = FedAvg().aggregate_train(1, STATES[0], updates())

    for key, value in EXPECTED.items():
        assert torch.allclose(result[key], value), key


def test_fedavg_sends_nothing():
    assert FedAvg().configure_train(1) == {}


def test_fedprox_sends_mu():
    assert FedProx(proximal_mu=0.05).configure_train(3) == {"proximal_mu": 0.05}


def test_fedprox_default_mu():
    assert FedProx().configure_train(1) == {"proximal_mu": 0.01}


def test_fedprox_aggregates_as_fedavg():
    result = FedProx(proximal_mu=0.1).aggregate_train(1, STATES[0], updates())

    for key, value in EXPECTED.items():
        assert torch.allclose(result[key], value), key


def test_fedprox_negative_mu_raises():
    with pytest.raises(ValueError, match="proximal_mu must be >= 0, got -0.1"):
        FedProx(proximal_mu=-0.1)


def test_build_fedprox_with_mu():
    aggregator = build_aggregator("FedProx", proximal_mu=0.2)

    assert isinstance(aggregator, FedProx)
    assert aggregator.proximal_mu == 0.2


def test_build_unknown_names_choices():
    with pytest.raises(ValueError, match=r"unknown aggregation_strategy 'FedAdamW': choose one of \['FedAvg', 'FedProx', "
                                         r"'FedAvgM', 'FedAdam', 'FedYogi', 'FedAdagrad', 'SCAFFOLD', 'FedMedian', "
                                         r"'FedTrimmedAvg'\]"):
        build_aggregator("FedAdamW")


def test_build_bad_kwargs_raises():
    with pytest.raises(ValueError, match=r"unknown trainer.method_args.aggregation_args \['proximal_mu'\] for "
                                         r"aggregation_strategy=FedAvg: valid keys are none"):
        build_aggregator("FedAvg", proximal_mu=0.1)
