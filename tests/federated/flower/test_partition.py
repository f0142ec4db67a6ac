"""Partition files: each client's records, dealt exactly as in-process, and read back by its SuperNode."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from fedunlearn.federated.runtime.flower.partition import node_partition, read_partition, write_partitions
from fedunlearn.trainers.data import load_federated_data
from tests.cli_helpers import run_cli
from tests.federated.flower.conftest import tiny_run

SETTINGS = {"num_clients": 3, "target_client_idx": 0, "partition": "author", "target_holds_retain": True}


def tiny_cfg(tofu_data_dir, **method_args):
    return OmegaConf.create({
        "data": {"train_split": "full", "max_authors": 3, "dataset": "TOFU"},
        "forget_split": "forget01",
        "data_dir": str(tofu_data_dir),
        "trainer": {"args": {"seed": 0}, "method_args": {**SETTINGS, **method_args}},
    })


def test_files_hold_the_inprocess_deal(tmp_path, tofu_data_dir):
    cfg = tiny_cfg(tofu_data_dir)
    data = load_federated_data("full", "forget01", SETTINGS, cfg.data, tofu_data_dir, 0)

    files = write_partitions(cfg, tmp_path)

    assert [f.name for f in files] == ["client_0.jsonl", "client_1.jsonl", "client_2.jsonl"]
    for client_id, indices in enumerate(data.clients):
        partition = read_partition(files[client_id], client_id)
        assert partition.records == [data.records[i] for i in indices]
        assert partition.authors == [data.authors[i] for i in indices]
        assert partition.forget == [data.is_forget(i) for i in indices]


def test_forget_records_only_on_target(tmp_path, tofu_data_dir):
    write_partitions(tiny_cfg(tofu_data_dir), tmp_path)

    manifest = json.loads((tmp_path / "partition.json").read_text())

    # forget01 is the last 2 of TOFU's 200 authors, 20 questions each; the 3 other authors go one to each client.
    assert manifest["clients"] == {
        "0": {"records": 60, "forget_records": 40},
        "1": {"records": 20, "forget_records": 0},
        "2": {"records": 20, "forget_records": 0},
    }
    assert set(read_partition(tmp_path / "client_0.jsonl", 0).authors) >= {198, 199}


def test_as_federated_data_places_client(tmp_path, tofu_data_dir):
    write_partitions(tiny_cfg(tofu_data_dir), tmp_path)

    data = read_partition(tmp_path / "client_2.jsonl", 2).as_federated_data()

    assert data.clients == [[], [], list(range(20))]
    assert data.forget_authors == set()


def test_node_partition_reads_node_config(tmp_path, tofu_data_dir):
    write_partitions(tiny_cfg(tofu_data_dir), tmp_path)

    partition = node_partition({"client-id": 1, "data-file": str(tmp_path / "client_1.jsonl")})

    assert partition.client_id == 1
    assert len(partition.records) == 20


def test_node_partition_without_data_file():
    with pytest.raises(KeyError, match="data-file"):
        node_partition({"client-id": 0})


def test_missing_partition_file(tmp_path):
    with pytest.raises(OSError, match="fedunlearn partition"):
        read_partition(tmp_path / "client_0.jsonl", 0)


def test_partition_line_without_author(tmp_path):
    file = tmp_path / "client_0.jsonl"
    file.write_text(json.dumps({"question": "q", "answer": "a", "forget": False}) + "\n")

    with pytest.raises(ValueError, match=r"record 1 .*'author'"):
        read_partition(file, 0)


def test_partition_command_prints_supernodes(tmp_path, capsys, tofu_data_dir):
    overrides = tiny_run("unused-model", tofu_data_dir, tmp_path / "out", num_clients=2)

    code = run_cli("partition", "--config-name=train-lora.yaml", *overrides, f"flower.partition_dir={tmp_path / 'p'}",
                   "flower.insecure=true", "flower.superlink=superlink.example:8000")

    assert code == 0
    printed = capsys.readouterr().out
    assert f"client-id=1 data-file='{tmp_path / 'p' / 'client_1.jsonl'}'" in printed
    assert "flower-supernode --insecure --superlink superlink.example:8000 --port 9095" in printed
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["client_0.jsonl", "client_1.jsonl", "partition.json"]
