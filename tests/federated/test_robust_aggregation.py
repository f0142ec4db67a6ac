"""FedMedian and FedTrimmedAvg: coordinate-wise statistics of the client states, by hand."""

import pytest
import torch

from fedunlearn.federated.aggregation import ClientUpdate, FedMedian, FedTrimmedAvg, build_aggregator

# Five clients; client 4 sends an outlier. Example counts are ignored by both strategies.
VALUES = [[1.0, -2.0], [2.0, 0.0], [3.0, 2.0], [4.0, 1.0], [100.0, -100.0]]


def updates(values=VALUES):
    return [ClientUpdate(k, {"w": torch.tensor(v), "b": torch.tensor([[float(k)]])}, 10 * k + 1) for k, v in enumerate(values)]


def test_median_ignores_outlier():
    result = FedMedian().aggregate_train(1, {}, updates())

    # w: median of [1, 2, 3, 4, 100] = 3 and of [-2, 0, 2, 1, -100] = 0
    assert result["w"].tolist() == [3.0, 0.0]
    assert result["b"].tolist() == [[2.0]]
    assert result["w"].dtype == torch.float32


def test_median_even_count_averages_middle():
    result = FedMedian().aggregate_train(1, {}, updates(VALUES[:4]))

    # sorted [1, 2, 3, 4] -> (2 + 3) / 2; sorted [-2, 0, 1, 2] -> (0 + 1) / 2
    assert result["w"].tolist() == [2.5, 0.5]


def test_trimmed_mean_drops_ends():
    result = FedTrimmedAvg(beta=0.2).aggregate_train(1, {}, updates())

    # int(0.2 * 5) = 1 value dropped at each end: mean of [2, 3, 4] = 3 and of [-2, 0, 1] = -1/3
    assert result["w"].tolist() == pytest.approx([3.0, -1 / 3])


def test_trimmed_mean_without_trim_is_mean(caplog):
    result = FedTrimmedAvg(beta=0.1).aggregate_train(1, {}, updates(VALUES[:4]))

    # int(0.1 * 4) = 0: the uniform mean, [10 / 4, 1 / 4]
    assert result["w"].tolist() == pytest.approx([2.5, 0.25])
    assert "trims none of 4 updates" in caplog.text


@pytest.mark.parametrize("beta", [0.5, -0.1])
def test_trimmed_mean_bad_beta(beta):
    with pytest.raises(ValueError, match=rf"aggregation_strategy=FedTrimmedAvg: beta must be in \[0, 0.5\), got {beta}"):
        build_aggregator("FedTrimmedAvg", beta=beta)


def test_median_takes_no_args():
    with pytest.raises(ValueError, match=r"unknown trainer.method_args.aggregation_args \['beta'\].*valid keys are none"):
        build_aggregator("FedMedian", beta=0.1)
