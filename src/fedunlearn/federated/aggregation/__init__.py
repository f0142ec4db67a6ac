"""Aggregation algorithms, selected by name with ``aggregation_strategy``."""

from fedunlearn.federated.aggregation.base import Aggregator, ClientUpdate, weighted_mean
from fedunlearn.federated.aggregation.fedavg import FedAvg
from fedunlearn.federated.aggregation.fedprox import FedProx

AGGREGATORS: dict[str, type[Aggregator]] = {"FedAvg": FedAvg, "FedProx": FedProx}


def build_aggregator(name: str, **kwargs) -> Aggregator:
    """Instantiate the aggregation algorithm registered as ``name``."""
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregation_strategy {name!r}: choose one of {sorted(AGGREGATORS)}")
    try:
        return AGGREGATORS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"invalid arguments for aggregation_strategy {name}: {err}") from None


__all__ = ["AGGREGATORS", "Aggregator", "ClientUpdate", "FedAvg", "FedProx", "build_aggregator", "weighted_mean"]
