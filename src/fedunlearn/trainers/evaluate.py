"""The evaluation recipe: load a saved model and run the TOFU or the MUSE benchmark on it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from fedunlearn.data.muse import resolve_data_dir as resolve_muse_dir
from fedunlearn.evals.muse import MuseSettings, evaluate_muse
from fedunlearn.evals.clients import (
    CONFIG_FILE,
    Federation,
    evaluate_clients,
    is_federation_config,
    load_federation,
    summary_rows,
)
from fedunlearn.evals.metrics.mia import DEFAULT_K
from fedunlearn.evals.scorer import Scorer
from fedunlearn.evals.tofu import evaluate_tofu
from fedunlearn.models.loading import load_model_and_tokenizer
from fedunlearn.models.sources import resolve_model_source
from fedunlearn.trainers.common import open_output_dir

log = logging.getLogger(__name__)


def run_eval(cfg: DictConfig, output_dir: Path) -> dict:
    """Evaluate with the benchmark that ``cfg.eval`` configures: ``muse`` (``eval=muse``) or else ``tofu``."""
    if "muse" in cfg.eval:
        return muse_eval(cfg, output_dir)
    return tofu_eval(cfg, output_dir)


def tofu_eval(cfg: DictConfig, output_dir: Path) -> dict:
    """Evaluate ``cfg.model`` with ``cfg.eval.tofu`` and write TOFU_EVAL.json and TOFU_SUMMARY.json.

    For a federated model (see ``eval.tofu.per_client``) it also writes
    CLIENTS_EVAL.json, the per-client verification.
    """
    tofu = cfg.eval.tofu
    retain_logs_path = tofu.get("retain_logs_path")
    _check_retain_logs(retain_logs_path, "TOFU_EVAL.json", "skip forget_quality")
    # Read before open_output_dir, which writes this evaluation's config.yaml, possibly into the model folder.
    federation = _federation(cfg)
    model, tokenizer, output_dir = _load_for_eval(cfg, output_dir)
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(tofu.get("bf16", False))):
        summary = _evaluate(model, tokenizer, cfg, output_dir, retain_logs_path, federation)
    for name, value in summary.items():
        log.info("%s: %s", name, value)
    return summary


def muse_eval(cfg: DictConfig, output_dir: Path) -> dict:
    """Evaluate ``cfg.model`` with ``cfg.eval.muse`` and write MUSE_EVAL.json and MUSE_SUMMARY.json."""
    muse = cfg.eval.muse
    retain_logs_path = muse.get("retain_logs_path")
    _check_retain_logs(retain_logs_path, "MUSE_EVAL.json", "compare privleak against an AUC of 0.5")
    resolve_muse_dir(cfg.get("data_dir"), str(muse.data_split))  # a missing corpus fails before the model loads
    model, tokenizer, output_dir = _load_for_eval(cfg, output_dir)
    bf16 = bool(muse.get("bf16", False))
    settings = MuseSettings(
        batch_size=int(muse.batch_size),
        generation_batch_size=int(muse.generation.batch_size),
        verbmem_max_new_tokens=int(muse.verbmem.max_new_tokens),
        knowmem_max_new_tokens=int(muse.knowmem.max_new_tokens),
        privleak_k=float(muse.privleak.k),
        max_length=int(muse.max_length),
        max_samples=muse.get("max_samples"),
        autocast_dtype=torch.bfloat16 if bf16 else None,
    )
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        summary = evaluate_muse(
            model, tokenizer, cfg.model.get("template_args") or {}, corpus=str(muse.data_split), output_dir=output_dir,
            data_dir=cfg.get("data_dir"), retain_logs_path=retain_logs_path, settings=settings,
            metrics=list(muse.metrics), overwrite=bool(muse.get("overwrite", True)),
        )
    for name, value in summary.items():
        log.info("%s: %s", name, value)
    return summary


def _check_retain_logs(retain_logs_path, file_name: str, without: str) -> None:
    if retain_logs_path and not Path(retain_logs_path).is_file():
        raise FileNotFoundError(
            f"retain_logs_path {retain_logs_path!r} not found: point it at the retain model's {file_name}, "
            f"or set retain_logs_path=null to {without}"
        )


def _load_for_eval(cfg: DictConfig, output_dir: Path):
    """Load the model in eval mode and open the output folder; returns ``(model, tokenizer, output_dir)``."""
    resolve_model_source(cfg.model.model_args.pretrained_model_name_or_path)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    model.eval()
    return model, tokenizer, open_output_dir(output_dir, cfg, "eval")


def _evaluate(model, tokenizer, cfg: DictConfig, output_dir: Path, retain_logs_path, federation) -> dict:
    tofu = cfg.eval.tofu
    load_model = _model_loader(cfg)
    scorer = Scorer(model, tokenizer, cfg.model.get("template_args") or {}, batch_size=int(tofu.batch_size),
                    generation_batch_size=int(tofu.generation.batch_size),
                    max_new_tokens=int(tofu.generation.max_new_tokens))
    summary = evaluate_tofu(
        model,
        tokenizer,
        scorer.template_args,
        forget_split=tofu.forget_split,
        holdout_split=tofu.get("holdout_split"),
        data_dir=cfg.get("data_dir"),
        output_dir=output_dir,
        retain_logs_path=retain_logs_path,
        max_samples=tofu.get("max_samples"),
        metrics=list(tofu.metrics),
        overwrite=tofu.get("overwrite", True),
        mia_k=float(tofu.get("mia_k", DEFAULT_K)),
        gradnorm_p=float(tofu.get("gradnorm_p", 2)),
        reference_model_path=tofu.get("reference_model_path"),
        load_model=load_model,
        scorer=scorer,
    )
    if federation is not None:
        retrain_path = tofu.get("retrain_model_path")
        retrain_model = load_model(str(retrain_path))[0].eval() if retrain_path else None
        result = evaluate_clients(scorer, federation, holdout_split=tofu.holdout_split, data_dir=cfg.get("data_dir"),
                                  output_dir=output_dir, max_samples=tofu.get("per_client_max_samples"),
                                  retrain_model=retrain_model, retrain_model_path=retrain_path)
        log.info("Per-client verification:\n%s", "\n".join(summary_rows(result)))
    return summary


def _federation(cfg: DictConfig) -> Federation | None:
    """Return the federation to verify client by client, following ``eval.tofu.per_client``.

    ``per_client`` is ``auto`` (verify when ``federation_config``, or else the
    model folder's ``config.yaml``, is a fedunlearn training config), ``true``
    (verify, or raise when no such config exists) or ``false``.
    """
    tofu = cfg.eval.tofu
    mode = tofu.get("per_client", "auto")
    if mode not in (True, False, "auto"):
        raise ValueError(f"invalid eval.tofu.per_client {mode!r}: choose auto, true or false")
    if mode is False:
        return None
    explicit = tofu.get("federation_config")
    path = Path(explicit) if explicit else Path(str(cfg.model.model_args.pretrained_model_name_or_path)) / CONFIG_FILE
    if is_federation_config(path):
        return load_federation(path, cfg.get("data_dir"))
    if mode is True or explicit:
        raise ValueError(
            f"per-client evaluation needs the training run's config.yaml, but {str(path)!r} is not one: "
            "set eval.tofu.federation_config to the config.yaml of fedunlearn train, or eval.tofu.per_client=false"
        )
    log.info("No fedunlearn training config at %s: skipping the per-client evaluation", path)
    return None


def _model_loader(cfg: DictConfig):
    """Return a function that loads another model (reference, retrain) with the evaluated model's settings."""

    def load(path: str):
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        model_cfg["model_args"]["pretrained_model_name_or_path"] = str(path)
        model_cfg["use_lora"] = False  # a saved adapter folder still loads with its adapter
        resolve_model_source(str(path))
        return load_model_and_tokenizer(model_cfg)

    return load
