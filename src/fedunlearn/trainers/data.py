"""TOFU records for a federation: the records, their authors and the client of each record."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedunlearn.data import muse
from fedunlearn.data.partition import partition_records
from fedunlearn.data.template import tokenize_qa
from fedunlearn.data.tofu import NUM_AUTHORS, QUESTIONS_PER_AUTHOR, DataError, author_ids, forget_author_count, load_split

log = logging.getLogger(__name__)


@dataclass
class FederatedData:
    """A training split dealt out to clients.

    ``clients[k]`` lists the indices into ``records`` that client ``k`` holds;
    ``forget_authors`` are the authors the requesting client may ask to forget.
    """

    records: list[dict]
    authors: list[int]
    forget_authors: set[int]
    clients: list[list[int]]

    def is_forget(self, index: int) -> bool:
        return self.authors[index] in self.forget_authors


def split_authors(split: str, num_records: int) -> list[int]:
    """Return each record's author for a TOFU split of ``full`` (forget splits hold the last authors)."""
    if num_records % QUESTIONS_PER_AUTHOR:
        raise DataError(
            f"split {split!r} has {num_records} records, not a multiple of {QUESTIONS_PER_AUTHOR} "
            "questions per author: it cannot be partitioned by author"
        )
    offset = NUM_AUTHORS - num_records // QUESTIONS_PER_AUTHOR if split.startswith("forget") else 0
    return author_ids(num_records, offset)


def load_federated_data(
    split: str, forget_split: str, method_args: Mapping[str, Any], data_cfg: Mapping[str, Any], data_dir, seed: int
) -> FederatedData:
    """Load ``split``, keep ``data.max_authors`` non-forget authors if set, and partition it.

    For MUSE (``data.dataset: MUSE``) the records are token windows of the
    documents of ``split`` (a list of MUSE splits), and a document plays the
    part of a TOFU author: see ``fedunlearn.data.muse.training_records``.
    """
    if data_cfg.get("dataset") == "MUSE":
        records, authors, forget_authors = muse.training_records(data_cfg, split, forget_split, data_dir)
    else:
        records = load_split(split, data_dir)
        authors = split_authors(split, len(records))
        forget_authors = _forget_authors(forget_split, data_dir, split, records, authors)

    max_authors = data_cfg.get("max_authors")
    if max_authors is not None:
        if int(max_authors) < 1:
            raise ValueError(f"data.max_authors must be >= 1 or null, got {max_authors}")
        kept = set(sorted({a for a in authors if a not in forget_authors})[: int(max_authors)]) | forget_authors
        keep = [i for i, a in enumerate(authors) if a in kept]
        records = [records[i] for i in keep]
        authors = [authors[i] for i in keep]

    clients = partition_records(
        authors,
        forget_authors,
        num_clients=int(method_args.get("num_clients", 3)),
        target_client_idx=int(method_args.get("target_client_idx", 0)),
        scheme=str(method_args.get("partition", "author")),
        target_holds_retain=bool(method_args.get("target_holds_retain", True)),
        seed=seed,
        alpha=float(method_args.get("partition_alpha", 0.5)),
    )
    for client_id, indices in enumerate(clients):
        forget = sum(authors[i] in forget_authors for i in indices)
        log.info("client %d: %d records of %d authors (%d forget records)", client_id, len(indices),
                 len({authors[i] for i in indices}), forget)
    return FederatedData(records, authors, forget_authors, clients)


def _forget_authors(forget_split: str, data_dir, split: str, records: list[dict], authors: list[int]) -> set[int]:
    """Read the forget split and return its authors, checking it matches the training split.

    The forget split lists the last authors of ``full``, so its size gives
    their number. Where the training split contains those authors, their
    questions must equal the forget split's, in order.
    """
    forget_author_count(forget_split)  # rejects names that are not forgetNN
    forget_records = load_split(forget_split, data_dir)
    forget_authors = set(split_authors(forget_split, len(forget_records)))
    count = len(forget_authors)
    in_split = [r["question"] for r, a in zip(records, authors) if a in forget_authors]
    if in_split and in_split != [r["question"] for r in forget_records]:
        raise DataError(
            f"the questions of {forget_split} are not those of the last {count} authors of {split}: "
            "use TOFU files from the same release, or the forget split that matches the training split"
        )
    return forget_authors


def tokenize_records(tokenizer, records: list[dict], template_args, max_length: int) -> list[dict]:
    """Tokenise question-answer records, or turn MUSE token windows into pretraining examples, for training."""
    if records and "input_ids" in records[0]:
        return [muse.pretraining_example(tokenizer, r["input_ids"]) for r in records]
    return [tokenize_qa(tokenizer, r["question"], r["answer"], template_args, max_length) for r in records]
