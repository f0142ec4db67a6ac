"""Per-client verification of a federated unlearning request, written to ``CLIENTS_EVAL.json``.

A federation deals its training split to clients (``fedunlearn.data.partition``)
and the requesting client (``target_client_idx``) receives every record of the
forget authors. Verification asks, client by client:

* requesting client, ``forget`` set (its forget-split records): did they become
  as unlikely as data the federation never saw? Compare ``Q_A_Prob`` with the
  holdout set's and look for ``mia_loss`` near 0.5;
* every client, ``retain`` set (its other records): are they as well retained
  as before? Compare with the same file for the model before unlearning.

Each set of records (the first ``max_samples``) gets:

* ``Q_A_Prob``: mean answer probability ``exp(-avg_loss)``;
* ``Q_A_ROUGE``: mean ROUGE-L recall of the greedy answer against the answer;
* ``mia_loss``: the LOSS attack's ROC AUC of this set (members) against the
  holdout set (non-members), oriented as ``fedunlearn.evals.metrics.mia.auc``
  (1: the model still tells them apart from unseen data; 0.5: it cannot);
* ``kl_to_retrain``: with a ``retrain`` model (the same federation trained
  without the forget data), the mean over records of the mean over answer
  tokens of ``KL(p_retrain(. | x_<t) || p_model(. | x_<t))`` in nats; 0 means
  the evaluated model predicts like the retrained one.

The client partition is rebuilt from the training run's ``config.yaml`` with
the same code, split, seed and settings. The partition of a retain split gives
every client the same retained records as that of ``full``, so the file is
comparable between the fine-tuned, the unlearned and the retain model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from fedunlearn.data.tofu import load_split
from fedunlearn.evals.distance import next_token_kl
from fedunlearn.evals.metrics.mia import auc, loss_score
from fedunlearn.evals.metrics.rouge import rouge
from fedunlearn.evals.scorer import Scorer
from fedunlearn.evals.scoring import pad_token_id
from fedunlearn.federated.client import TrainingArgs
from fedunlearn.trainers.data import load_federated_data
from fedunlearn.utils.io import write_json

log = logging.getLogger(__name__)

CLIENTS_FILE = "CLIENTS_EVAL.json"
CONFIG_FILE = "config.yaml"  # the resolved config that every fedunlearn run writes to its output folder


@dataclass
class Federation:
    """The clients of a TOFU federation and each client's records, by set (``forget``, ``retain``)."""

    config_path: str
    train_split: str
    forget_split: str
    target_client_idx: int
    clients: dict[int, dict[str, list[dict]]]


