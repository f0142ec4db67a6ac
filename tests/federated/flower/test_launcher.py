"""The launcher's pieces: the runtime setting, the connection profile, the run config, a SuperLink that is down."""

from __future__ import annotations

import pytest
import tomli
from omegaconf import OmegaConf

from fedunlearn.federated.runtime.flower import runtime_is_flower
from fedunlearn.federated.runtime.flower.launcher import write_connection
from fedunlearn.federated.runtime.flower.run_config import read_run_config, run_config_toml
from tests.cli_helpers import run_cli
from tests.federated.flower.conftest import tiny_run
from tests.federated.flower.deployment import free_port


def flower(**settings):
    return OmegaConf.create({"connection": "fedunlearn", "superlink": "127.0.0.1:8000", "insecure": False,
                             "root_certificates": None, "federation": None, **settings})


def test_runtime_setting():
    assert runtime_is_flower({"runtime": "flower"})
    assert not runtime_is_flower({"runtime": "inprocess"})
    assert not runtime_is_flower({})
    with pytest.raises(ValueError, match="unknown runtime 'ray'"):
        runtime_is_flower({"runtime": "ray"})


def test_connection_keeps_other_profiles(flwr_home):
    (flwr_home / "config.toml").write_text('[superlink]\ndefault = "mine"\n\n[superlink.mine]\naddress = "127.0.0.1:9999"\n')

    name = write_connection(flower(insecure=True, federation="@none/default"))

    config = tomli.loads((flwr_home / "config.toml").read_text())
    assert name == "fedunlearn"
    assert config["superlink"]["default"] == "mine"
    assert config["superlink"]["mine"] == {"address": "127.0.0.1:9999"}
    assert config["superlink"]["fedunlearn"] == {"address": "127.0.0.1:8000", "insecure": True,
                                                 "federation": "@none/default"}


def test_connection_with_root_certificates(flwr_home, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")

    write_connection(flower(root_certificates=str(ca)))

    profile = tomli.loads((flwr_home / "config.toml").read_text())["superlink"]["fedunlearn"]
    assert profile == {"address": "127.0.0.1:8000", "root-certificates": str(ca)}


def test_connection_missing_certificates(flwr_home, tmp_path):
    with pytest.raises(OSError, match="ca.crt"):
        write_connection(flower(root_certificates=str(tmp_path / "ca.crt")))


def test_connection_profile_used_as_is(flwr_home):
    (flwr_home / "config.toml").write_text('[superlink.mine]\naddress = "127.0.0.1:9999"\ninsecure = true\n')

    assert write_connection(flower(superlink=None, connection="mine")) == "mine"
    with pytest.raises(ValueError, match="no connection 'other'"):
        write_connection(flower(superlink=None, connection="other"))


def test_run_config_round_trip(tmp_path):
    cfg = OmegaConf.create({"trainer": {"handler": "FederatedFinetune"}, "data": {"max_authors": None},
                            "note": 'quotes " and \\ survive'})

    got, output_dir = read_run_config(tomli.loads(run_config_toml(cfg, tmp_path / "out")))

    assert OmegaConf.to_container(got) == OmegaConf.to_container(cfg)
    assert output_dir == tmp_path / "out"


def test_run_config_without_fedunlearn():
    with pytest.raises(ValueError, match="fedunlearn train"):
        read_run_config({"fedunlearn-config": ""})


@pytest.mark.flower  # flwr run retries the connection before it fails: 5 to 20 s on 2 CPU cores
def test_superlink_down(flwr_home, tmp_path, capsys, tofu_data_dir):
    overrides = tiny_run("unused-model", tofu_data_dir, tmp_path / "out", num_clients=2)

    code = run_cli("train", "--config-name=train-lora.yaml", *overrides, "runtime=flower",
                   f"flower.superlink=127.0.0.1:{free_port()}", "flower.insecure=true")

    assert code == 2
    assert "error: flwr run failed" in capsys.readouterr().err
