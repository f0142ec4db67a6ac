"""runtime=flower end to end: a real SuperLink and SuperNodes on 127.0.0.1, runs launched with fedunlearn train.

Each test compares the global adapter with the in-process run of the same
config and seed. The module's insecure deployment serves the SCAFFOLD
fine-tuning test, then the dropped-client test, which kills one of its SuperNodes.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.cli_helpers import run_cli
from tests.federated.flower.conftest import tiny_run, write_partition_files
from tests.federated.flower.deployment import Deployment, deployment_env, write_certificates, write_node_keys

pytestmark = pytest.mark.flower

FLOWER = ["runtime=flower", "flower.connect_timeout=180"]


def flower_overrides(deployment: Deployment) -> list[str]:
    overrides = [*FLOWER, f"flower.superlink={deployment.address}"]
    if deployment.certificates is None:
        return overrides + ["flower.insecure=true"]
    return overrides + [f"flower.root_certificates={deployment.certificates['ca']}"]


def assert_same_adapter(flower_dir: Path, inprocess_dir: Path) -> None:
    flower = load_file(flower_dir / "adapter_model.safetensors")
    inprocess = load_file(inprocess_dir / "adapter_model.safetensors")
    assert flower.keys() == inprocess.keys()
    for name in inprocess:
        torch.testing.assert_close(flower[name], inprocess[name], rtol=1e-5, atol=1e-7, msg=name)


def rounds(output_dir: Path) -> list[dict]:
    """Return the history's records of the training rounds (round 0 is the initial state)."""
    return [r for r in json.loads((output_dir / "federation" / "history.json").read_text()) if r["round"] >= 1]


@pytest.fixture(scope="module")
def insecure(tmp_path_factory, flwr_home, tiny_llama_path, tofu_data_dir):
    """An insecure SuperLink with three SuperNodes, one per client of the tiny run."""
    root = tmp_path_factory.mktemp("insecure")
    files = write_partition_files(tiny_run(tiny_llama_path, tofu_data_dir, root / "unused", num_clients=3),
                                  root / "partitions")
    deployment = Deployment(root, deployment_env(flwr_home))
    try:
        deployment.start_superlink()
        for client_id, file in enumerate(files):
            deployment.start_supernode(client_id, file)
        yield deployment
    finally:
        deployment.stop()


def test_insecure_scaffold_matches_inprocess(insecure, tmp_path, tiny_llama_path, tofu_data_dir):
    # SCAFFOLD: the server control variate travels with the round, and each client's control
    # variate is kept by the server and sent back to its client in round 2.
    inprocess = tmp_path / "inprocess"
    flower = tmp_path / "flower"
    config = ["train", "--config-name=train-lora.yaml", "trainer.method_args.aggregation_strategy=SCAFFOLD"]
    assert run_cli(*config, *tiny_run(tiny_llama_path, tofu_data_dir, inprocess, num_clients=3)) == 0

    assert run_cli(*config, *tiny_run(tiny_llama_path, tofu_data_dir, flower, num_clients=3),
                   *flower_overrides(insecure)) == 0

    assert_same_adapter(flower, inprocess)
    summary = json.loads((flower / "federation.json").read_text())
    assert summary["runtime"] == "flower"
    assert summary["clients"] == {"0": 60, "1": 20, "2": 20}
    for got, expected in zip(rounds(flower), rounds(inprocess), strict=True):
        assert got["participants"] == expected["participants"] == [0, 1, 2]
        assert got["num_examples"] == expected["num_examples"]
    assert (flower / "federation" / "history" / "round_0002" / "client_1.safetensors").is_file()


