"""FedOpt: the adaptive server optimizers of Reddi et al. (2021), "Adaptive Federated Optimization".

Each round the server takes the clients' mean update as a pseudo-gradient
and applies an Adam-like step to the global state::

    Δ_t = Σ_k n_k x_k / Σ_k n_k − x_t        (example-weighted, as FedAvg)
    m_t = β1 m_{t−1} + (1 − β1) Δ_t          (m_0 = 0)
    v_t = second_moment(v_{t−1}, Δ_t)        (v_0 = 0; FedAdam, FedYogi, FedAdagrad differ here)
    x_{t+1} = x_t + η_t m_t / (√v_t + τ)

The numerics follow Flower 1.42's ``flwr.serverapp.strategy`` (FedOpt and its
subclasses), so a strategy name gives the same global state on both runtimes
and against Flower's own implementation:

- Weighting: Δ_t is the example-weighted mean, like FedAvg here and in Flower.
  The paper and OpenFedLLM average the client updates uniformly.
- Initial moments: v_0 = 0 as in Flower. The paper starts from v_0 = τ², and
  OpenFedLLM also sets m_1 = Δ_1 in the first round.
- Bias correction: only FedAdam has one (see ``fedadam.py``); FedYogi and
  FedAdagrad use η_t = η, as in the paper.

Defaults are sized for LoRA adapters trained by clients with AdamW, whose
per-coordinate change in a round is about 1e-3 (median 2.5e-3 on SmolLM2 with
learning rate 1e-3 and 16 local steps; see ``docs/aggregation.md``). With
τ = 1e-3 the first rounds' steps then come out near FedAvg's. Flower's η = 0.1
would move every coordinate by up to 0.1, which destroys a LoRA adapter.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from fedunlearn.federated.aggregation.base import Aggregator, ClientUpdate, weighted_mean
from fedunlearn.federated.state import state_delta


class FedOpt(Aggregator):
    """Base of FedAdam, FedYogi and FedAdagrad: momentum, a second moment and an adaptive step.

    Args:
        eta: server learning rate η, > 0 (default 1e-2; FedAdagrad 3e-3. Flower's defaults are
            0.1 for FedAdam and FedAdagrad and 0.01 for FedYogi).
        beta_1: first-moment decay β1, in [0, 1) (default 0.9).
        beta_2: second-moment decay β2, in [0, 1) (default 0.99).
        tau: adaptivity τ > 0, added to √v_t (default 1e-3). A τ much larger than |Δ| makes
            the step SGD-like, ``η/τ · m_t``.
    """

    def __init__(self, eta: float = 1e-2, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3):
        self.eta = check_positive("eta", eta)
        self.beta_1 = check_decay("beta_1", beta_1)
        self.beta_2 = check_decay("beta_2", beta_2)
        self.tau = check_positive("tau", tau)
        self.m: OrderedDict[str, torch.Tensor] | None = None
        self.v: OrderedDict[str, torch.Tensor] | None = None

    def second_moment(self, v: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Return v_t from v_{t−1} and Δ_t for one tensor."""
        raise NotImplementedError

    def step_size(self, server_round: int) -> float:
        """Return η_t, the learning rate of round ``server_round`` (η unless bias-corrected)."""
        return self.eta

    def aggregate_train(
        self, server_round: int, global_state: OrderedDict[str, torch.Tensor], updates: list[ClientUpdate]
    ) -> OrderedDict[str, torch.Tensor]:
        delta = state_delta(weighted_mean([u.state for u in updates], [u.num_examples for u in updates]), global_state)
        if self.m is None or self.v is None:
            self.m = OrderedDict((name, torch.zeros_like(d)) for name, d in delta.items())
            self.v = OrderedDict((name, torch.zeros_like(d)) for name, d in delta.items())

        eta = self.step_size(server_round)
        new_state = OrderedDict()
        for name, d in delta.items():
            self.m[name] = self.beta_1 * self.m[name] + (1 - self.beta_1) * d
            self.v[name] = self.second_moment(self.v[name], d)
            new_state[name] = global_state[name] + eta * self.m[name] / (self.v[name].sqrt() + self.tau)
        return new_state

    def state_dict(self) -> dict:
        if self.m is None or self.v is None:
            return {}
        return {"m": OrderedDict(self.m), "v": OrderedDict(self.v)}

    def load_state_dict(self, state: dict) -> None:
        self.m = OrderedDict(state["m"]) if state else None
        self.v = OrderedDict(state["v"]) if state else None


def check_positive(name: str, value) -> float:
    """Return ``value`` as a float, raising ``ValueError`` naming ``name`` unless it is > 0."""
    number = as_float(name, value)
    if not number > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return number


def check_decay(name: str, value) -> float:
    """Return ``value`` as a float, raising ``ValueError`` naming ``name`` unless it is in [0, 1)."""
    number = as_float(name, value)
    if not 0 <= number < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return number


def as_float(name: str, value) -> float:
    """Return ``value`` as a float, raising ``ValueError`` naming ``name`` when it is not a number."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number
