"""The evaluation recipe: load a saved model and run the TOFU benchmark on it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from fedunlearn.evals.tofu import evaluate_tofu
from fedunlearn.models.loading import load_model_and_tokenizer
from fedunlearn.models.sources import resolve_model_source
from fedunlearn.trainers.common import open_output_dir

log = logging.getLogger(__name__)


def tofu_eval(cfg: DictConfig, output_dir: Path) -> dict:
    """Evaluate ``cfg.model`` with ``cfg.eval.tofu`` and write TOFU_EVAL.json and TOFU_SUMMARY.json."""
    tofu = cfg.eval.tofu
    retain_logs_path = tofu.get("retain_logs_path")
    if retain_logs_path and not Path(retain_logs_path).is_file():
        raise FileNotFoundError(
            f"retain_logs_path {retain_logs_path!r} not found: point it at the retain model's TOFU_EVAL.json, "
            "or set retain_logs_path=null to skip forget_quality"
        )
    resolve_model_source(cfg.model.model_args.pretrained_model_name_or_path)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    model.eval()
    output_dir = open_output_dir(output_dir, cfg, "eval")
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(tofu.get("bf16", False))):
        summary = _evaluate(model, tokenizer, cfg, output_dir, retain_logs_path)
    for name, value in summary.items():
        log.info("%s: %s", name, value)
    return summary


def _evaluate(model, tokenizer, cfg: DictConfig, output_dir: Path, retain_logs_path) -> dict:
    tofu = cfg.eval.tofu
    return evaluate_tofu(
        model,
        tokenizer,
        cfg.model.get("template_args") or {},
        forget_split=tofu.forget_split,
        holdout_split=tofu.get("holdout_split"),
        data_dir=cfg.get("data_dir"),
        output_dir=output_dir,
        retain_logs_path=retain_logs_path,
        batch_size=tofu.batch_size,
        generation_batch_size=tofu.generation.batch_size,
        max_new_tokens=tofu.generation.max_new_tokens,
        max_samples=tofu.get("max_samples"),
        metrics=list(tofu.metrics),
        overwrite=tofu.get("overwrite", True),
    )
