import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from fedunlearn.evals.clients import CLIENTS_FILE, evaluate_clients, is_federation_config, load_federation, summary_rows
from fedunlearn.evals.distance import next_token_kl
from fedunlearn.evals.generation import generate_answers
from fedunlearn.evals.metrics.rouge import rouge
from fedunlearn.evals.scorer import Scorer
from fedunlearn.evals.scoring import answer_nll
from fedunlearn.trainers.data import load_federated_data

CHAT = {"apply_chat_template": True}


@pytest.fixture(scope="module")
def scorer(trained, tiny_llama_path):
    from fedunlearn.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer({"model_args": {"pretrained_model_name_or_path": str(trained)}})
    return Scorer(model.eval(), tokenizer, CHAT, max_new_tokens=6)


def read_split(data_dir, split):
    return [json.loads(line) for line in (data_dir / "tofu" / f"{split}.json").read_text().splitlines()]


def pair_auc(members, nonmembers):
    wins = sum((n > m) + 0.5 * (n == m) for m in members for n in nonmembers)
    return wins / (len(members) * len(nonmembers))


def test_federation_config_detection(trained, tmp_path):
    eval_config = tmp_path / "eval.yaml"
    eval_config.write_text("mode: eval\nmodel: {model_args: {pretrained_model_name_or_path: x}}\n")
    muse_config = tmp_path / "muse.yaml"
    cfg = OmegaConf.load(trained / "config.yaml")
    cfg.data.dataset = "MUSE"
    OmegaConf.save(cfg, muse_config)

    assert is_federation_config(trained / "config.yaml")
    assert not is_federation_config(eval_config)
    assert not is_federation_config(muse_config)
    assert not is_federation_config(tmp_path / "missing.yaml")


def test_load_federation_rebuilds_partition(trained, tofu_data_dir):
    cfg = OmegaConf.to_container(OmegaConf.load(trained / "config.yaml"), resolve=True)
    data = load_federated_data("full", "forget01", cfg["trainer"]["method_args"], cfg["data"], tofu_data_dir, 0)

    federation = load_federation(trained / "config.yaml", tofu_data_dir)

    assert federation.target_client_idx == 0
    assert federation.forget_split == "forget01"
    assert federation.clients[0]["forget"] == read_split(tofu_data_dir, "forget01")
    assert set(federation.clients[1]) == {"retain"}
    for client_id, indices in enumerate(data.clients):
        expected = [data.records[i] for i in indices if not data.is_forget(i)]
        assert federation.clients[client_id]["retain"] == expected


def test_load_federation_same_retain_sets_on_retain_split(trained, tofu_data_dir, tmp_path):
    # The retain model's run trains the same federation on retain99: its clients keep the same records.
    cfg = OmegaConf.load(trained / "config.yaml")
    cfg.data.train_split = "retain99"
    OmegaConf.save(cfg, tmp_path / "config.yaml")

    full = load_federation(trained / "config.yaml", tofu_data_dir)
    retain = load_federation(tmp_path / "config.yaml", tofu_data_dir)

    assert retain.clients == full.clients


def test_load_federation_rejects_other_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("mode: eval\n")

    with pytest.raises(ValueError, match="is not the config.yaml of a fedunlearn TOFU training run"):
        load_federation(path)


def test_evaluate_clients_by_hand(scorer, trained, tofu_data_dir, tmp_path):
    federation = load_federation(trained / "config.yaml", tofu_data_dir)
    holdout = read_split(tofu_data_dir, "holdout01")[:3]
    forget = federation.clients[0]["forget"][:3]

    result = evaluate_clients(scorer, federation, holdout_split="holdout01", data_dir=tofu_data_dir,
                              output_dir=tmp_path, max_samples=3)

    model, tokenizer = scorer.model, scorer.tokenizer
    forget_losses = [e["avg_loss"] for e in answer_nll(model, tokenizer, [r["question"] for r in forget],
                                                        [r["answer"] for r in forget], CHAT)]
    holdout_losses = [e["avg_loss"] for e in answer_nll(model, tokenizer, [r["question"] for r in holdout],
                                                         [r["answer"] for r in holdout], CHAT)]
    generations = generate_answers(model, tokenizer, [r["question"] for r in forget], CHAT, max_new_tokens=6)
    target = result["clients"]["0"]["forget"]
    assert target["num_records"] == 3
    assert target["Q_A_Prob"] == pytest.approx(np.mean(np.exp(-np.array(forget_losses))), rel=1e-6)
    assert target["Q_A_ROUGE"] == pytest.approx(rouge(generations, [r["answer"] for r in forget])[1])
    assert target["mia_loss"] == pytest.approx(pair_auc(forget_losses, holdout_losses))
    assert target["kl_to_retrain"] is None
    assert result["holdout"]["Q_A_Prob"] == pytest.approx(np.mean(np.exp(-np.array(holdout_losses))), rel=1e-6)
    assert json.loads((tmp_path / CLIENTS_FILE).read_text()) == result


def test_evaluate_clients_roles_and_sets(scorer, trained, tofu_data_dir, tmp_path):
    federation = load_federation(trained / "config.yaml", tofu_data_dir)

    result = evaluate_clients(scorer, federation, holdout_split="holdout01", data_dir=tofu_data_dir,
                              output_dir=tmp_path, max_samples=2)

    assert result["target_client_idx"] == 0
    assert result["clients"]["0"]["role"] == "target"
    assert set(result["clients"]["0"]) == {"role", "forget", "retain"}
    for client_id in ("1", "2"):
        assert result["clients"][client_id]["role"] == "retain"
        assert set(result["clients"][client_id]) == {"role", "retain"}
        assert result["clients"][client_id]["retain"]["num_records"] == 2
    assert len(summary_rows(result)) == 2 + 4 + 1  # header, 4 record sets, holdout


def test_evaluate_clients_kl_to_retrain(scorer, trained, tiny_llama_path, tofu_data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    retrain = AutoModelForCausalLM.from_pretrained(tiny_llama_path).eval()
    federation = load_federation(trained / "config.yaml", tofu_data_dir)
    forget = federation.clients[0]["forget"][:2]

    result = evaluate_clients(scorer, federation, holdout_split="holdout01", data_dir=tofu_data_dir,
                              output_dir=tmp_path, max_samples=2, retrain_model=retrain, retrain_model_path="retrain")

    expected = next_token_kl(scorer.model, retrain, scorer.examples([r["question"] for r in forget],
                                                                    [r["answer"] for r in forget]),
                             scorer.tokenizer.pad_token_id)
    target = result["clients"]["0"]["forget"]
    assert target["kl_to_retrain"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert [item["kl_to_retrain"] for item in target["value_by_index"].values()] == pytest.approx(expected, rel=1e-6)
    assert result["retrain_model_path"] == "retrain"
    assert target["kl_to_retrain"] > 0


def test_evaluate_clients_rejects_zero_max_samples(scorer, trained, tofu_data_dir, tmp_path):
    federation = load_federation(trained / "config.yaml", tofu_data_dir)

    with pytest.raises(ValueError, match="per-client max_samples must be a positive number"):
        evaluate_clients(scorer, federation, holdout_split="holdout01", data_dir=tofu_data_dir,
                         output_dir=tmp_path, max_samples=0)
