"""FedProx (Li et al., 2020, "Federated Optimization in Heterogeneous Networks").

Each client minimises its loss plus the proximal term
``mu/2 * ||w - w_global||^2`` over the trainable parameters, which keeps local
models near the global one when client data differ. The server aggregates as
FedAvg. The term is added by the client training loop from the ``proximal_mu``
that ``configure_train`` sends.
"""

from fedunlearn.federated.aggregation.base import Aggregator
from fedunlearn.federated.aggregation.fedopt import as_float


class FedProx(Aggregator):
    """FedAvg aggregation with a client-side proximal term.

    Args:
        proximal_mu: weight ``mu`` of the proximal term (default 0.01); 0 gives FedAvg.
    """

    def __init__(self, proximal_mu: float = 0.01):
        self.proximal_mu = as_float("proximal_mu", proximal_mu)
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")

    def configure_train(self, server_round: int) -> dict:
        return {"proximal_mu": self.proximal_mu}
