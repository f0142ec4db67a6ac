"""``FlowerRuntime``: the Runtime protocol over a Flower ``Grid`` (flwr 1.42 Message API).

A fedunlearn client is a SuperNode whose node config names its ``client-id``.
``connect`` waits for the expected SuperNodes and sends each one ``query``
message, whose reply names the client it serves. ``train`` then sends a round
to the selected clients' nodes and collects the replies.

Replies are collected with ``push_messages`` and a ``pull_messages`` loop
instead of ``Grid.send_and_receive``, which sleeps 3 s between pulls in
flwr 1.42; here the poll interval is ``poll_interval`` (0.5 s by default).
A round ends when every selected client has replied or failed (the SuperLink
or the ClientApp returned an error), or when ``round_timeout`` has passed. The
clients without a reply are logged and left out of the returned list, so the
server aggregates the others; the server decides whether enough replied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedunlearn.federated.aggregation.base import ClientUpdate
from fedunlearn.federated.runtime.flower.records import content_nbytes, read_reply, round_content, state_record

log = logging.getLogger(__name__)

QUERY = "query"


class FlowerRuntime:
    """Trains the clients of a round on the SuperNodes connected to ``grid``.

    Args:
        grid: the ServerApp's grid.
        message_type: ``train`` (fine-tuning) or ``train.unlearn`` (unlearning rounds).
        num_nodes: SuperNodes to wait for before the first round, one per client.
        connect_timeout: seconds to wait for them (raises ``TimeoutError`` after).
        round_timeout: seconds a round waits for replies; ``None`` waits until every
            selected client replied or failed.
        poll_interval: seconds between two pulls of replies.
    """

    def __init__(self, grid: Grid, *, message_type: str, num_nodes: int, connect_timeout: float = 300.0,
                 round_timeout: float | None = None, poll_interval: float = 0.5):
        if num_nodes < 1:
            raise ValueError(f"flower.num_supernodes must be >= 1, got {num_nodes}")
        self.grid = grid
        self.message_type = message_type
        self.num_nodes = num_nodes
        self.connect_timeout = connect_timeout
        self.round_timeout = round_timeout
        self.poll_interval = poll_interval
        self.nodes: dict[int, int] = {}  # client id -> Flower node id
        self.clients: dict[int, dict] = {}  # client id -> what its query reply reported
        self.client_states: dict[int, dict] = {}  # client id -> its persistent state (SCAFFOLD's c_i)
        self.sent_bytes: dict[int, dict[int, int]] = {}  # server round -> client id -> tensor bytes sent to it
        self.received_bytes: dict[int, dict[int, int]] = {}  # server round -> client id -> tensor bytes of its reply

    def connect(self) -> dict[int, dict]:
        """Wait for ``num_nodes`` SuperNodes, learn each one's client id, and return what each client reported."""
        deadline = time.monotonic() + self.connect_timeout
        node_ids = sorted(self.grid.get_node_ids())
        while len(node_ids) < self.num_nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(node_ids)} of {self.num_nodes} SuperNodes connected to the SuperLink within "
                    f"{self.connect_timeout:.0f} s: start one SuperNode per client, or lower flower.num_supernodes"
                )
            time.sleep(self.poll_interval)
            node_ids = sorted(self.grid.get_node_ids())

        query = RecordDict({"query": ConfigRecord({"request": "client-info"})})
        messages = [Message(query, dst_node_id=node, message_type=QUERY, group_id="connect") for node in node_ids]
        replies, missing = self._exchange(messages, node_ids, self.connect_timeout, "SuperNode {}")
        if missing and len(replies) < self.num_nodes:
            raise RuntimeError(f"SuperNodes {missing} did not report which client they serve, and only "
                               f"{len(replies)} of {self.num_nodes} did: see the warnings above and their logs")
        if missing:
            log.warning("SuperNodes %s did not report which client they serve: they take no part in this run", missing)
        for node, reply in replies.items():
            info = {**reply.content.config_records["client"], **reply.content.metric_records["metrics"]}
            client_id = int(info["client-id"])
            if client_id in self.nodes:
                raise ValueError(
                    f"SuperNodes {self.nodes[client_id]} and {node} both serve client {client_id}: "
                    "give each SuperNode its own client-id in its node config"
                )
            self.nodes[client_id] = node
            self.clients[client_id] = info
        for client_id in sorted(self.clients):
            info = self.clients[client_id]
            log.info("client %d on SuperNode %d: %d records (%d forget records) in %s", client_id,
                     self.nodes[client_id], info["num-records"], info["num-forget-records"], info["data-file"])
        return self.clients

    def client_ids(self) -> list[int]:
        return sorted(self.nodes)

    def train(self, server_round: int, global_state: dict, client_ids: list[int], config: dict) -> list[ClientUpdate]:
        """Send the round to the clients' SuperNodes and return the replies that arrived, by client id."""
        global_record = state_record(global_state)  # built once: every message of the round refers to it
        messages = []
        for client_id in client_ids:
            content = round_content(server_round, global_record, config, self.client_states.get(client_id, {}))
            messages.append(Message(content, dst_node_id=self.nodes[client_id], message_type=self.message_type,
                                    group_id=str(server_round)))
        self.sent_bytes[server_round] = {c: content_nbytes(m.content) for c, m in zip(client_ids, messages)}
        replies, missing = self._exchange(messages, client_ids, self.round_timeout, "client {}")
        if missing:
            log.warning("round %d: no reply from client(s) %s (SuperNodes %s); continuing with client(s) %s",
                        server_round, missing, [self.nodes[c] for c in missing], sorted(replies))

        updates = []
        self.received_bytes[server_round] = {}
        for client_id in sorted(replies):  # the in-process order, so the aggregate sums in the same order
            update, client_state = read_reply(replies[client_id].content)
            if update.client_id != client_id:
                log.warning("round %d: the SuperNode of client %d replied as client %d; reply dropped",
                            server_round, client_id, update.client_id)
                continue
            self.client_states[client_id] = client_state
            self.received_bytes[server_round][client_id] = content_nbytes(replies[client_id].content)
            log.info("round %d client %d (%s): %d examples, loss %.4f over %d batches", server_round, client_id,
                     update.role, update.num_examples, update.metrics["loss"], update.metrics["steps"])
            updates.append(update)
        return updates

    def state_dict(self) -> dict[int, dict]:
        """Return every client's persistent state, for the server's checkpoint."""
        return {client_id: dict(state) for client_id, state in self.client_states.items()}

    def load_state_dict(self, states: dict[int, dict]) -> None:
        """Restore what ``state_dict`` returned."""
        self.client_states = {int(client_id): dict(state) for client_id, state in states.items()}

    def _exchange(self, messages: list[Message], keys: Iterable, timeout: float | None,
                  label: str) -> tuple[dict, list]:
        """Push ``messages`` and pull replies; return ``{key: reply}`` and the keys without a usable reply.

        ``keys[i]`` names the receiver of ``messages[i]`` in the result, and ``label.format(key)`` in the logs.
        """
        keys = list(keys)
        pending = {}
        for key, message_id in zip(keys, self.grid.push_messages(messages)):
            if message_id is None:
                log.warning("the message to %s could not be pushed to the SuperLink", label.format(key))
            else:
                pending[message_id] = key
        replies = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending and (deadline is None or time.monotonic() < deadline):
            for reply in self.grid.pull_messages(list(pending)):
                key = pending.pop(reply.metadata.reply_to_message_id, None)
                if key is None:
                    continue
                if reply.has_error():
                    log.warning("%s failed: error %d: %s", label.format(key), reply.error.code, reply.error.reason)
                else:
                    replies[key] = reply
            if pending:
                time.sleep(self.poll_interval)
        missing = sorted(k for k in keys if k not in replies)
        return replies, missing
