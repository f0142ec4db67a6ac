"""Flower message content: a round and a reply survive the trip through typed records unchanged."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from fedunlearn.federated.aggregation.base import ClientUpdate
from fedunlearn.federated.runtime.flower.records import (
    content_nbytes,
    read_reply,
    read_round,
    reply_content,
    round_content,
    state_record,
)

STATE = OrderedDict([("layer.lora_A.weight", torch.arange(6.0).reshape(2, 3)), ("layer.lora_B.weight", torch.ones(3, 2))])


def assert_states_equal(got, expected):
    assert list(got) == list(expected)
    for name in expected:
        assert torch.equal(got[name], expected[name])
        assert got[name].dtype == torch.float32


def test_round_round_trip():
    control = OrderedDict((k, v * 0.5) for k, v in STATE.items())
    content = round_content(3, state_record(STATE), {"proximal_mu": 0.01, "scaffold_control": control},
                            {"scaffold_control": STATE, "rounds_seen": 2})

    server_round, global_state, config, client_state = read_round(content)

    assert server_round == 3
    assert_states_equal(global_state, STATE)
    assert config["proximal_mu"] == 0.01
    assert_states_equal(config["scaffold_control"], control)
    assert client_state["rounds_seen"] == 2
    assert_states_equal(client_state["scaffold_control"], STATE)


def test_round_empty_state_setting():
    # SCAFFOLD sends an empty control variate before its first aggregation.
    content = round_content(1, state_record(STATE), {"scaffold_control": OrderedDict()}, {})

    _, _, config, client_state = read_round(content)

    assert config["scaffold_control"] == OrderedDict()
    assert client_state == {}


def test_received_state_is_writable():
    _, global_state, _, _ = read_round(round_content(1, state_record(STATE), {}, {}))

    global_state["layer.lora_B.weight"].add_(1.0)

    assert torch.equal(global_state["layer.lora_B.weight"], torch.full((3, 2), 2.0))


def test_reply_round_trip():
    delta = OrderedDict((k, -v) for k, v in STATE.items())
    update = ClientUpdate(2, STATE, 17, {"loss": 1.25, "steps": 3}, "unlearn", extra_states={"control_delta": delta})

    got, client_state = read_reply(reply_content(update, {"scaffold_control": delta}))

    assert (got.client_id, got.num_examples, got.role) == (2, 17, "unlearn")
    assert got.metrics == {"loss": 1.25, "steps": 3}
    assert_states_equal(got.state, STATE)
    assert_states_equal(got.extra_states["control_delta"], delta)
    assert_states_equal(client_state["scaffold_control"], delta)


def test_unsupported_setting_rejected():
    with pytest.raises(TypeError, match="'schedule'"):
        round_content(1, state_record(STATE), {"schedule": [0.1, 0.2]}, {})


def test_content_nbytes_counts_tensors_and_keys():
    update = ClientUpdate(0, STATE, 1, {"loss": 0.0, "steps": 1})

    nbytes = content_nbytes(reply_content(update, {}))

    # Flower counts each array's serialised bytes plus its key: 6 and 6 float32 values, plus
    # NumPy's .npy header (128 bytes for these shapes), plus the two 19-character names.
    assert nbytes == 2 * (6 * 4 + 128) + 2 * len("layer.lora_A.weight")
