"""Client data partitions as files, one per SuperNode, so no client's data leaves its node.

``write_partitions`` deals the training split exactly as the in-process
federation does (``load_federated_data`` with the same split, forget split,
seed and ``trainer.method_args``) and writes client ``k``'s records to
``client_<k>.jsonl``, in the order that the in-process client has them. Each line
is one record with two added fields: ``author`` (the author index, a document
for MUSE) and ``forget`` (whether the record belongs to the forget split). A
SuperNode names its file and its client id in its node config::

    flower-supernode ... --node-config "client-id=0 data-file='/data/client_0.jsonl'"

``partition.json`` beside the files lists what was dealt, and how.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from fedunlearn.data.tofu import _read_json_lines  # TOFU's JSON Lines reader, with its error messages
from fedunlearn.utils.io import write_json, write_text

if TYPE_CHECKING:
    from fedunlearn.trainers.data import FederatedData

ADDED_FIELDS = ("author", "forget")
MANIFEST = "partition.json"


@dataclass
class Partition:
    """One client's records, their authors and which of them are forget records."""

    client_id: int
    records: list[dict]
    authors: list[int]
    forget: list[bool]

    def as_federated_data(self) -> "FederatedData":
        """Return the partition as a ``FederatedData`` in which only this client has records.

        The trainers' client builders (``finetune_clients``, ``unlearning_client``)
        then build this client as they build it in-process.
        """
        from fedunlearn.trainers.data import FederatedData  # imports PyTorch: only when a client trains

        forget_authors = {a for a, f in zip(self.authors, self.forget) if f}
        clients = [[] for _ in range(self.client_id)] + [list(range(len(self.records)))]
        return FederatedData(self.records, self.authors, forget_authors, clients)


def partition_file(directory: str | os.PathLike, client_id: int) -> Path:
    return Path(directory) / f"client_{client_id}.jsonl"


def write_partitions(cfg: DictConfig, directory: str | os.PathLike) -> list[Path]:
    """Deal ``cfg.data.train_split`` to the clients and write one file per client that has records.

    Returns the files written. A client without records (the requesting client
    of a retain split without ``target_holds_retain``) gets no file and no
    SuperNode.
    """
    from fedunlearn.trainers.data import load_federated_data

    method_args = OmegaConf.to_container(cfg.trainer.method_args, resolve=True)
    seed = int(cfg.trainer.args.get("seed", 0))
    data = load_federated_data(cfg.data.train_split, cfg.forget_split, method_args, cfg.data, cfg.get("data_dir"), seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    files, counts = [], {}
    for client_id, indices in enumerate(data.clients):
        if not indices:
            continue
        lines = [json.dumps(_tagged(data, i)) for i in indices]
        file = partition_file(directory, client_id)
        write_text(file, "\n".join(lines) + "\n")
        files.append(file)
        counts[str(client_id)] = {"records": len(indices), "forget_records": sum(data.is_forget(i) for i in indices)}

    write_json(directory / MANIFEST, {
        "train_split": cfg.data.train_split,
        "forget_split": cfg.forget_split,
        "seed": seed,
        "method_args": {k: method_args.get(k) for k in ("num_clients", "target_client_idx", "partition", "target_holds_retain")},
        "max_authors": cfg.data.get("max_authors"),
        "clients": counts,
    })
    return files


def _tagged(data: "FederatedData", index: int) -> dict:
    record = data.records[index]
    clash = [k for k in ADDED_FIELDS if k in record]
    if clash:
        raise ValueError(f"record {index} of the training split already has field(s) {clash}, which partition files add")
    return {**record, "author": data.authors[index], "forget": data.is_forget(index)}


def read_partition(file: str | os.PathLike, client_id: int) -> Partition:
    """Read client ``client_id``'s partition file written by ``write_partitions``."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise OSError(f"partition file {str(path)!r} of client {client_id} not found: write it with "
                      "'fedunlearn partition' and set the SuperNode's data-file to its path")
    records, authors, forget = [], [], []
    for number, record in enumerate(_read_json_lines(path), start=1):
        missing = [k for k in ADDED_FIELDS if k not in record]
        if missing:
            raise ValueError(f"record {number} of {path} has no {missing} field: write partition files "
                             "with 'fedunlearn partition'")
        authors.append(int(record.pop("author")))
        forget.append(bool(record.pop("forget")))
        records.append(record)
    if not records:
        raise ValueError(f"partition file {path} of client {client_id} is empty: write it with 'fedunlearn partition'")
    return Partition(client_id, records, authors, forget)


def node_partition(node_config: Mapping[str, Any]) -> Partition:
    """Read the partition that a SuperNode's node config names (``client-id`` and ``data-file``)."""
    missing = [k for k in ("client-id", "data-file") if k not in node_config]
    if missing:
        raise KeyError(
            f"the SuperNode's node config has no {missing}: start it with "
            "--node-config \"client-id=K data-file='/path/client_K.jsonl'\""
        )
    return read_partition(str(node_config["data-file"]), int(node_config["client-id"]))


def partition_for_supernodes(cfg: DictConfig) -> str:
    """Write the partition files to ``flower.partition_dir`` and return the SuperNode command of each client.

    The commands name this machine's paths and ports 9094, 9095, ... for the
    SuperNodes' own Runtime API (each SuperNode on one machine needs its own);
    on other machines, copy each file there and adjust the path.
    """
    directory = Path(str(cfg.flower.partition_dir)).expanduser().resolve()
    files = write_partitions(cfg, directory)
    flower = cfg.flower
    if flower.get("insecure"):
        tls = "--insecure"
    else:
        tls = f"--root-certificates {flower.get('root_certificates') or 'CA_CERT.pem'}"
    lines = [f"Wrote {len(files)} partition files to {directory}. Start one SuperNode per client:"]
    for offset, file in enumerate(files):
        client_id = int(file.stem.split("_")[1])
        lines.append(
            f"  flower-supernode {tls} --superlink {flower.get('superlink') or 'SUPERLINK:8000'} --port {9094 + offset} "
            f"--node-config \"client-id={client_id} data-file='{file}'\""
        )
    return "\n".join(lines)
