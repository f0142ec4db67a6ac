"""TOFU evaluation with OpenUnlearning's metric definitions, key names and file layout.

The metrics, the data each reads and how it is combined are listed in
``fedunlearn.evals.tofu_metrics``; how each is computed is in
``fedunlearn.evals.tofu_evaluator``. Every answer is scored and every
question answered once per evaluation (see ``fedunlearn.evals.scorer``).

Output, in ``output_dir``:

* ``TOFU_EVAL.json`` maps each metric name to ``{"agg_value": float | null,
  "value_by_index": {"0": item, ...}}``. A probability item is ``{"prob",
  "avg_loss"}``, a ROUGE item is ``{"rouge1_recall", "rougeL_f1",
  "rougeL_recall", "input", "ground_truth", "generation"}`` (each a list, one
  entry per answer, for ``*_PERT_*``), a truth-ratio, extraction-strength or
  exact-memorization item is ``{"score"}`` and a normalised-probability item is
  ``{"prob"}``. An ``mia_*`` entry adds ``"auc"`` (equal to ``agg_value``) and
  ``"forget"`` and ``"holdout"``, each ``{"agg_value": mean score,
  "value_by_index": {"0": {"score"}, ...}}``. ``forget_quality``,
  ``model_utility`` and ``privleak`` hold only ``agg_value``. The file is
  rewritten after every metric.
* ``TOFU_SUMMARY.json`` maps each metric computed in this call to its
  ``agg_value``. It is deleted when a run starts and written only when the run
  completes, so an existing summary always belongs to a finished run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fedunlearn.evals.metrics.mia import DEFAULT_K
from fedunlearn.evals.metrics.privleak import REFERENCE_METRIC, reference_auc_from_logs
from fedunlearn.evals.reference import ReferenceLosses
from fedunlearn.evals.scorer import Scorer
from fedunlearn.evals.tofu_evaluator import TofuEvaluator
from fedunlearn.evals.tofu_metrics import DEFAULT_METRICS, METRICS, resolve_metrics
from fedunlearn.utils.io import write_json

log = logging.getLogger(__name__)

EVAL_FILE = "TOFU_EVAL.json"
SUMMARY_FILE = "TOFU_SUMMARY.json"
# OpenUnlearning has written the forget-set truth ratio under both names.
TRUTH_RATIO_KEYS = ("forget_truth_ratio", "forget_Truth_Ratio")

__all__ = ["DEFAULT_METRICS", "EVAL_FILE", "METRICS", "SUMMARY_FILE", "evaluate_tofu", "load_retain_logs"]


def evaluate_tofu(
    model,
    tokenizer,
    template_args: Mapping[str, Any],
    *,
    forget_split: str,
    holdout_split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike,
    retain_logs_path: str | os.PathLike | None = None,
    batch_size: int = 16,
    generation_batch_size: int = 16,
    max_new_tokens: int = 200,
    max_samples: int | None = None,
    metrics: Iterable[str] | None = None,
    overwrite: bool = True,
    mia_k: float = DEFAULT_K,
    gradnorm_p: float = 2.0,
    reference_model_path: str | None = None,
    load_model: Callable[[str], tuple] | None = None,
    scorer: Scorer | None = None,
) -> dict[str, float | None]:
    """Evaluate ``model`` on TOFU, write ``TOFU_EVAL.json`` and ``TOFU_SUMMARY.json``, and return the summary.

    Args:
        template_args: prompt template settings passed to ``format_prompt``.
        forget_split: ``forget01``, ``forget05`` or ``forget10``.
        holdout_split: the non-member split of the ``mia_*`` metrics and
            ``privleak``, for example ``holdout10`` for ``forget10``.
        data_dir: folder holding ``tofu/<split>.json``; None reads
            ``$FEDUNLEARN_DATA_DIR`` or else the Hugging Face Hub.
        output_dir: folder for the two JSON files, created if missing.
        retain_logs_path: ``TOFU_EVAL.json`` (this layout or OpenUnlearning's) of
            a model trained on the retain set only and evaluated on the same
            forget split. ``forget_quality`` reads its ``forget_truth_ratio``
            item scores and ``privleak`` its ``mia_min_k`` AUC. None leaves
            ``forget_quality`` null and compares ``privleak`` with an AUC of 0.5.
        batch_size: question-answer pairs per forward pass when scoring.
        generation_batch_size: prompts per ``generate`` call.
        max_new_tokens: generation limit for the ROUGE metrics.
        max_samples: score only the first ``max_samples`` items of every split.
            Results are then not comparable to full-benchmark numbers, and
            ``forget_quality`` compares samples of different sizes unless the
            reference used the same limit.
        metrics: metrics to compute and summarise, by name (default
            ``DEFAULT_METRICS``, the full suite without ``mia_reference``).
            Their prerequisites are computed, stored and summarised too.
        overwrite: when False and ``TOFU_EVAL.json`` exists, reuse the stored
            model-based metrics (probability, ROUGE, MIA, memorization) whose
            item counts match this run. Metrics derived from them are always recomputed.
        mia_k: share of tokens of Min-K% and Min-K%++ (OpenUnlearning: 0.4).
        gradnorm_p: norm of ``mia_gradnorm``: 1, 2 or ``float("inf")``.
        reference_model_path: reference model of ``mia_reference``, for example
            the retain model. Its losses are cached on disk (see ``fedunlearn.evals.reference``).
        load_model: returns ``(model, tokenizer)`` for a path; loads the reference
            model. The default loads it with ``load_model_and_tokenizer`` and default settings.
        scorer: a ``Scorer`` of ``model`` whose cached results to share, for
            example with the per-client evaluation. Its batch sizes and
            generation limit replace ``batch_size``, ``generation_batch_size``
            and ``max_new_tokens``.

    Raises:
        ValueError: an unknown metric name, an invalid ``max_samples``, an MIA
            metric without ``holdout_split``, ``mia_reference`` without
            ``reference_model_path``, a reference file without the results a
            requested metric reads, or a stored ``TOFU_EVAL.json`` that is not valid JSON.
        FileNotFoundError: ``retain_logs_path`` is set but does not exist.
    """
    selected = resolve_metrics(metrics)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive number of items or None, got {max_samples}")
    if holdout_split is None and any(METRICS[name].kind == "mia" for name in selected):
        raise ValueError("the mia_* metrics and privleak need holdout_split (for example holdout10 for forget10)")
    if "mia_reference" in selected and not reference_model_path:
        raise ValueError("mia_reference needs reference_model_path: point it at a reference model, such as the retain model")
    if scorer is None:
        scorer = Scorer(model, tokenizer, template_args, batch_size=batch_size,
                        generation_batch_size=generation_batch_size, max_new_tokens=max_new_tokens)
    elif scorer.model is not model:
        raise ValueError("scorer belongs to another model: pass a Scorer built for the evaluated model")

    evaluator = TofuEvaluator(scorer, forget_split, holdout_split, data_dir, max_samples, mia_k=mia_k, gradnorm_p=gradnorm_p)
    if retain_logs_path is not None:
        retain_logs = load_retain_logs(Path(retain_logs_path))
        if "forget_quality" in selected:
            evaluator.reference_truth_ratios = reference_truth_ratios(retain_logs, retain_logs_path)
        if "privleak" in selected:
            evaluator.reference_auc = reference_auc_from_logs(retain_logs, REFERENCE_METRIC)
    if reference_model_path:
        evaluator.reference = ReferenceLosses(reference_model_path, load_model or _load_model, tokenizer, scorer.batch_size)

    output_dir = Path(output_dir)
    eval_path, summary_path = output_dir / EVAL_FILE, output_dir / SUMMARY_FILE
    summary_path.unlink(missing_ok=True)
    logs = _load_stored_logs(eval_path) if not overwrite else {}
    if max_samples is not None:
        log.warning("Evaluating only the first %d items of each TOFU split: not comparable to full TOFU results", max_samples)
    log.info("Evaluating TOFU metrics %s on %s, writing to %s", selected, forget_split, eval_path)

    try:
        for name in selected:
            spec = METRICS[name]
            if not overwrite and evaluator.is_reusable(name, spec, logs.get(name)):
                log.info("Reusing stored %s = %s", name, logs[name]["agg_value"])
                continue
            logs[name] = evaluator.compute(name, spec, logs)
            log.info("%s = %s", name, logs[name]["agg_value"])
            write_json(eval_path, dict(sorted(logs.items())))
    finally:
        if evaluator.reference is not None:
            evaluator.reference.close()

    summary = {name: logs[name]["agg_value"] for name in selected}
    write_json(summary_path, summary)
    log.info("Wrote TOFU summary to %s (seconds: %s)", summary_path,
             {phase: round(seconds, 1) for phase, seconds in scorer.timings.items()})
    return summary


def load_retain_logs(path: Path) -> dict:
    """Read the retain model's ``TOFU_EVAL.json`` (fedunlearn's or OpenUnlearning's, which share a layout)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"retain_logs_path {str(path)!r} not found: point it at the TOFU_EVAL.json of a retain-only model "
            "evaluated on the same forget split, or set it to null to skip forget_quality"
        )
    try:
        logs = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"retain_logs_path {str(path)!r} is not valid JSON ({err.msg}, line {err.lineno}): "
            "point it at the TOFU_EVAL.json that fedunlearn eval or OpenUnlearning wrote for the retain model"
        ) from None
    if not isinstance(logs, dict):
        raise ValueError(f"retain_logs_path {str(path)!r} does not contain a JSON object of metrics")
    return logs


def reference_truth_ratios(logs: Mapping[str, Any], path: str | os.PathLike) -> list[float]:
    """Return the retain model's forget-set truth ratios, skipping items OpenUnlearning stored as null."""
    for key in TRUTH_RATIO_KEYS:
        entry = logs.get(key)
        items = entry.get("value_by_index") if isinstance(entry, dict) else None
        if items:
            return [item["score"] for item in items.values() if item is not None and item.get("score") is not None]
    raise ValueError(
        f"retain_logs_path {str(path)!r} has no forget_truth_ratio.value_by_index: "
        "evaluate the retain-only model with the forget_truth_ratio metric first"
    )


def _load_stored_logs(eval_path: Path) -> dict[str, dict]:
    if not eval_path.is_file():
        return {}
    try:
        logs = json.loads(eval_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"stored results {str(eval_path)!r} are not valid JSON ({err.msg}): delete the file or pass overwrite=True"
        ) from None
    log.info("Loaded stored TOFU metrics %s from %s", sorted(logs), eval_path)
    return logs


def _load_model(path: str) -> tuple:
    from fedunlearn.models.loading import load_model_and_tokenizer

    return load_model_and_tokenizer({"model_args": {"pretrained_model_name_or_path": path}})
