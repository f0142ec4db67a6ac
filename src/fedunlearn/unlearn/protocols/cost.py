"""What an unlearning protocol spends: client training, server work, bytes sent and wall time.

Counts are kept per phase and per round in ``<output_dir>/cost.json``, so a
resumed run adds to what earlier runs recorded instead of starting from zero;
a round that is run again (because it was interrupted before its checkpoint)
replaces its earlier entry.

Fields:
    client_steps: local training batches (one forward and backward pass each) over all clients.
    client_seconds: wall time of local training.
    bytes_to_clients: bytes of the states the server sent (one global state per selected client per round).
    bytes_from_clients: bytes of the states the clients sent back.
    aggregations: how many times the server combined client states into a global state.
    history_states_read: stored states (global states or client updates) read from the fine-tuning history.
    server_seconds: ``wall_seconds - client_seconds``: aggregation, history reads, calibration, projection.
    wall_seconds: the protocol's wall time, from the loaded model to the final global state, summed
        over resumed runs (model loading, tokenisation and saving are not counted).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from fedunlearn.federated.state import state_nbytes
from fedunlearn.utils.io import write_json

COUNTS = ("client_steps", "client_seconds", "bytes_to_clients", "bytes_from_clients", "aggregations",
          "history_states_read")


class CostMeter:
    """Records the cost of one unlearning run under ``path`` (``cost.json``).

    Args:
        path: the JSON file the entries are written to after each one.
        resume: continue the entries and wall time of an earlier run found at ``path``.
    """

    def __init__(self, path: str | Path, resume: bool = False):
        self.path = Path(path)
        self.entries: dict[str, dict[str, float]] = {}
        self.earlier_wall_seconds = 0.0
        if resume and self.path.is_file():
            stored = json.loads(self.path.read_text())
            self.entries = stored["entries"]
            self.earlier_wall_seconds = float(stored["wall_seconds"])
        self.started = time.perf_counter()

    def add(self, phase: str, key: str, **counts: float) -> None:
        """Record the counts of one step of ``phase`` (a round, a server computation), replacing an earlier ``key``."""
        unknown = set(counts) - set(COUNTS)
        if unknown:
            raise KeyError(f"unknown cost fields {sorted(unknown)}: use {list(COUNTS)}")
        self.entries[f"{phase}/{key}"] = {name: counts.get(name, 0) for name in COUNTS}
        self.save()

    def wall_seconds(self) -> float:
        return self.earlier_wall_seconds + time.perf_counter() - self.started

    def save(self) -> None:
        write_json(self.path, {"wall_seconds": self.wall_seconds(), "entries": self.entries})

    def wrap(self, phase: str):
        """Return a ``wrap_runtime`` function that meters every round of ``phase``."""
        return lambda runtime: MeteredRuntime(runtime, self, phase)

    def summary(self) -> dict:
        """Return the totals, the server seconds, the wall time and the totals per phase."""
        self.save()
        phases: dict[str, dict[str, float]] = {}
        for key, counts in self.entries.items():
            phase = phases.setdefault(key.split("/", 1)[0], dict.fromkeys(COUNTS, 0))
            for name in COUNTS:
                phase[name] += counts[name]
        totals = {name: sum(p[name] for p in phases.values()) for name in COUNTS}
        wall = self.wall_seconds()
        return {**totals, "bytes_sent": totals["bytes_to_clients"] + totals["bytes_from_clients"],
                "server_seconds": max(wall - totals["client_seconds"], 0.0), "wall_seconds": wall, "phases": phases}


class RuntimeWrapper:
    """A runtime that passes everything to ``runtime``; subclasses change ``train``."""

    def __init__(self, runtime):
        self.runtime = runtime

    def __getattr__(self, name):
        # client_ids, and whatever else a runtime offers (client states, shutdown), pass through.
        return getattr(self.runtime, name)


class MeteredRuntime(RuntimeWrapper):
    """A runtime that records, for every round it trains, the steps, bytes and client seconds in a ``CostMeter``."""

    def __init__(self, runtime, meter: CostMeter, phase: str):
        super().__init__(runtime)
        self.meter = meter
        self.phase = phase

    def train(self, server_round: int, global_state: dict, client_ids: list[int], config: dict):
        started = time.perf_counter()
        updates = self.runtime.train(server_round, global_state, client_ids, config)
        self.meter.add(
            self.phase, f"round_{server_round}",
            client_steps=sum(int(u.metrics.get("steps", 0)) for u in updates),
            client_seconds=time.perf_counter() - started,
            bytes_to_clients=len(client_ids) * state_nbytes(global_state),
            bytes_from_clients=sum(state_nbytes(u.state) for u in updates),
            aggregations=1,
        )
        return updates