def test_dropped_supernode_round_completes(insecure, tmp_path, tiny_llama_path, tofu_data_dir):
    output_dir = tmp_path / "flower"
    checkpoint = output_dir / "federation" / "checkpoint.json"

    def kill_after_round_one():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if checkpoint.is_file() and json.loads(checkpoint.read_text())["completed_rounds"] >= 1:
                insecure.kill("supernode_2")
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_after_round_one, daemon=True)
    killer.start()
    code = run_cli("train", "--config-name=train-lora.yaml",
                   *tiny_run(tiny_llama_path, tofu_data_dir, output_dir, num_clients=3),
                   *flower_overrides(insecure), "flower.round_timeout=90", "trainer.method_args.min_fit_clients=2")
    killer.join(timeout=5)

    assert code == 0
    first, second = rounds(output_dir)
    assert first["participants"] == [0, 1, 2]
    assert second["participants"] == [0, 1]
    assert second["missing"] == [2]
    assert "round 2: no reply from client(s) [2]" in (output_dir / "finetune.log").read_text()
    assert not (output_dir / "federation" / "history" / "round_0002" / "client_2.safetensors").exists()


@pytest.fixture(scope="module")
def tls(tmp_path_factory, flwr_home, tiny_llama_path, tofu_data_dir):
    """A SuperLink with TLS and SuperNode authentication, and two registered SuperNodes."""
    from omegaconf import OmegaConf

    from fedunlearn.federated.runtime.flower.launcher import write_connection

    root = tmp_path_factory.mktemp("tls")
    files = write_partition_files(tiny_run(tiny_llama_path, tofu_data_dir, root / "unused", num_clients=2),
                                  root / "partitions")
    deployment = Deployment(root, deployment_env(flwr_home), certificates=write_certificates(root / "certificates"))
    try:
        deployment.start_superlink(supernode_auth=True)
        connection = write_connection(OmegaConf.create({
            "connection": "fedunlearn", "superlink": deployment.address,
            "root_certificates": str(deployment.certificates["ca"]),
        }))
        for client_id, file in enumerate(files):
            private_key, public_key = write_node_keys(root / "keys", f"client_{client_id}")
            registered = deployment.flwr("supernode", "register", str(public_key), connection)
            assert registered.returncode == 0, registered.stdout + registered.stderr
            deployment.start_supernode(client_id, file, private_key)
        yield deployment
    finally:
        deployment.stop()


def test_tls_unregistered_supernode_rejected(tls, tmp_path):
    private_key, _ = write_node_keys(tmp_path, "intruder")
    tls.start_supernode(5, tmp_path / "none.jsonl", private_key)

    code = tls.processes["supernode_5"].wait(timeout=120)

    assert code != 0
    assert "Failed to activate SuperNode" in tls.log("supernode_5")


def test_tls_finetune_and_unlearn_match_inprocess(tls, tmp_path, tiny_llama_path, tofu_data_dir):
    train = ["train", "--config-name=train-lora.yaml"]
    run = tiny_run(tiny_llama_path, tofu_data_dir, tmp_path / "inprocess", num_clients=2)
    assert run_cli(*train, *run) == 0
    run = tiny_run(tiny_llama_path, tofu_data_dir, tmp_path / "flower", num_clients=2)
    assert run_cli(*train, *run, *flower_overrides(tls)) == 0
    assert_same_adapter(tmp_path / "flower", tmp_path / "inprocess")

    # Client 0 requests to forget forget01 and unlearns with GradDiff on its SuperNode, while client 1 fine-tunes.
    unlearn = ["train", "--config-name=unlearn.yaml", "trainer=FederatedUnlearningTrainer",
               "trainer.method_args.unlearn_trainer_cls=GradDiff"]
    for name in ("inprocess", "flower"):
        run = tiny_run(str(tmp_path / name), tofu_data_dir, tmp_path / f"unlearn_{name}", num_clients=2, rounds=1)
        extra = flower_overrides(tls) if name == "flower" else []
        assert run_cli(*unlearn, *run, *extra) == 0

    assert_same_adapter(tmp_path / "unlearn_flower", tmp_path / "unlearn_inprocess")
    summary = json.loads((tmp_path / "unlearn_flower" / "federation.json").read_text())
    assert summary["runtime"] == "flower"
    assert summary["target_client_idx"] == 0
    assert summary["forget_records"] == 40
    assert rounds(tmp_path / "unlearn_flower")[0]["roles"] == {"0": "unlearn", "1": "retain"}
