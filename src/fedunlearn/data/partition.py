"""Splitting a training split across federated clients.

Every record carries its author. All records of the forget authors go to the
requesting client (``target_client_idx``). The other authors' records are
dealt out either by author (``author``: an author's records never straddle two
clients) or record by record (``iid``). With ``target_holds_retain`` the
requesting client also receives its share of the other authors, which
retain-regularised unlearning methods (GradDiff, NPO) train on.

The deal depends only on the set of non-forget authors, the seed and the
settings, so partitioning ``full`` and partitioning a retain split (``full``
minus the forget authors) give every client the same retained records: the
retain reference model is trained on exactly the data the federation keeps.
"""

from __future__ import annotations

import random

PARTITIONS = ("author", "iid")


def partition_records(
    authors: list[int],
    forget_authors: set[int],
    *,
    num_clients: int,
    target_client_idx: int,
    scheme: str = "author",
    target_holds_retain: bool = True,
    seed: int = 0,
) -> list[list[int]]:
    """Return, for each client, the indices of the records it holds.

    Every client receives records, except the requesting client when
    ``target_holds_retain`` is false and the split has no forget authors.

    Args:
        authors: the author of each record of the split.
        forget_authors: authors whose records all go to the requesting client.
        num_clients: number of clients (>= 1).
        target_client_idx: the requesting client, in ``[0, num_clients)``.
        scheme: ``author`` or ``iid``.
        target_holds_retain: whether the requesting client also receives non-forget records.
        seed: seed of the shuffle that deals the non-forget records.
    """
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if not 0 <= target_client_idx < num_clients:
        raise ValueError(
            f"target_client_idx={target_client_idx} is out of range for num_clients={num_clients}: "
            f"choose a value from 0 to {num_clients - 1}"
        )
    if scheme not in PARTITIONS:
        raise ValueError(f"unknown partition {scheme!r}: choose one of {list(PARTITIONS)}")

    receivers = [c for c in range(num_clients) if target_holds_retain or c != target_client_idx]
    retain_authors = sorted({a for a in authors if a not in forget_authors})
    if scheme == "author" and len(retain_authors) < len(receivers):
        raise ValueError(
            f"num_clients={num_clients} needs at least {len(receivers)} non-forget authors, "
            f"but the data has {len(retain_authors)}: lower num_clients or use more authors"
        )

    clients: list[list[int]] = [[] for _ in range(num_clients)]
    for index, author in enumerate(authors):
        if author in forget_authors:
            clients[target_client_idx].append(index)

    rng = random.Random(seed)
    if scheme == "author":
        rng.shuffle(retain_authors)
        owner = {author: receivers[i % len(receivers)] for i, author in enumerate(retain_authors)}
        for index, author in enumerate(authors):
            if author not in forget_authors:
                clients[owner[author]].append(index)
    else:
        # Deal by (author, position within author) so the same record lands on the same
        # client whichever split it was read from.
        keyed = [(author, rank) for author, rank in _author_ranks(authors) if author not in forget_authors]
        order = sorted(keyed)
        rng.shuffle(order)
        owner = {key: receivers[i % len(receivers)] for i, key in enumerate(order)}
        for index, key in enumerate(_author_ranks(authors)):
            if key[0] not in forget_authors:
                clients[owner[key]].append(index)

    # Without a share of the other authors, the requesting client gets no records of a retain split.
    empty = [c for c in range(num_clients) if not clients[c] and c in receivers]
    if empty:
        raise ValueError(f"clients {empty} received no records: lower num_clients or use more data")
    return clients


def _author_ranks(authors: list[int]) -> list[tuple[int, int]]:
    seen: dict[int, int] = {}
    keys = []
    for author in authors:
        keys.append((author, seen.get(author, 0)))
        seen[author] = seen.get(author, 0) + 1
    return keys
