"""Splitting a training split across federated clients.

Every record carries its author. All records of the forget authors go to the
requesting client (``target_client_idx``). The other authors' records are
dealt out by one of these schemes (``partition``):

- ``author``: whole authors, round-robin over a shuffle; an author's records
  never straddle two clients.
- ``iid``: record by record, round-robin over a shuffle (equal counts).
- ``dirichlet``: label skew with authors as labels (Hsu et al., 2019): for each
  author, client shares p ~ Dir(alpha · 1) and the author's shuffled records
  split in those proportions. Small alpha puts most of an author on one
  client; large alpha approaches ``iid``.
- ``quantity``: quantity skew (Li et al., 2022, "Federated Learning on Non-IID
  Data Silos"): client shares q ~ Dir(alpha · 1), then the shuffled records
  split in those proportions, so clients hold IID data in unequal amounts.

With ``target_holds_retain`` the requesting client also receives its share of
the other authors, which retain-regularised unlearning methods (GradDiff, NPO)
train on.

The deal depends only on the set of non-forget authors, the seed and the
settings, so partitioning ``full`` and partitioning a retain split (``full``
minus the forget authors) give every client the same retained records: the
retain reference model is trained on exactly the data the federation keeps.
"""

from __future__ import annotations

import random

import numpy as np

PARTITIONS = ("author", "iid", "dirichlet", "quantity")


def partition_records(
    authors: list[int],
    forget_authors: set[int],
    *,
    num_clients: int,
    target_client_idx: int,
    scheme: str = "author",
    target_holds_retain: bool = True,
    seed: int = 0,
    alpha: float = 0.5,
) -> list[list[int]]:
    """Return, for each client, the indices of the records it holds.

    Every client receives records, except the requesting client when
    ``target_holds_retain`` is false and the split has no forget authors.

    Args:
        authors: the author of each record of the split.
        forget_authors: authors whose records all go to the requesting client.
        num_clients: number of clients (>= 1).
        target_client_idx: the requesting client, in ``[0, num_clients)``.
        scheme: ``author``, ``iid``, ``dirichlet`` or ``quantity``.
        target_holds_retain: whether the requesting client also receives non-forget records.
        seed: seed of the shuffle and the Dirichlet draws that deal the non-forget records.
        alpha: concentration of the Dirichlet draws of ``dirichlet`` and ``quantity`` (> 0).
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
    if scheme in ("dirichlet", "quantity") and not alpha > 0:
        raise ValueError(f"trainer.method_args.partition_alpha must be > 0 for partition={scheme}, got {alpha}")

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
        keyed = sorted((author, rank) for author, rank in _author_ranks(authors) if author not in forget_authors)
        if scheme == "iid":
            rng.shuffle(keyed)
            owner = {key: receivers[i % len(receivers)] for i, key in enumerate(keyed)}
        elif scheme == "dirichlet":
            owner = _deal_dirichlet(keyed, receivers, seed, alpha)
        else:
            owner = _deal_in_shares(keyed, receivers, np.random.default_rng([seed, 0]), alpha)
        for index, key in enumerate(_author_ranks(authors)):
            if key[0] not in forget_authors:
                clients[owner[key]].append(index)

    # Without a share of the other authors, the requesting client gets no records of a retain split.
    empty = [c for c in range(num_clients) if not clients[c] and c in receivers]
    if empty:
        advice = "raise partition_alpha, lower num_clients or use more data" if scheme in ("dirichlet", "quantity") \
            else "lower num_clients or use more data"
        raise ValueError(f"clients {empty} received no records: {advice}")
    return clients


def _deal_dirichlet(keyed: list[tuple[int, int]], receivers: list[int], seed: int, alpha: float) -> dict:
    # Each author draws its own shares from a generator seeded by (seed, author), so an
    # author's deal does not depend on which other authors the split contains.
    owner = {}
    for author in sorted({a for a, _ in keyed}):
        records = [key for key in keyed if key[0] == author]
        owner.update(_deal_in_shares(records, receivers, np.random.default_rng([seed, author + 1]), alpha))
    return owner


def _deal_in_shares(keys: list[tuple[int, int]], receivers: list[int], generator: np.random.Generator, alpha: float) -> dict:
    """Shuffle ``keys`` and split them among ``receivers`` in proportions drawn from Dir(alpha · 1)."""
    shares = generator.dirichlet([alpha] * len(receivers))
    order = generator.permutation(len(keys))
    bounds = np.rint(np.cumsum(shares) * len(keys)).astype(int)  # round, not floor: a share of 1 - 1e-12 still takes all records
    bounds[-1] = len(keys)
    owner, start = {}, 0
    for receiver, end in zip(receivers, bounds):
        for i in order[start:end]:
            owner[keys[int(i)]] = receiver
        start = end
    return owner


def _author_ranks(authors: list[int]) -> list[tuple[int, int]]:
    seen: dict[int, int] = {}
    keys = []
    for author in authors:
        keys.append((author, seen.get(author, 0)))
        seen[author] = seen.get(author, 0) + 1
    return keys
