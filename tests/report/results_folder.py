"""Results folders written with the project's own writers, as fedunlearn run and fedunlearn eval lay them out."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from fedunlearn.federated.history import History
from fedunlearn.trainers.common import write_summary
from fedunlearn.utils.io import write_json, write_text

# Per round, each client's local loss. Fine-tuning and the retain reference train all clients.
# In the unlearning run client 0 unlearns (GradDiff) and the others keep training.
LOSSES = {
    "finetune": [{"0": 2.0, "1": 2.2, "2": 2.4}, {"0": 1.5, "1": 1.7, "2": 1.6}],
    "retain": [{"0": 2.1, "1": 2.3, "2": 2.2}, {"0": 1.6, "1": 1.8, "2": 1.7}],
    "unlearn": [{"0": -0.5, "1": 1.4, "2": 1.5}, {"0": -1.5, "1": 1.3, "2": 1.2}],
}
EXAMPLES = {
    "finetune": {"0": 60, "1": 20, "2": 20},
    "retain": {"0": 20, "1": 20, "2": 20},
    "unlearn": {"0": 60, "1": 20, "2": 20},
}
SUMMARIES = {
    "retain": {"forget_Q_A_Prob": 0.25, "forget_truth_ratio": 0.78, "forget_quality": None, "model_utility": 0.34},
    "finetune": {"forget_Q_A_Prob": 0.68, "forget_truth_ratio": 0.60, "forget_quality": 0.0262, "model_utility": 0.38},
    "unlearn": {"forget_Q_A_Prob": 0.42, "forget_truth_ratio": 0.64, "forget_quality": 0.0755, "model_utility": 0.3386},
}
CLIENTS = {
    "target_client_idx": 0,
    "holdout": {"num_records": 4, "Q_A_Prob": 0.2},
    "clients": {
        "0": {"role": "target",
              "forget": {"num_records": 4, "Q_A_Prob": 0.45, "Q_A_ROUGE": 0.5, "mia_loss": 0.7, "kl_to_retrain": None},
              "retain": {"num_records": 4, "Q_A_Prob": 0.6, "Q_A_ROUGE": 0.6, "mia_loss": 0.8, "kl_to_retrain": None}},
        "1": {"role": "retain",
              "retain": {"num_records": 4, "Q_A_Prob": 0.55, "Q_A_ROUGE": 0.5, "mia_loss": 0.75, "kl_to_retrain": None}},
    },
}
MUSE_SUMMARY = {"forget_verbmem_ROUGE": 0.58, "forget_knowmem_ROUGE": 0.64, "retain_knowmem_ROUGE": 0.55,
                "privleak": -99.8, "extraction_strength": 0.9, "mia_min_k": 0.999}
MUSE_UNLEARNED = {"forget_verbmem_ROUGE": 0.2, "forget_knowmem_ROUGE": 0.3, "retain_knowmem_ROUGE": 0.4,
                  "privleak": 10.0, "extraction_strength": 0.1, "mia_min_k": 0.45}


def write_federation(folder: Path, name: str) -> None:
    """Write ``folder`` as a finished federated run: history, federation.json, config.yaml and a model file."""
    history = History(folder / "federation")
    state = {"weight": torch.zeros(2)}
    history.save_round(0, state, {}, {"participants": []}, "fingerprint", {})
    roles = {client: "train" for client in EXAMPLES[name]}
    if name == "unlearn":
        roles = {client: "unlearn" if client == "0" else "retain" for client in EXAMPLES[name]}
    for server_round, losses in enumerate(LOSSES[name], start=1):
        record = {
            "participants": [int(c) for c in losses],
            "num_examples": EXAMPLES[name],
            "roles": roles,
            "metrics": {c: {"loss": loss, "steps": 2} for c, loss in losses.items()},
        }
        history.save_round(server_round, state, {int(c): state for c in losses}, record, "fingerprint", {})
    summary = {"trainer": "FederatedUnlearningTrainer" if name == "unlearn" else "FederatedFinetune",
               "clients": EXAMPLES[name], "rounds": history.records()}
    if name == "unlearn":
        summary.update(method="GradDiff", target_client_idx=0, forget_records=40)
    write_summary(folder, summary)
    handler = "FederatedUnlearningTrainer" if name == "unlearn" else "FederatedFinetune"
    train_split = "retain99" if name == "retain" else "full"
    config = {"mode": name, "forget_split": "forget01", "trainer": {"handler": handler},
              "data": {"dataset": "TOFU", "train_split": train_split}}
    write_text(folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
    write_json(folder / "config.json", {"model_type": "llama"})  # the saved model's marker file


def write_evaluation(folder: Path, model_folder: Path, summary: dict, benchmark: str = "TOFU") -> None:
    """Write an evaluation of ``model_folder``: the summary, the per-metric file and the config.yaml."""
    write_json(folder / f"{benchmark}_EVAL.json", {name: {"agg_value": value} for name, value in summary.items()})
    write_json(folder / f"{benchmark}_SUMMARY.json", summary)
    config = {"mode": "eval", "model": {"model_args": {"pretrained_model_name_or_path": str(model_folder)}}}
    write_text(folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))


def write_run_folder(root: Path) -> Path:
    """Write a finished ``fedunlearn run`` folder (three federations, three TOFU evaluations, per-client results)."""
    for name in ("finetune", "retain", "unlearn"):
        write_federation(root / name, name)
        write_evaluation(root / "eval" / name, root / name, SUMMARIES[name])
    write_json(root / "eval" / "unlearn" / "CLIENTS_EVAL.json", CLIENTS)
    return root


def write_muse_saves(root: Path) -> Path:
    """Write OpenUnlearning-style MUSE results: a summary, and an evaluation file without its summary."""
    write_evaluation(root / "eval" / "muse_target", root / "muse_target", MUSE_SUMMARY, "MUSE")
    unlearned = root / "unlearn" / "muse_test" / "evals"
    write_json(unlearned / "MUSE_EVAL.json", {name: {"agg_value": value} for name, value in MUSE_UNLEARNED.items()})
    return root
