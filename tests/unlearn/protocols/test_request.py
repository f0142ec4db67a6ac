"""Requests (sample- or client-level), the deal taken from the fine-tuned federation, and bad settings."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from fedunlearn.trainers.data import FederatedData
from fedunlearn.unlearn.protocols import FineTunedFederation, build_request

from .federation import summary, unlearn

# Records 0-2 by the forget author 9, records 3-5 by authors 1 and 2; client 0 holds 0, 1, 3, client 1 the rest.
DATA = FederatedData(records=[{}] * 6, authors=[9, 9, 9, 1, 1, 2], forget_authors={9}, clients=[[0, 1, 3], [2, 4, 5]])


def test_sample_request_takes_forget_records():
    request = build_request(DATA, 0, "sample", "forget01")

    assert request.forget_ids == [0, 1]
    assert request.retained_ids == [3]


def test_client_request_takes_every_record():
    request = build_request(DATA, 1, "client", "forget01")

    assert request.forget_ids == [2, 4, 5]
    assert request.retained_ids == []


def test_request_without_forget_records_raises():
    data = FederatedData(records=[{}] * 2, authors=[1, 2], forget_authors={9}, clients=[[0], [1]])

    with pytest.raises(ValueError, match="client 1 has no records of forget01: nothing to forget"):
        build_request(data, 1, "sample", "forget01")


@pytest.mark.parametrize(("target", "level", "message"), [
    (0, "author", "unknown trainer.method_args.request 'author'"),
    (2, "sample", "target_client_idx=2 is out of range for 2 clients"),
])
def test_bad_request_raises(target, level, message):
    with pytest.raises(ValueError, match=message):
        build_request(DATA, target, level, "forget01")


def test_request_must_deal_like_finetuning(finetuned):
    source = FineTunedFederation.find(str(finetuned))
    cfg = OmegaConf.load(finetuned / "config.yaml")
    cfg.trainer.method_args.num_clients = 2

    with pytest.raises(ValueError, match="trainer.method_args.num_clients=2 differs from the fine-tuned federation's 3"):
        source.check_request(cfg)


def test_other_models_are_no_federation(tiny_llama_path):
    assert FineTunedFederation.find(tiny_llama_path) is None


@pytest.mark.parametrize(("overrides", "message"), [
    (["trainer.method_args.protocol=erase"], "unknown trainer.method_args.protocol 'erase'"),
    (["trainer.method_args.protocol=local", "trainer.method_args.request=client"],
     "GradDiff needs retained data on the requesting client"),
    (["data.max_authors=2"], "data.max_authors=2 differs from the fine-tuned federation's 3"),
    (["runtime=flower", "trainer.method_args.protocol=retrain"], "protocol=retrain runs in this process only"),
])
def test_bad_settings_fail_cleanly(overrides, message, finetuned, tofu_data_dir, tmp_path, capsys):
    code = unlearn(finetuned, tofu_data_dir, tmp_path / "out", *overrides)

    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_history_protocol_needs_federation_folder(tiny_llama_path, tofu_data_dir, tmp_path, capsys):
    code = unlearn(tiny_llama_path, tofu_data_dir, tmp_path / "out", "trainer.method_args.protocol=federaser")

    assert code == 2
    assert "protocol=federaser needs the fine-tuned federation's folder" in capsys.readouterr().err


def test_local_client_request_forgets_all_records(finetuned, tofu_data_dir, tmp_path):
    assert unlearn(finetuned, tofu_data_dir, tmp_path / "out", "trainer.method_args.request=client",
                   "trainer.method_args.unlearn_trainer_cls=GradAscent", "trainer.method_args.global_rounds=1") == 0

    result = summary(tmp_path / "out")
    assert result["protocol"] == "local"
    assert result["forget_records"] == 60
    assert result["rounds"][1]["roles"] == {"0": "unlearn", "1": "retain", "2": "retain"}
    assert result["cost"]["client_steps"] == 3
