"""Computing one TOFU metric, in OpenUnlearning's result layout, from a ``Scorer`` and the stored results.

Which tokens each likelihood metric reads follows OpenUnlearning: answer
probability, LOSS, ZLib and Reference use every answer token (its
``avg_loss``); Min-K%, Min-K%++, GradNorm, extraction strength and exact
memorization drop the last answer token (the end-of-sequence token).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedunlearn.data.template import format_prompt
from fedunlearn.data.tofu import load_split
from fedunlearn.evals.metrics import memorization, mia
from fedunlearn.evals.metrics.forget_quality import forget_quality
from fedunlearn.evals.metrics.model_utility import model_utility
from fedunlearn.evals.metrics.privleak import privleak
from fedunlearn.evals.metrics.probability import probability_with_options
from fedunlearn.evals.metrics.rouge import rouge
from fedunlearn.evals.metrics.truth_ratio import truth_ratio
from fedunlearn.evals.reference import ReferenceLosses
from fedunlearn.evals.scorer import Scorer
from fedunlearn.evals.tofu_metrics import FORGET_SPLIT, HOLDOUT_SPLIT, MetricSpec

log = logging.getLogger(__name__)


@dataclass
class TofuEvaluator:
    """Run the TOFU metrics of one model, loading each split once and slicing it to ``max_samples``.

    ``reference_truth_ratios`` and ``reference_auc`` come from the retain
    model's logs (None without them). ``reference`` scores the Reference attack.
    """

    scorer: Scorer
    forget_split: str
    holdout_split: str | None
    data_dir: str | os.PathLike | None
    max_samples: int | None
    mia_k: float = mia.DEFAULT_K
    gradnorm_p: float = 2.0
    reference: ReferenceLosses | None = None
    reference_truth_ratios: list[float] | None = None
    reference_auc: float | None = None
    _records: dict[str, list[dict]] = field(default_factory=dict)

    def split_name(self, split: str) -> str:
        return split.format(forget=self.forget_split, holdout=self.holdout_split)

    def records(self, split: str) -> list[dict]:
        name = self.split_name(split)
        if name not in self._records:
            self._records[name] = load_split(name, self.data_dir)[: self.max_samples]
        return self._records[name]

    def is_reusable(self, name: str, spec: MetricSpec, stored: dict | None) -> bool:
        """Return whether a stored model-based result has the item counts of this run."""
        if stored is None or spec.kind not in ("probability", "rouge", "mia", "memorization"):
            return False
        if spec.kind == "mia":
            expected = {"forget": len(self.records(spec.split)), "holdout": len(self.records(HOLDOUT_SPLIT))}
            found = {side: len((stored.get(side) or {}).get("value_by_index") or {}) for side in expected}
        else:
            expected = {"items": len(self.records(spec.split))}
            found = {"items": len(stored.get("value_by_index") or {})}
        if found != expected:
            log.warning("Recomputing stored %s: it has %s items, this run scores %s", name, found, expected)
            return False
        return True

    def compute(self, name: str, spec: MetricSpec, logs: Mapping[str, dict]) -> dict:
        """Compute metric ``name`` and return its ``{"agg_value", ...}`` entry."""
        if spec.kind == "probability":
            return self.probability(name, spec.split, spec.answer_field)
        if spec.kind == "rouge":
            return self.rouge(name, spec.split, spec.answer_field)
        if spec.kind == "mia":
            return self.mia(name, spec.variant)
        if spec.kind == "memorization":
            return self.memorization(name, spec.split, spec.variant)
        if spec.kind == "forget_quality":
            scores = [item["score"] for item in logs["forget_truth_ratio"]["value_by_index"].values()]
            if self.reference_truth_ratios is not None and len(self.reference_truth_ratios) != len(scores):
                log.warning("forget_quality compares %d model truth ratios with %d reference ones",
                            len(scores), len(self.reference_truth_ratios))
            return {"agg_value": forget_quality(scores, self.reference_truth_ratios)}
        if spec.kind == "model_utility":
            return {"agg_value": model_utility({component: logs[component]["agg_value"] for component in spec.prerequisites})}
        if spec.kind == "privleak":
            return {"agg_value": privleak(logs["mia_min_k"]["agg_value"], self.reference_auc)}

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
        questions, answers, owners = _flatten(records, answer_field)
        scores = self.scorer.scores(questions, answers, desc=name)

        items: dict[str, dict] = {str(index): {"prob": [], "avg_loss": []} for index in range(len(records))}
        for owner, score in zip(owners, scores):
            items[str(owner)]["prob"].append(float(np.exp(-score.avg_loss)))
            items[str(owner)]["avg_loss"].append(score.avg_loss)
        if not isinstance(records[0][answer_field], list):
            items = {key: {"prob": item["prob"][0], "avg_loss": item["avg_loss"][0]} for key, item in items.items()}
        # As OpenUnlearning does, average an item's answers first, then the items.
        agg_value = float(np.mean([np.mean(item["prob"]) for item in items.values()]))
        return {"agg_value": agg_value, "value_by_index": items}

    def rouge(self, name: str, split: str, answer_field: str) -> dict:
        """Compare the greedy answer to each question with ``answer_field`` (one answer or a list)."""
        records = self.records(split)
        generations = dict(zip([r["question"] for r in records],
                               self.scorer.generations([r["question"] for r in records], desc=name)))
        questions, truths, owners = _flatten(records, answer_field)
        scores, _ = rouge([generations[q] for q in questions], truths)

        keys = ("rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation")
        items: dict[str, dict] = {str(index): {key: [] for key in keys} for index in range(len(records))}
        for owner, question, truth, score in zip(owners, questions, truths, scores):
            values = {**score, "input": self._prompt(question), "ground_truth": truth, "generation": generations[question]}
            for key in keys:
                items[str(owner)][key].append(values[key])
        if not isinstance(records[0][answer_field], list):
            items = {index: {key: item[key][0] for key in keys} for index, item in items.items()}
        agg_value = float(np.mean([np.mean(item["rougeL_recall"]) for item in items.values()]))
        return {"agg_value": agg_value, "value_by_index": items}

    def mia(self, name: str, attack: str) -> dict:
        """Attack ``{forget}_perturbed`` answers (members) against ``{holdout}`` answers (non-members)."""
        if self.holdout_split is None:
            raise ValueError(f"{name} needs holdout_split (for example holdout10 for forget10): set it or drop the metric")
        sides = {}
        for side, split in (("forget", FORGET_SPLIT), ("holdout", HOLDOUT_SPLIT)):
            scores = self.attack_scores(attack, split, desc=f"{name} {side}")
            sides[side] = {
                "agg_value": float(np.mean(scores)),
                "value_by_index": {str(i): {"score": score} for i, score in enumerate(scores)},
            }
        auc = mia.auc(
            [item["score"] for item in sides["forget"]["value_by_index"].values()],
            [item["score"] for item in sides["holdout"]["value_by_index"].values()],
        )
        return {"agg_value": auc, "auc": auc, **sides}

    def attack_scores(self, attack: str, split: str, desc: str) -> list[float]:
        """Return the attack score (higher means non-member) of every record's answer in ``split``."""
        records = self.records(split)
        questions, answers = [r["question"] for r in records], [r["answer"] for r in records]
        if attack == "gradnorm":
            return [mia.gradnorm_score(norms) for norms in self.scorer.grad_norms(questions, answers, self.gradnorm_p, desc)]

        scores = self.scorer.scores(questions, answers, desc=desc)
        if attack == "loss":
            return [mia.loss_score(s.token_logprobs) for s in scores]
        if attack == "zlib":
            decode = self.scorer.tokenizer.decode
            return [mia.zlib_score(s.token_logprobs, decode(s.target_ids, skip_special_tokens=True)) for s in scores]
        if attack == "min_k":
            return [mia.min_k_score(s.token_logprobs[:-1], self.mia_k) for s in scores]
        if attack == "min_k_plus_plus":
            return [mia.min_k_plus_plus_score(s.token_logprobs[:-1], s.vocab_mean[:-1], s.vocab_var[:-1], self.mia_k)
                    for s in scores]
        if attack == "reference":
            if self.reference is None:
                raise ValueError("mia_reference needs a reference model: set reference_model_path (eval.tofu.reference_model_path)")
            reference_losses = self.reference.avg_losses(self.split_name(split), self.scorer.examples(questions, answers))
            return [mia.reference_score(mia.loss_score(s.token_logprobs), ref) for s, ref in zip(scores, reference_losses)]
        raise ValueError(f"unknown attack {attack!r}: choose one of loss, zlib, min_k, min_k_plus_plus, reference, gradnorm")

    def memorization(self, name: str, split: str, variant: str) -> dict:
        metric = {"exact_memorization": memorization.exact_memorization,
                  "extraction_strength": memorization.extraction_strength}[variant]
        records = self.records(split)
        scores = self.scorer.scores([r["question"] for r in records], [r["answer"] for r in records], desc=name)
        values = [metric(s.greedy_match[:-1]) for s in scores]
        return {"agg_value": float(np.mean(values)),
                "value_by_index": {str(i): {"score": value} for i, value in enumerate(values)}}

    def _prompt(self, question: str) -> str:
        return format_prompt(self.scorer.tokenizer, question, self.scorer.template_args)


def _flatten(records: list[dict], answer_field: str) -> tuple[list[str], list[str], list[int]]:
    """Return one (question, answer, record index) row per answer, for a field with one answer or a list."""
    questions, answers, owners = [], [], []
    for index, record in enumerate(records):
        values = record[answer_field] if isinstance(record[answer_field], list) else [record[answer_field]]
        questions.extend([record["question"]] * len(values))
        answers.extend(values)
        owners.extend([index] * len(values))
    return questions, answers, owners


def _paired_losses(logs: Mapping[str, Any], correct_name: str, wrong_name: str):
    """Return the item keys, correct-answer losses and wrong-answer loss lists of two stored probability metrics."""
    correct_items = logs[correct_name]["value_by_index"]
    wrong_items = logs[wrong_name]["value_by_index"]
    if correct_items.keys() != wrong_items.keys():
        raise ValueError(f"{correct_name} and {wrong_name} cover different items: rerun with overwrite=True")
    keys = list(correct_items)
    correct = [correct_items[key]["avg_loss"] for key in keys]
    wrong = [wrong_items[key]["avg_loss"] for key in keys]
    return keys, correct, wrong
