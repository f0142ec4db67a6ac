"""FedAvg (McMahan et al., 2017, "Communication-Efficient Learning of Deep Networks
from Decentralized Data"): the new global state is the mean of the client
states weighted by each client's number of training examples,
``w_{t+1} = sum_k n_k w_k / sum_k n_k``.
"""

from fedunlearn.federated.aggregation.base import Aggregator


class FedAvg(Aggregator):
    """Example-weighted averaging of client states."""
