"""The server's on-disk record of a federation: every round's global state and client updates.

Layout under ``<output_dir>/federation/``::

    history/round_0000/global.safetensors          the initial global state
    history/round_0001/global.safetensors          the global state after round 1
    history/round_0001/client_2.safetensors        client 2's update in round 1 (its state
                                                   minus the global state it started from)
    history.json                                   per round: participants, example counts,
                                                   client metrics, bytes
    checkpoint.json                                the last completed round (the resume point)

Unlearning protocols that recalibrate or subtract past updates read this
history. A round's folder is written atomically before ``checkpoint.json``
names it, so an interrupted run resumes from the last complete round.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fedunlearn.federated.state import state_nbytes
from fedunlearn.utils.io import atomic_dir, write_json

log = logging.getLogger(__name__)


class History:
    """Reads and writes one federation's rounds under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.rounds_dir = self.root / "history"
        self.checkpoint_file = self.root / "checkpoint.json"
        self.index_file = self.root / "history.json"

    def round_dir(self, server_round: int) -> Path:
        return self.rounds_dir / f"round_{server_round:04d}"

    def load_checkpoint(self) -> dict | None:
        """Return the checkpoint record, or None when no round has completed."""
        if not self.checkpoint_file.is_file():
            return None
        return json.loads(self.checkpoint_file.read_text())

    def records(self) -> list[dict]:
        """Return the per-round records written so far."""
        if not self.index_file.is_file():
            return []
        return json.loads(self.index_file.read_text())

    def save_round(
        self,
        server_round: int,
        global_state: dict[str, torch.Tensor],
        client_updates: dict[int, dict[str, torch.Tensor]],
        record: dict,
        fingerprint: str,
        aggregator_state: dict,
    ) -> None:
        """Store one completed round, then move the checkpoint to it."""
        with atomic_dir(self.round_dir(server_round)) as tmp:
            save_file(global_state, tmp / "global.safetensors")
            for client_id, update in client_updates.items():
                save_file(update, tmp / f"client_{client_id}.safetensors")
            if aggregator_state:
                torch.save(aggregator_state, tmp / "aggregator.pt")
        record = dict(record, round=server_round, global_bytes=state_nbytes(global_state),
                      update_bytes=sum(state_nbytes(u) for u in client_updates.values()))
        records = [r for r in self.records() if r["round"] < server_round] + [record]
        write_json(self.index_file, records)
        write_json(self.checkpoint_file, {"completed_rounds": server_round, "fingerprint": fingerprint})

    def load_global(self, server_round: int) -> dict[str, torch.Tensor]:
        return load_file(self.round_dir(server_round) / "global.safetensors")

    def load_update(self, server_round: int, client_id: int) -> dict[str, torch.Tensor]:
        return load_file(self.round_dir(server_round) / f"client_{client_id}.safetensors")

    def load_aggregator_state(self, server_round: int) -> dict:
        file = self.round_dir(server_round) / "aggregator.pt"
        return torch.load(file, weights_only=True) if file.is_file() else {}

    def size_report(self) -> dict:
        """Return the bytes on disk of the history, in total and per round."""
        per_round = {
            path.name: sum(f.stat().st_size for f in path.iterdir()) for path in sorted(self.rounds_dir.glob("round_*"))
        }
        return {"total_bytes": sum(per_round.values()), "rounds": per_round}
