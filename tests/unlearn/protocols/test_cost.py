"""The cost meter: counts per phase and round, totals, byte counts of metered rounds, and resumed runs."""

from __future__ import annotations

import json

import pytest
import torch

from fedunlearn.federated.aggregation import ClientUpdate
from fedunlearn.unlearn.protocols.cost import CostMeter

STATE = {"w": torch.zeros(3), "b": torch.zeros(2, dtype=torch.float64)}  # 3 * 4 + 2 * 8 = 28 bytes


class TwoClients:
    """A runtime whose clients 0 and 1 report 2 and 3 training steps."""

    def client_ids(self):
        return [0, 1]

    def train(self, server_round, global_state, client_ids, config):
        return [ClientUpdate(k, dict(global_state), 10, {"steps": 2 + k}) for k in client_ids]

    def state_dict(self):
        return {"kept": True}


def test_metered_round_counts_steps_and_bytes(tmp_path):
    meter = CostMeter(tmp_path / "cost.json")
    runtime = meter.wrap("recovery")(TwoClients())

    runtime.train(1, STATE, [0, 1], {})
    runtime.train(2, STATE, [1], {})

    summary = meter.summary()
    assert summary["client_steps"] == 2 + 3 + 3
    assert summary["bytes_to_clients"] == 3 * 28
    assert summary["bytes_from_clients"] == 3 * 28
    assert summary["bytes_sent"] == 6 * 28
    assert summary["aggregations"] == 2
    assert summary["phases"]["recovery"]["client_steps"] == 8


def test_metered_runtime_passes_other_methods(tmp_path):
    runtime = CostMeter(tmp_path / "cost.json").wrap("x")(TwoClients())

    assert runtime.client_ids() == [0, 1]
    assert runtime.state_dict() == {"kept": True}


def test_phases_sum_to_totals(tmp_path):
    meter = CostMeter(tmp_path / "cost.json")

    meter.add("subtraction", "server", history_states_read=3)
    meter.add("recovery", "round_1", client_steps=4, client_seconds=0.0)

    summary = meter.summary()
    assert summary["history_states_read"] == 3
    assert summary["client_steps"] == 4
    assert summary["phases"]["subtraction"]["history_states_read"] == 3
    assert summary["server_seconds"] == pytest.approx(summary["wall_seconds"])


def test_rerun_round_replaces_entry(tmp_path):
    meter = CostMeter(tmp_path / "cost.json")

    meter.add("recovery", "round_1", client_steps=4)
    meter.add("recovery", "round_1", client_steps=5)

    assert meter.summary()["client_steps"] == 5


def test_resume_continues_entries_and_wall_time(tmp_path):
    first = CostMeter(tmp_path / "cost.json")
    first.add("recovery", "round_1", client_steps=4)
    stored_wall = json.loads((tmp_path / "cost.json").read_text())["wall_seconds"]

    resumed = CostMeter(tmp_path / "cost.json", resume=True)
    resumed.add("recovery", "round_2", client_steps=6)
    fresh = CostMeter(tmp_path / "cost.json", resume=False)

    assert resumed.summary()["client_steps"] == 10
    assert resumed.summary()["wall_seconds"] >= stored_wall
    assert fresh.summary()["client_steps"] == 0


def test_unknown_field_raises(tmp_path):
    with pytest.raises(KeyError, match="unknown cost fields \\['gpu_hours'\\]"):
        CostMeter(tmp_path / "cost.json").add("x", "y", gpu_hours=1)
