"""How LoRA adapters are aggregated: ``trainer.method_args.lora_aggregation``.

A LoRA layer adds ``(alpha / r) B A x`` to the frozen weight's output. Averaging
the factors, as every aggregator here does key by key, gives ``mean(B) mean(A)``,
which is not ``mean(B A)``, the average of the clients' weight changes::

    Σ_k w_k B_k A_k − (Σ_k w_k B_k)(Σ_k w_k A_k) ≠ 0   unless the A_k (or B_k) are equal

- ``separate`` (default): exchange and average A and B. Every client trains
  both, and the averaged product is off by the gap above.
- ``ffa``: FFA-LoRA (Sun et al., 2024, "Improving LoRA in Privacy-preserving
  Federated Learning"): A stays frozen at its initialisation, which is the same
  on every client because the model is built from the same seed. Clients train
  and exchange only B, so ``Σ_k w_k B_k A = (Σ_k w_k B_k) A`` and averaging is
  exact. It halves the bytes sent per round but trains half the adapter's
  parameters, so each round learns less.

``lora_product_gap`` measures the gap of ``separate`` on the clients' states;
the server records it per round in ``history.json``.
"""

from __future__ import annotations

import math
import re

import torch

LORA_AGGREGATIONS = ("separate", "ffa")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[AB])\.(?P<adapter>[^.]+)\.weight$")


def prepare_lora_aggregation(model: torch.nn.Module, mode: str) -> None:
    """Set up ``model`` for the ``lora_aggregation`` mode ``mode`` (FFA-LoRA: freeze every lora_A)."""
    if mode not in LORA_AGGREGATIONS:
        raise ValueError(
            f"invalid trainer.method_args.lora_aggregation {mode!r}: choose one of {list(LORA_AGGREGATIONS)}"
        )
    if mode == "separate":
        return
    frozen = 0
    for name, param in model.named_parameters():
        if _LORA_KEY.match(name) and ".lora_A." in name:
            param.requires_grad_(False)
            frozen += 1
    if not frozen:
        raise ValueError("lora_aggregation=ffa needs a LoRA model: use a -lora model config (model.use_lora=true)")


def lora_pairs(state: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """Return the ``(lora_A key, lora_B key)`` pairs of ``state`` whose A and B are both present."""
    pairs = []
    for name in state:
        match = _LORA_KEY.match(name)
        if match and match["factor"] == "A":
            partner = f"{match['module']}.lora_B.{match['adapter']}.weight"
            if partner in state:
                pairs.append((name, partner))
    return pairs


@torch.no_grad()
def lora_product_gap(states: list[dict[str, torch.Tensor]], weights: list[float]) -> float | None:
    """Return the relative Frobenius gap between the mean of the products and the product of the means.

    ``sqrt(Σ_m ||Σ_k w_k B_k A_k − B̄ Ā||²) / sqrt(Σ_m ||Σ_k w_k B_k A_k||²)`` over
    the LoRA modules m, with normalised weights ``w_k``; None when the states
    hold no A-B pair (no LoRA, or ``ffa``, where the gap is zero by construction).
    """
    pairs = lora_pairs(states[0]) if states else []
    if not pairs:
        return None
    total = float(sum(weights))
    norm = [w / total for w in weights]
    gap_sq = mean_sq = 0.0
    for a_key, b_key in pairs:
        mean_product = sum(w * (s[b_key] @ s[a_key]) for s, w in zip(states, norm))
        product_of_means = sum(w * s[b_key] for s, w in zip(states, norm)) @ sum(w * s[a_key] for s, w in zip(states, norm))
        gap_sq += float(torch.linalg.matrix_norm(mean_product - product_of_means) ** 2)
        mean_sq += float(torch.linalg.matrix_norm(mean_product) ** 2)
    return math.sqrt(gap_sq / mean_sq) if mean_sq > 0 else 0.0
