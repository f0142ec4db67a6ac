"""The content of fedunlearn's Flower messages: typed records for a round and for a client's reply.

A training message (``train`` for fine-tuning rounds, ``train.unlearn`` for
unlearning rounds) holds::

    "global-state"         ArrayRecord   the global trainable state (float32)
    "config"               ConfigRecord  "server-round" and the scalar settings of the round's config
    "config.<name>"        ArrayRecord   a state-valued setting (SCAFFOLD's server control variate)
    "client-state"         ConfigRecord  the scalar entries of the client's persistent state
    "client-state.<name>"  ArrayRecord   its state-valued entries (SCAFFOLD's client control variate)

and a reply holds::

    "state"                ArrayRecord   the client's trained state
    "extra.<name>"         ArrayRecord   ClientUpdate.extra_states[name]
    "metrics"              MetricRecord  "num-examples" and the local training metrics
    "client"               ConfigRecord  "client-id" and "role"
    "client-state"...      as above      the client's persistent state after the round

The server keeps each client's persistent state (``run_client_round``'s
``client_state``) and sends it with every round, as the in-process runtime
keeps it in memory, so it is checkpointed with the server's history and a
resumed run continues with it.

A query message (``query``, sent once per run to learn which client each
SuperNode serves) is answered with a "client" ConfigRecord (``client-id``,
``data-file``) and a "metrics" MetricRecord (``num-records``,
``num-forget-records``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedunlearn.federated.aggregation.base import ClientUpdate

CLIENT_STATE = "client-state"
EXTRA_STATE_PREFIX = "extra."


def state_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord(OrderedDict(state))


def record_state(record: ArrayRecord) -> OrderedDict[str, torch.Tensor]:
    # torch.from_numpy shares the record's read-only buffer: clone so training may write the tensors.
    return OrderedDict((name, tensor.clone()) for name, tensor in record.to_torch_state_dict().items())


def round_content(server_round: int, global_record: ArrayRecord, config: Mapping[str, Any],
                  client_state: Mapping[str, Any]) -> RecordDict:
    """Pack one client's message of a round; ``global_record`` is shared by the round's messages."""
    content = RecordDict({"global-state": global_record})
    _pack(content, "config", {"server-round": server_round, **config})
    _pack(content, CLIENT_STATE, client_state)
    return content


def read_round(content: RecordDict) -> tuple[int, OrderedDict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Unpack ``round_content``: return the server round, the global state, the round's config and the client state."""
    config = _unpack(content, "config")
    server_round = int(config.pop("server-round"))
    return server_round, record_state(content.array_records["global-state"]), config, _unpack(content, CLIENT_STATE)


def reply_content(update: ClientUpdate, client_state: Mapping[str, Any]) -> RecordDict:
    """Pack a client's ``ClientUpdate`` and its persistent state for its reply."""
    content = RecordDict({"state": state_record(update.state)})
    for name, state in update.extra_states.items():
        content[EXTRA_STATE_PREFIX + name] = state_record(state)
    content["metrics"] = MetricRecord({"num-examples": update.num_examples, **update.metrics})
    content["client"] = ConfigRecord({"client-id": update.client_id, "role": update.role})
    _pack(content, CLIENT_STATE, client_state)
    return content


def read_reply(content: RecordDict) -> tuple[ClientUpdate, dict[str, Any]]:
    """Unpack ``reply_content``: return the ``ClientUpdate`` the aggregator reads and the client's state."""
    metrics = dict(content.metric_records["metrics"])
    client = content.config_records["client"]
    extra = {
        name[len(EXTRA_STATE_PREFIX):]: record_state(record)
        for name, record in content.array_records.items()
        if name.startswith(EXTRA_STATE_PREFIX)
    }
    num_examples = int(metrics.pop("num-examples"))
    update = ClientUpdate(int(client["client-id"]), record_state(content.array_records["state"]), num_examples,
                          metrics, str(client["role"]), extra_states=extra)
    return update, _unpack(content, CLIENT_STATE)


def _pack(content: RecordDict, name: str, values: Mapping[str, Any]) -> None:
    """Store ``values`` as the ConfigRecord ``name`` (scalars) and ArrayRecords ``name.<key>`` (states)."""
    scalars = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            content[f"{name}.{key}"] = state_record(value)
        elif isinstance(value, (bool, int, float, str)):
            scalars[key] = value
        else:
            raise TypeError(f"{name} entry {key!r} of type {type(value).__name__} cannot be sent over Flower: "
                            "use a number, a string or a {name: tensor} state")
    content[name] = ConfigRecord(scalars)


def _unpack(content: RecordDict, name: str) -> dict[str, Any]:
    values = dict(content.config_records[name]) if name in content.config_records else {}
    prefix = name + "."
    for key, record in content.array_records.items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = record_state(record)
    return values


def content_nbytes(content: RecordDict) -> int:
    """Return the bytes of a message's array records (its tensors; the small records are left out)."""
    return sum(record.count_bytes() for record in content.array_records.values())
