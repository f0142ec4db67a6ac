"""Runtimes: where and how the clients of a round train.

The server's round loop (``fedunlearn.federated.server``) decides which clients
take part and what they are sent; a runtime carries that out and returns the
replies. ``inprocess`` trains every client in this process on one shared
model; ``flower`` sends the round to Flower SuperNodes.

A runtime has two methods::

    client_ids() -> list[int]
        the clients that can take part
    train(server_round, global_state, client_ids, config) -> list[ClientUpdate]
        run one round on those clients and return the replies that arrived;
        a client that failed or did not reply is missing from the list
"""

from __future__ import annotations

from typing import Protocol

from fedunlearn.federated.aggregation.base import ClientUpdate


class Runtime(Protocol):
    def client_ids(self) -> list[int]: ...

    def train(self, server_round: int, global_state: dict, client_ids: list[int], config: dict) -> list[ClientUpdate]: ...


__all__ = ["Runtime"]