def is_federation_config(path: str | os.PathLike) -> bool:
    """Return whether ``path`` is the ``config.yaml`` of a fedunlearn TOFU training or unlearning run."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # OmegaConf raises several YAML and config error types
        log.info("%s is not a readable config (%s): no per-client evaluation", path, err)
        return False
    method_args = OmegaConf.select(cfg, "trainer.method_args")
    return (
        method_args is not None
        and "num_clients" in method_args
        and OmegaConf.select(cfg, "data.train_split") is not None
        and OmegaConf.select(cfg, "data.dataset", default="TOFU") == "TOFU"
    )


def load_federation(config_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Federation:
    """Rebuild the client partition of the training run whose resolved config is ``config_path``.

    ``data_dir`` replaces the run's ``data_dir`` when set. The requesting
    client's ``forget`` set is the run's forget split, because the partition
    gives it every record of the forget authors. Every client's ``retain`` set
    is its records of the other authors.
    """
    if not is_federation_config(config_path):
        raise ValueError(
            f"{str(config_path)!r} is not the config.yaml of a fedunlearn TOFU training run: point "
            "eval.tofu.federation_config at the config.yaml in the output folder of fedunlearn train"
        )
    cfg = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    method_args, data_cfg = cfg["trainer"]["method_args"], cfg["data"]
    data_dir = data_dir or cfg.get("data_dir")
    seed = TrainingArgs.from_config(cfg["trainer"].get("args")).seed
    data = load_federated_data(data_cfg["train_split"], cfg["forget_split"], method_args, data_cfg, data_dir, seed)

    target = int(method_args.get("target_client_idx", 0))
    clients: dict[int, dict[str, list[dict]]] = {}
    for client_id, indices in enumerate(data.clients):
        sets = {}
        if client_id == target:
            sets["forget"] = load_split(cfg["forget_split"], data_dir)
        retain = [data.records[i] for i in indices if not data.is_forget(i)]
        if retain:
            sets["retain"] = retain
        clients[client_id] = sets
    return Federation(str(config_path), data_cfg["train_split"], cfg["forget_split"], target, clients)


def evaluate_clients(
    scorer: Scorer,
    federation: Federation,
    *,
    holdout_split: str,
    data_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    max_samples: int | None = None,
    retrain_model=None,
    retrain_model_path: str | None = None,
) -> dict[str, Any]:
    """Evaluate every client's record sets (see the module docstring), write ``CLIENTS_EVAL.json`` and return it.

    Args:
        scorer: the evaluated model's ``Scorer``. Results that the TOFU metrics
            already computed for the same texts are reused.
        holdout_split: TOFU split the federation never saw (for example ``holdout10``).
        max_samples: records per client and set, the first ones; None scores all.
        retrain_model: a model with the same tokenizer, loaded, for ``kl_to_retrain``; None leaves it null.
        retrain_model_path: recorded in the file.
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"per-client max_samples must be a positive number of records or None, got {max_samples}")
    holdout = load_split(holdout_split, data_dir)[:max_samples]
    holdout_scores = scorer.scores([r["question"] for r in holdout], [r["answer"] for r in holdout], desc="holdout")
    holdout_losses = [loss_score(s.token_logprobs) for s in holdout_scores]

    result: dict[str, Any] = {
        "federation_config": federation.config_path,
        "train_split": federation.train_split,
        "forget_split": federation.forget_split,
        "holdout_split": holdout_split,
        "target_client_idx": federation.target_client_idx,
        "max_samples": max_samples,
        "retrain_model_path": retrain_model_path if retrain_model is not None else None,
        "holdout": {
            "num_records": len(holdout),
            "Q_A_Prob": float(np.mean([np.exp(-loss) for loss in holdout_losses])),
        },
        "clients": {},
    }
    for client_id, sets in federation.clients.items():
        entry: dict[str, Any] = {"role": "target" if client_id == federation.target_client_idx else "retain"}
        for set_name, records in sets.items():
            desc = f"client {client_id} {set_name}"
            entry[set_name] = _record_set(scorer, records[:max_samples], holdout_losses, retrain_model, desc)
            log.info("%s: %s", desc, {k: v for k, v in entry[set_name].items() if k != "value_by_index"})
        result["clients"][str(client_id)] = entry

    path = Path(output_dir) / CLIENTS_FILE
    write_json(path, result)
    log.info("Wrote per-client results to %s", path)
    return result


def _record_set(scorer: Scorer, records: list[dict], holdout_losses: list[float], retrain_model, desc: str) -> dict:
    questions, answers = [r["question"] for r in records], [r["answer"] for r in records]
    scores = scorer.scores(questions, answers, desc=desc)
    losses = [loss_score(s.token_logprobs) for s in scores]
    rouge_items, rouge_recall = rouge(scorer.generations(questions, desc=desc), answers)
    kl = None
    if retrain_model is not None:
        examples = scorer.examples(questions, answers)
        kl = next_token_kl(scorer.model, retrain_model, examples, pad_token_id(scorer.tokenizer), scorer.batch_size,
                           show_progress=True, desc=f"{desc} KL to retrain")

    items = {}
    for index, (loss, item) in enumerate(zip(losses, rouge_items)):
        items[str(index)] = {"prob": float(np.exp(-loss)), "avg_loss": loss, "rougeL_recall": item["rougeL_recall"]}
        if kl is not None:
            items[str(index)]["kl_to_retrain"] = kl[index]
    return {
        "num_records": len(records),
        "Q_A_Prob": float(np.mean([item["prob"] for item in items.values()])),
        "Q_A_ROUGE": rouge_recall,
        "mia_loss": auc(losses, holdout_losses),
        "kl_to_retrain": float(np.mean(kl)) if kl is not None else None,
        "value_by_index": items,
    }


def summary_rows(result: Mapping[str, Any]) -> list[str]:
    """Format ``CLIENTS_EVAL.json`` contents as Markdown table rows, one per client and set."""
    rows = ["| client | set | records | Q_A_Prob | Q_A_ROUGE | mia_loss | kl_to_retrain |", "|---|---|---|---|---|---|---|"]
    for client_id, entry in result["clients"].items():
        for set_name in ("forget", "retain"):
            if set_name in entry:
                values = entry[set_name]
                cells = [_format(values[key]) for key in ("Q_A_Prob", "Q_A_ROUGE", "mia_loss", "kl_to_retrain")]
                rows.append(f"| {client_id} | {set_name} | {values['num_records']} | " + " | ".join(cells) + " |")
    holdout = result["holdout"]
    rows.append(f"| holdout | never seen | {holdout['num_records']} | {_format(holdout['Q_A_Prob'])} | | | |")
    return rows


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
