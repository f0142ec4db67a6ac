"""TOFU evaluation with OpenUnlearning's metric definitions, key names and file layout.

Metrics, the split each reads and the answer field it scores or compares
(``{forget}`` is ``forget_split``, for example ``forget10``):

* ``forget_Q_A_Prob`` and ``forget_Q_A_ROUGE``: ``{forget}``, ``answer``.
* ``forget_Q_A_PARA_Prob``: ``{forget}_perturbed``, ``paraphrased_answer``.
* ``forget_Q_A_PERT_Prob``: ``{forget}_perturbed``, every ``perturbed_answer``.
* ``forget_truth_ratio``: paraphrased (correct) against perturbed (wrong)
  answers, aggregated with ``closer_to_1_better``.
* ``forget_quality``: KS test of the ``forget_truth_ratio`` item scores against
  those of a retain-only reference model (``retain_logs_path``).
* ``retain_*``: ``retain_perturbed``, the same metrics as the forget set, with
  ``retain_Truth_Ratio`` aggregated with ``true_better``.
* ``ra_*`` (``real_authors_perturbed``) and ``wf_*`` (``world_facts_perturbed``):
  ``Q_A_Prob`` and ``Q_A_ROUGE`` of ``answer``, ``Q_A_PERT_Prob`` of every
  ``perturbed_answer``, ``Q_A_Prob_normalised`` and ``Truth_Ratio``
  (``true_better``) of ``answer`` against the perturbed answers.
* ``model_utility``: harmonic mean of nine retain, ``ra`` and ``wf`` metrics.

The forget files ``{forget}`` and ``{forget}_perturbed`` hold the same
questions and answers. OpenUnlearning reads the second for every forget metric,
so results agree either way.

Output, in ``output_dir``:

* ``TOFU_EVAL.json`` maps each metric name to ``{"agg_value": float | null,
  "value_by_index": {"0": item, ...}}``. A probability item is ``{"prob",
  "avg_loss"}`` (lists for ``*_PERT_Prob``), a ROUGE item is ``{"rouge1_recall",
  "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}``, a
  truth-ratio item is ``{"score"}`` and a normalised-probability item is
  ``{"prob"}``. ``forget_quality`` and ``model_utility`` hold only ``agg_value``.
  The file is rewritten after every metric.
* ``TOFU_SUMMARY.json`` maps each metric computed in this call to its
  ``agg_value``. It is deleted when a run starts and written only when the run
  completes, so an existing summary always belongs to a finished run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedunlearn.data.template import format_prompt
from fedunlearn.data.tofu import load_split
from fedunlearn.evals.generation import generate_answers
from fedunlearn.evals.metrics.forget_quality import forget_quality
from fedunlearn.evals.metrics.model_utility import MODEL_UTILITY_COMPONENTS, model_utility
from fedunlearn.evals.metrics.probability import probability, probability_with_options
from fedunlearn.evals.metrics.rouge import rouge
from fedunlearn.evals.metrics.truth_ratio import closer_to_1_better, true_better, truth_ratio
from fedunlearn.evals.scoring import answer_nll
from fedunlearn.utils.io import write_json

log = logging.getLogger(__name__)

EVAL_FILE = "TOFU_EVAL.json"
SUMMARY_FILE = "TOFU_SUMMARY.json"
DEFAULT_METRICS = ("forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "forget_quality", "model_utility")


@dataclass(frozen=True)
class MetricSpec:
    """The data and the combination rule of one TOFU metric.

    ``kind`` is ``probability`` or ``rouge`` for metrics that run the model on
    ``answer_field`` of ``split`` (``{forget}`` in the split name is replaced by the
    forget split). The other kinds (``normalised_probability``,
    ``truth_ratio``, ``forget_quality``, ``model_utility``) combine the stored
    results of ``prerequisites``, which for the first two are the correct and
    the wrong answers' probability metrics.
    """

    kind: str
    split: str | None = None
    answer_field: str | None = None
    prerequisites: tuple[str, ...] = ()
    aggregator: Callable[[np.ndarray], float] | None = None


def _retain_side_metrics(prefix: str, split: str, paraphrased: bool) -> dict[str, MetricSpec]:
    """Specify the metrics of one split that feeds model_utility.

    The retain split's truth ratio uses the paraphrased answer as the correct
    one. The ra and wf splits have no paraphrase, so they use the plain answer
    and add the normalised probability.
    """
    metrics = {
        f"{prefix}_Q_A_Prob": MetricSpec("probability", split, "answer"),
        f"{prefix}_Q_A_PERT_Prob": MetricSpec("probability", split, "perturbed_answer"),
        f"{prefix}_Q_A_ROUGE": MetricSpec("rouge", split, "answer"),
    }
    if paraphrased:
        metrics[f"{prefix}_Q_A_PARA_Prob"] = MetricSpec("probability", split, "paraphrased_answer")
        correct = f"{prefix}_Q_A_PARA_Prob"
    else:
        correct = f"{prefix}_Q_A_Prob"
        metrics[f"{prefix}_Q_A_Prob_normalised"] = MetricSpec(
            "normalised_probability", prerequisites=(correct, f"{prefix}_Q_A_PERT_Prob")
        )
    metrics[f"{prefix}_Truth_Ratio"] = MetricSpec(
        "truth_ratio", prerequisites=(correct, f"{prefix}_Q_A_PERT_Prob"), aggregator=true_better
    )
    return metrics


# Listed so that every metric comes after its prerequisites.
METRICS: dict[str, MetricSpec] = {
    "forget_Q_A_Prob": MetricSpec("probability", "{forget}", "answer"),
    "forget_Q_A_ROUGE": MetricSpec("rouge", "{forget}", "answer"),
    "forget_Q_A_PARA_Prob": MetricSpec("probability", "{forget}_perturbed", "paraphrased_answer"),
    "forget_Q_A_PERT_Prob": MetricSpec("probability", "{forget}_perturbed", "perturbed_answer"),
    "forget_truth_ratio": MetricSpec(
        "truth_ratio", prerequisites=("forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob"), aggregator=closer_to_1_better
    ),
    "forget_quality": MetricSpec("forget_quality", prerequisites=("forget_truth_ratio",)),
    **_retain_side_metrics("retain", "retain_perturbed", paraphrased=True),
    **_retain_side_metrics("ra", "real_authors_perturbed", paraphrased=False),
    **_retain_side_metrics("wf", "world_facts_perturbed", paraphrased=False),
    "model_utility": MetricSpec("model_utility", prerequisites=MODEL_UTILITY_COMPONENTS),
}


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
) -> dict[str, float | None]:
    """Evaluate ``model`` on TOFU, write ``TOFU_EVAL.json`` and ``TOFU_SUMMARY.json``, and return the summary.

    Args:
        template_args: prompt template settings passed to ``format_prompt``.
        forget_split: ``forget01``, ``forget05`` or ``forget10``.
        holdout_split: accepted so that OpenUnlearning-style configs pass
            through. No metric here reads it yet.
        data_dir: folder holding ``tofu/<split>.json``; None reads
            ``$FEDUNLEARN_DATA_DIR`` or else the Hugging Face Hub.
        output_dir: folder for the two JSON files, created if missing.
        retain_logs_path: ``TOFU_EVAL.json`` of a model trained on the retain
            set only and evaluated on the same forget split. Its
            ``forget_truth_ratio`` item scores are the reference of
            ``forget_quality``. None leaves ``forget_quality`` null.
        batch_size: question-answer pairs per forward pass when scoring.
        generation_batch_size: prompts per ``generate`` call.
        max_new_tokens: generation limit for the ROUGE metrics.
        max_samples: score only the first ``max_samples`` items of every split.
            Results are then not comparable to full-benchmark numbers, and
            ``forget_quality`` compares samples of different sizes unless the
            reference used the same limit.
        metrics: metrics to compute and summarise, by name (default
            ``DEFAULT_METRICS``). Their prerequisites are computed, stored
            and summarised too.
        overwrite: when False and ``TOFU_EVAL.json`` exists, reuse the stored
            probability and ROUGE metrics whose item count matches this run.
            Metrics derived from them are always recomputed.

    Raises:
        ValueError: an unknown metric name, an invalid ``max_samples``, a
            reference file without ``forget_truth_ratio`` item scores, or a
            stored ``TOFU_EVAL.json`` that is not valid JSON.
        FileNotFoundError: ``retain_logs_path`` is set but does not exist.
    """
    selected = _resolve_metrics(metrics)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive number of items or None, got {max_samples}")
    reference_scores = None
    if "forget_quality" in selected and retain_logs_path is not None:
        reference_scores = _load_reference_truth_ratios(Path(retain_logs_path))
    if holdout_split is not None:
        log.info("holdout_split=%s is not used: no metric here reads the holdout set", holdout_split)

    output_dir = Path(output_dir)
    eval_path, summary_path = output_dir / EVAL_FILE, output_dir / SUMMARY_FILE
    summary_path.unlink(missing_ok=True)
    logs = _load_stored_logs(eval_path) if not overwrite else {}
    if max_samples is not None:
        log.warning("Evaluating only the first %d items of each TOFU split: not comparable to full TOFU results", max_samples)
    log.info("Evaluating TOFU metrics %s on %s, writing to %s", selected, forget_split, eval_path)

    evaluator = _Evaluator(
        model, tokenizer, template_args, forget_split, data_dir, max_samples,
        batch_size, generation_batch_size, max_new_tokens,
    )
    for name in selected:
        spec = METRICS[name]
        if not overwrite and evaluator.is_reusable(name, spec, logs.get(name)):
            log.info("Reusing stored %s = %s", name, logs[name]["agg_value"])
            continue
        logs[name] = evaluator.compute(name, spec, logs, reference_scores)
        log.info("%s = %s", name, logs[name]["agg_value"])
        write_json(eval_path, dict(sorted(logs.items())))

    summary = {name: logs[name]["agg_value"] for name in selected}
    write_json(summary_path, summary)
    log.info("Wrote TOFU summary to %s", summary_path)
    return summary


def _resolve_metrics(metrics: Iterable[str] | None) -> list[str]:
    """Return the requested metrics and their prerequisites in computation order."""
    if metrics is None:
        requested = list(DEFAULT_METRICS)
    elif isinstance(metrics, str):
        requested = [metrics]
    else:
        requested = list(metrics)
    unknown = [name for name in requested if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown TOFU metric(s) {unknown}: valid names are {list(METRICS)}")
    needed: set[str] = set()
    pending = list(requested)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(METRICS[name].prerequisites)
    return [name for name in METRICS if name in needed]


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


def _load_reference_truth_ratios(path: Path) -> list[float]:
    if not path.is_file():
        raise FileNotFoundError(
            f"retain_logs_path {str(path)!r} not found: point it at the TOFU_EVAL.json of a retain-only model "
            "evaluated on the same forget split, or set it to null to skip forget_quality"
        )
    try:
        reference = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"retain_logs_path {str(path)!r} is not valid JSON ({err.msg}, line {err.lineno}): "
            "point it at the TOFU_EVAL.json that fedunlearn eval wrote for the retain model"
        ) from None
    try:
        items = reference["forget_truth_ratio"]["value_by_index"]
    except (KeyError, TypeError):
        raise ValueError(
            f"retain_logs_path {str(path)!r} has no forget_truth_ratio.value_by_index: "
            "evaluate the retain-only model with the forget_truth_ratio metric first"
        ) from None
    return [item["score"] for item in items.values()]


@dataclass
class _Evaluator:
    """Run the model-based metrics, loading each split once and slicing it to ``max_samples``."""

    model: Any
    tokenizer: Any
    template_args: Mapping[str, Any]
    forget_split: str
    data_dir: str | os.PathLike | None
    max_samples: int | None
    batch_size: int
    generation_batch_size: int
    max_new_tokens: int
    _records: dict[str, list[dict]] = field(default_factory=dict)

    def records(self, split: str) -> list[dict]:
        name = split.format(forget=self.forget_split)
        if name not in self._records:
            self._records[name] = load_split(name, self.data_dir)[: self.max_samples]
        return self._records[name]

    def is_reusable(self, name: str, spec: MetricSpec, stored: dict | None) -> bool:
        """Return whether a stored model-based result matches this run's item count."""
        if stored is None or spec.kind not in ("probability", "rouge"):
            return False
        expected = len(self.records(spec.split))
        found = len(stored.get("value_by_index") or {})
        if found != expected:
            log.warning("Recomputing stored %s: it has %d items, this run scores %d", name, found, expected)
            return False
        return True

    def compute(self, name: str, spec: MetricSpec, logs: Mapping[str, dict], reference_scores) -> dict:
        if spec.kind == "probability":
            return self.probability(name, spec.split, spec.answer_field)
        if spec.kind == "rouge":
            return self.rouge(name, spec.split, spec.answer_field)
        if spec.kind == "forget_quality":
            scores = [item["score"] for item in logs["forget_truth_ratio"]["value_by_index"].values()]
            if reference_scores is not None and len(reference_scores) != len(scores):
                log.warning("forget_quality compares %d model truth ratios with %d reference ones",
                            len(scores), len(reference_scores))
            return {"agg_value": forget_quality(scores, reference_scores)}
        if spec.kind == "model_utility":
            return {"agg_value": model_utility({component: logs[component]["agg_value"] for component in spec.prerequisites})}

        keys, correct, wrong = _paired_losses(logs, *spec.prerequisites)
        if spec.kind == "normalised_probability":
            values, agg_value = probability_with_options(correct, wrong)
            return {"agg_value": agg_value, "value_by_index": {k: {"prob": float(v)} for k, v in zip(keys, values)}}
        ratios = truth_ratio(correct, wrong)
        return {
            "agg_value": spec.aggregator(ratios),
            "value_by_index": {k: {"score": float(r)} for k, r in zip(keys, ratios)},
        }

    def probability(self, name: str, split: str, answer_field: str) -> dict:
        """Score ``answer_field`` of every record, one answer or a list of answers per record."""
        records = self.records(split)
        questions, answers, owners = [], [], []
        for index, record in enumerate(records):
            values = record[answer_field] if isinstance(record[answer_field], list) else [record[answer_field]]
            questions.extend([record["question"]] * len(values))
            answers.extend(values)
            owners.extend([index] * len(values))
        scores = answer_nll(self.model, self.tokenizer, questions, answers, self.template_args,
                            batch_size=self.batch_size, show_progress=True, desc=name)
        probs, _ = probability([score["avg_loss"] for score in scores])

        items: dict[str, dict] = {str(index): {"prob": [], "avg_loss": []} for index in range(len(records))}
        for owner, prob, score in zip(owners, probs, scores):
            items[str(owner)]["prob"].append(float(prob))
            items[str(owner)]["avg_loss"].append(score["avg_loss"])
        if not isinstance(records[0][answer_field], list):
            items = {key: {"prob": item["prob"][0], "avg_loss": item["avg_loss"][0]} for key, item in items.items()}
        # As OpenUnlearning does, average an item's answers first, then the items.
        agg_value = float(np.mean([np.mean(item["prob"]) for item in items.values()]))
        return {"agg_value": agg_value, "value_by_index": items}

    def rouge(self, name: str, split: str, answer_field: str) -> dict:
        records = self.records(split)
        questions = [record["question"] for record in records]
        generations = generate_answers(self.model, self.tokenizer, questions, self.template_args,
                                       batch_size=self.generation_batch_size, max_new_tokens=self.max_new_tokens,
                                       show_progress=True, desc=name)
        ground_truths = [record[answer_field] for record in records]
        scores, agg_value = rouge(generations, ground_truths)
        items = {}
        for index, (score, question, truth, generation) in enumerate(zip(scores, questions, ground_truths, generations)):
            items[str(index)] = {
                **score,
                "input": format_prompt(self.tokenizer, question, self.template_args),
                "ground_truth": truth,
                "generation": generation,
            }
        return {"agg_value": agg_value, "value_by_index": items}


def _paired_losses(logs: Mapping[str, dict], correct_name: str, wrong_name: str):
    """Return the item keys, correct-answer losses and wrong-answer loss lists of two stored probability metrics."""
    correct_items = logs[correct_name]["value_by_index"]
    wrong_items = logs[wrong_name]["value_by_index"]
    if correct_items.keys() != wrong_items.keys():
        raise ValueError(f"{correct_name} and {wrong_name} cover different items: rerun with overwrite=True")
    keys = list(correct_items)
    correct = [correct_items[key]["avg_loss"] for key in keys]
    wrong = [wrong_items[key]["avg_loss"] for key in keys]
    return keys, correct, wrong
