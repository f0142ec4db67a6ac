"""The interface of an unlearning method: the loss the requesting client minimises.

A method reads a dict batch with a ``forget`` stream and, when
``needs_retain`` is true, a ``retain`` stream of the client's own retained
examples. ``prepare`` runs once before unlearning starts, with the model in its
pre-unlearning state, for methods that compare against that reference.
"""

from __future__ import annotations

import torch


class UnlearningMethod:
    """Base class of unlearning methods."""

    anchor = "forget"
    needs_retain = False

    def prepare(self, model, forget_examples: list[dict], pad_token_id: int) -> None:
        """Compute whatever the method needs from the model before unlearning (nothing by default)."""

    def compute_loss(self, model, batch: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        raise NotImplementedError
