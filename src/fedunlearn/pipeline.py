"""``fedunlearn run``: fine-tune, train the retain reference, unlearn, evaluate all three.

Everything goes under one folder (``saves/run/<task_name>`` by default)::

    finetune/          the federated model trained on data.train_split (TOFU full)
    retain/            the same federation trained on retain_split (never saw the forget authors)
    unlearn/           the fine-tuned model after the unlearning request
    eval/<model>/      TOFU_EVAL.json and TOFU_SUMMARY.json of each model
    results.json, results.md   the comparison table
    report/            report.md, report.html and PNG plots (fedunlearn report)

With ``resume=true`` a finished stage is skipped and an interrupted one
continues from its last completed round.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fedunlearn.data.tofu import retain_split_for
from fedunlearn.report import write_report
from fedunlearn.trainers.common import COMPLETE_MARKERS
from fedunlearn.trainers.evaluate import tofu_eval
from fedunlearn.trainers.finetune import federated_finetune
from fedunlearn.trainers.unlearn import federated_unlearn
from fedunlearn.utils.io import write_json, write_text

log = logging.getLogger(__name__)

TABLE_METRICS = ("forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "forget_quality", "model_utility",
                 "privleak")
MODELS = ("finetune", "retain", "unlearn")


def run_pipeline(cfg: DictConfig, root: Path) -> dict:
    """Run every stage that is not finished yet and return ``{model: summary}``."""
    resume = bool(cfg.get("resume", False))
    expected = retain_split_for(cfg.forget_split)
    if cfg.retain_split != expected:
        raise ValueError(
            f"retain_split={cfg.retain_split} does not match forget_split={cfg.forget_split}: the retain reference "
            f"must be trained without exactly the forgotten authors, so set retain_split={expected}"
        )
    stages = {
        "finetune": stage_config(cfg, cfg.finetune, train_split=cfg.data.train_split),
        "retain": stage_config(cfg, cfg.finetune, train_split=cfg.retain_split),
    }
    stages["unlearn"] = stage_config(cfg, cfg.unlearn, train_split=cfg.data.train_split, model_path=root / "finetune")
    runners = {"finetune": federated_finetune, "retain": federated_finetune, "unlearn": federated_unlearn}

    for name in MODELS:
        folder = root / name
        if resume and model_complete(folder):
            log.info("Stage %s already finished in %s: skipping", name, folder)
            continue
        log.info("Stage %s -> %s", name, folder)
        runners[name](stages[name], folder)

    summaries = {}
    retain_logs = root / "eval" / "retain" / "TOFU_EVAL.json"
    for name in ("retain", "finetune", "unlearn"):
        folder = root / "eval" / name
        if resume and (folder / "TOFU_SUMMARY.json").is_file():
            log.info("Evaluation of %s already finished: skipping", name)
        else:
            log.info("Evaluating %s", name)
            eval_cfg = stage_config(cfg, None, model_path=root / name,
                                    retain_logs_path=str(retain_logs) if name != "retain" else None)
            if name != "retain":  # per-client kl_to_retrain compares with the retain reference
                eval_cfg.eval.tofu.retrain_model_path = str(root / "retain")
            tofu_eval(eval_cfg, folder)
        summaries[name] = json.loads((folder / "TOFU_SUMMARY.json").read_text())

    write_json(root / "results.json", summaries)
    table = results_table(summaries)
    write_text(root / "results.md", table + "\n")
    write_report(root)
    return summaries


def results_table(summaries: dict[str, dict]) -> str:
    """Format the per-model summaries as a Markdown table."""
    lines = ["| model | " + " | ".join(TABLE_METRICS) + " |", "|---" * (len(TABLE_METRICS) + 1) + "|"]
    for model, summary in summaries.items():
        cells = [_format(summary.get(metric)) for metric in TABLE_METRICS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


def stage_config(cfg: DictConfig, trainer, *, train_split=None, model_path=None, retain_logs_path=None) -> DictConfig:
    """Return the config of one stage: ``cfg`` with ``trainer`` as its trainer and the given split, model and logs."""
    stage = OmegaConf.to_container(cfg, resolve=True)
    for key in ("finetune", "unlearn", "compare"):
        stage.pop(key, None)
    if trainer is not None:
        stage["trainer"] = OmegaConf.to_container(trainer, resolve=True)
    if train_split is not None:
        stage["data"]["train_split"] = train_split
    if model_path is not None:
        stage["model"]["model_args"]["pretrained_model_name_or_path"] = str(model_path)
    stage["eval"]["tofu"]["retain_logs_path"] = retain_logs_path
    return OmegaConf.create(stage)


def model_complete(folder: Path) -> bool:
    """Return whether ``folder`` holds a saved model and the summary written after it."""
    return (folder / "federation.json").is_file() and any((folder / m).is_file() for m in COMPLETE_MARKERS)
