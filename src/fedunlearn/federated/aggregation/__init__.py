"""Aggregation algorithms, selected by name with ``aggregation_strategy``."""

import inspect

from fedunlearn.federated.aggregation.base import Aggregator, ClientUpdate, weighted_mean
from fedunlearn.federated.aggregation.fedadagrad import FedAdagrad
from fedunlearn.federated.aggregation.fedadam import FedAdam
from fedunlearn.federated.aggregation.fedavg import FedAvg
from fedunlearn.federated.aggregation.fedavgm import FedAvgM
from fedunlearn.federated.aggregation.fedmedian import FedMedian
from fedunlearn.federated.aggregation.fedopt import FedOpt
from fedunlearn.federated.aggregation.fedprox import FedProx
from fedunlearn.federated.aggregation.fedtrimmedavg import FedTrimmedAvg
from fedunlearn.federated.aggregation.fedyogi import FedYogi
from fedunlearn.federated.aggregation.scaffold import SCAFFOLD

AGGREGATORS: dict[str, type[Aggregator]] = {
    cls.__name__: cls
    for cls in (FedAvg, FedProx, FedAvgM, FedAdam, FedYogi, FedAdagrad, SCAFFOLD, FedMedian, FedTrimmedAvg)
}


def aggregator_args(name: str) -> list[str]:
    """Return the names of the settings that ``aggregation_args`` accepts for ``name``."""
    parameters = list(inspect.signature(AGGREGATORS[name].__init__).parameters.values())[1:]
    return [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def build_aggregator(name: str, **kwargs) -> Aggregator:
    """Instantiate the aggregation algorithm registered as ``name`` with its ``aggregation_args``.

    A None value stands for the algorithm's default, so the trainer configs
    can list every strategy's settings as null. Raises ``ValueError`` naming
    the setting for an unknown name, an unknown argument or an invalid value.
    """
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregation_strategy {name!r}: choose one of {list(AGGREGATORS)}")
    valid = aggregator_args(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown trainer.method_args.aggregation_args {unknown} for aggregation_strategy={name}: "
            f"valid keys are {valid or 'none'}"
        )
    try:
        return AGGREGATORS[name](**kwargs)
    except ValueError as err:
        raise ValueError(f"invalid trainer.method_args.aggregation_args for aggregation_strategy={name}: {err}") from None


__all__ = [
    "AGGREGATORS", "Aggregator", "ClientUpdate", "FedAdagrad", "FedAdam", "FedAvg", "FedAvgM", "FedMedian", "FedOpt",
    "FedProx", "FedTrimmedAvg", "FedYogi", "SCAFFOLD", "aggregator_args", "build_aggregator", "weighted_mean",
]
