"""MUSE evaluation with OpenUnlearning's metric definitions, key names and file layout.

Metrics, the MUSE split each reads (``fedunlearn.data.muse``) and its defaults:

* ``forget_verbmem_ROUGE``: ``verbmem/forget``. The model continues each
  ``prompt`` greedily for ``verbmem_max_new_tokens`` (128) tokens; ROUGE-L F1
  against the first 128 tokens of the true continuation ``gt``.
* ``forget_knowmem_ROUGE`` and ``retain_knowmem_ROUGE``: ``knowmem/forget_qa``
  and ``knowmem/retain_qa``, each question asked after all the answered
  examples of ``forget_qa_icl`` or ``retain_qa_icl``. Greedy answers of at most
  ``knowmem_max_new_tokens`` (32) tokens, cut at the first stop string; ROUGE-L
  F1 against the answer.
* ``extraction_strength``: ``verbmem/forget`` under teacher forcing, the share
  of the continuation that greedy prediction reproduces from some position to
  the end (``fedunlearn.evals.metrics.memorization``).
* ``mia_min_k``: Min-K% (``k = privleak_k``, 0.4) membership inference AUC of
  ``privleak/forget`` (members) against ``privleak/holdout`` (non-members),
  each text cut to ``max_length`` (2048) tokens.
* ``privleak``: ``mia_min_k`` relative to the retain model's ``mia_min_k``, read
  from ``retain_logs_path`` (``fedunlearn.evals.metrics.privleak``).

As in OpenUnlearning, Min-K% and extraction strength leave out the last target
token of each sequence (its token-wise log-probabilities stop one short).

Output, in ``output_dir``:

* ``MUSE_EVAL.json`` maps each metric to ``{"agg_value", "value_by_index"}``.
  A ROUGE item is ``{"rouge1_recall", "rougeL_f1", "rougeL_recall", "input",
  "ground_truth", "generation"}`` and an extraction-strength item ``{"score"}``.
  ``mia_min_k`` is ``{"agg_value", "auc", "forget", "holdout"}``, each side
  ``{"agg_value", "value_by_index": {"0": {"score"}, ...}}`` with the mean
  Min-K% score as ``agg_value``. ``privleak`` holds only ``agg_value``. The
  file is rewritten after every metric.
* ``MUSE_SUMMARY.json`` maps each metric computed in this call to its
  ``agg_value``. It is deleted when a run starts and written when it completes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedunlearn.data.muse import encode_prompt, fewshot_prompt, load_split, pretraining_example, special_prefix
from fedunlearn.data.template import IGNORE_INDEX
from fedunlearn.evals.generation import generate_continuations
from fedunlearn.evals.metrics.memorization import extraction_strength
from fedunlearn.evals.metrics.mia import DEFAULT_K, auc, min_k_score
from fedunlearn.evals.metrics.muse_rouge import cut_at_stop_strings, rouge_l_f1
from fedunlearn.evals.metrics.privleak import privleak, reference_auc_from_logs
from fedunlearn.evals.scoring import pad_token_id, score_examples
from fedunlearn.evals.selection import select_metrics
from fedunlearn.utils.io import write_json

log = logging.getLogger(__name__)

EVAL_FILE = "MUSE_EVAL.json"
SUMMARY_FILE = "MUSE_SUMMARY.json"
DEFAULT_METRICS = ("forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "forget_verbmem_ROUGE", "privleak", "extraction_strength")
# Listed in computation order: privleak reads mia_min_k.
METRICS = ("forget_verbmem_ROUGE", "forget_knowmem_ROUGE", "retain_knowmem_ROUGE", "extraction_strength", "mia_min_k",
           "privleak")
PREREQUISITES = {"privleak": ("mia_min_k",)}
KNOWMEM_SPLITS = {
    "forget_knowmem_ROUGE": ("knowmem/forget_qa", "knowmem/forget_qa_icl"),
    "retain_knowmem_ROUGE": ("knowmem/retain_qa", "knowmem/retain_qa_icl"),
}


@dataclass(frozen=True)
class MuseSettings:
    """How MUSE is evaluated; the defaults are OpenUnlearning's.

    Args:
        batch_size: sequences per forward pass when scoring.
        generation_batch_size: prompts per ``generate`` call.
        verbmem_max_new_tokens: continuation length, in tokens, for ``forget_verbmem_ROUGE``;
            the true continuation is cut to the same length.
        knowmem_max_new_tokens: answer length limit, in tokens, for the knowmem metrics.
        privleak_k: the share of lowest token log-probabilities that Min-K% averages.
        max_length: token limit of a ``privleak`` text.
        max_samples: evaluate only the first ``max_samples`` items of each split (not of
            the few-shot examples); results are then not comparable to the benchmark.
        autocast_dtype: dtype of ``torch.autocast`` for scoring, or None.
    """

    batch_size: int = 8
    generation_batch_size: int = 8
    verbmem_max_new_tokens: int = 128
    knowmem_max_new_tokens: int = 32
    privleak_k: float = DEFAULT_K
    max_length: int = 2048
    max_samples: int | None = None
    autocast_dtype: torch.dtype | None = None


def evaluate_muse(
    model,
    tokenizer,
    template_args: Mapping[str, Any],
    *,
    corpus: str,
    output_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    retain_logs_path: str | os.PathLike | None = None,
    settings: MuseSettings = MuseSettings(),
    metrics: Iterable[str] | None = None,
    overwrite: bool = True,
) -> dict[str, float | None]:
    """Evaluate ``model`` on MUSE-``corpus``, write ``MUSE_EVAL.json`` and ``MUSE_SUMMARY.json``, return the summary.

    Args:
        template_args: prompt template settings for the few-shot questions.
        corpus: ``News`` or ``Books``.
        data_dir: folder holding ``muse/<corpus>/``; None reads ``$FEDUNLEARN_DATA_DIR``
            or else the Hugging Face Hub.
        retain_logs_path: ``MUSE_EVAL.json`` of the retain model, whose ``mia_min_k``
            is the reference of ``privleak``. None compares against an AUC of 0.5.
        metrics: metrics to compute and summarise (default ``DEFAULT_METRICS``); their
            prerequisites are computed, stored and summarised too.
        overwrite: when False and ``MUSE_EVAL.json`` exists, reuse stored model-based
            metrics whose item counts match this run. ``privleak`` is always recomputed.

    Raises:
        ValueError: an unknown metric, an invalid setting, or a ``retain_logs_path``
            file that is not valid JSON or has no ``mia_min_k`` value.
        FileNotFoundError: ``retain_logs_path`` is set but does not exist.
    """
    selected = select_metrics(metrics, order=METRICS, defaults=DEFAULT_METRICS, prerequisites=PREREQUISITES,
                              benchmark="MUSE")
    if settings.max_samples is not None and settings.max_samples < 1:
        raise ValueError(f"max_samples must be a positive number of items or None, got {settings.max_samples}")
    if not 0 < settings.privleak_k <= 1:
        raise ValueError(f"privleak k must be a share of tokens in (0, 1], got {settings.privleak_k}")
    reference_auc = None
    if "privleak" in selected and retain_logs_path is not None:
        reference_auc = reference_auc_from_logs(_read_logs(Path(retain_logs_path), "retain_logs_path"))

    output_dir = Path(output_dir)
    eval_path, summary_path = output_dir / EVAL_FILE, output_dir / SUMMARY_FILE
    summary_path.unlink(missing_ok=True)
    logs = {} if overwrite or not eval_path.is_file() else _read_logs(eval_path, "stored results")
    if settings.max_samples is not None:
        log.warning("Evaluating only the first %d items of each MUSE split: not comparable to full MUSE results",
                    settings.max_samples)
    log.info("Evaluating MUSE-%s metrics %s, writing to %s", corpus, selected, eval_path)

    evaluator = _Evaluator(model, tokenizer, template_args, corpus, data_dir, settings)
    for name in selected:
        if name != "privleak" and not overwrite and evaluator.is_reusable(name, logs.get(name)):
            log.info("Reusing stored %s = %s", name, logs[name]["agg_value"])
            continue
        if name == "privleak":
            logs[name] = {"agg_value": privleak(logs["mia_min_k"]["agg_value"], reference_auc)}
        else:
            logs[name] = evaluator.compute(name)
        log.info("%s = %s", name, logs[name]["agg_value"])
        write_json(eval_path, dict(sorted(logs.items())))

    summary = {name: logs[name]["agg_value"] for name in selected}
    write_json(summary_path, summary)
    log.info("Wrote MUSE summary to %s", summary_path)
    return summary




def _read_logs(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} {str(path)!r} not found: point it at the MUSE_EVAL.json that fedunlearn eval wrote "
            "for the retain model, or set it to null"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{what} {str(path)!r} is not valid JSON ({err.msg}, line {err.lineno}): "
            "point it at a MUSE_EVAL.json written by fedunlearn eval or OpenUnlearning"
        ) from None


@dataclass
class _Evaluator:
    """Run the model-based metrics, loading each split once and slicing it to ``max_samples``."""

    model: Any
    tokenizer: Any
    template_args: Mapping[str, Any]
    corpus: str
    data_dir: str | os.PathLike | None
    settings: MuseSettings
    _records: dict[str, list[dict]] = field(default_factory=dict)

    def records(self, split: str, limit: bool = True) -> list[dict]:
        if split not in self._records:
            self._records[split] = load_split(self.corpus, split, self.data_dir)
        return self._records[split][: self.settings.max_samples] if limit else self._records[split]

    def is_reusable(self, name: str, stored: dict | None) -> bool:
        """Return whether a stored result covers as many items as this run scores."""
        if stored is None:
            return False
        if name == "mia_min_k":
            found = [len(stored.get(side, {}).get("value_by_index") or {}) for side in ("forget", "holdout")]
            expected = [len(self.records(f"privleak/{side}")) for side in ("forget", "holdout")]
        else:
            split = KNOWMEM_SPLITS[name][0] if name in KNOWMEM_SPLITS else "verbmem/forget"
            found, expected = len(stored.get("value_by_index") or {}), len(self.records(split))
        if found != expected:
            log.warning("Recomputing stored %s: it has %s items, this run scores %s", name, found, expected)
            return False
        return True

    def compute(self, name: str) -> dict:
        if name == "forget_verbmem_ROUGE":
            return self.verbmem_rouge(name)
        if name in KNOWMEM_SPLITS:
            return self.knowmem_rouge(name, *KNOWMEM_SPLITS[name])
        if name == "extraction_strength":
            return self.extraction_strength(name)
        return self.mia_min_k(name)

    def verbmem(self) -> tuple[list[list[int]], list[list[int]]]:
        """Return the prompt tokens and the true continuation's first ``verbmem_max_new_tokens`` tokens."""
        records = self.records("verbmem/forget")
        prompts = [encode_prompt(self.tokenizer, record["prompt"]) for record in records]
        limit = self.settings.verbmem_max_new_tokens
        truths = [self.tokenizer(record["gt"], add_special_tokens=False)["input_ids"][:limit] for record in records]
        return prompts, truths

    def verbmem_rouge(self, name: str) -> dict:
        prompts, truths = self.verbmem()
        generations = generate_continuations(self.model, self.tokenizer, prompts, self.settings.generation_batch_size,
                                             self.settings.verbmem_max_new_tokens, show_progress=True, desc=name)
        ground_truths = [self.tokenizer.decode(truth, skip_special_tokens=True) for truth in truths]
        inputs = [record["prompt"] for record in self.records("verbmem/forget")]
        return _rouge_log(inputs, ground_truths, generations)

    def knowmem_rouge(self, name: str, split: str, shots_split: str) -> dict:
        shots = self.records(shots_split, limit=False)
        records = self.records(split)
        inputs = [fewshot_prompt(self.tokenizer, shots, record["question"], self.template_args) for record in records]
        prompts = [encode_prompt(self.tokenizer, text) for text in inputs]
        generations = generate_continuations(self.model, self.tokenizer, prompts, self.settings.generation_batch_size,
                                             self.settings.knowmem_max_new_tokens, show_progress=True, desc=name)
        answers = [cut_at_stop_strings(generation) for generation in generations]
        return _rouge_log(inputs, [record["answer"] for record in records], answers)

    def extraction_strength(self, name: str) -> dict:
        prompts, truths = self.verbmem()
        examples = [
            {"input_ids": prompt + truth, "attention_mask": [1] * (len(prompt) + len(truth)),
             "labels": [IGNORE_INDEX] * len(prompt) + truth}
            for prompt, truth in zip(prompts, truths)
        ]
        items = {}
        for index, scores in enumerate(self.score(examples, name)):
            matches = scores.greedy_match[:-1]
            if matches.size == 0:
                # OpenUnlearning gives 0 to a sequence without a scored token; warn so it is not silent.
                log.warning("%s: item %d has a one-token continuation, scored 0", name, index)
                items[str(index)] = {"score": 0.0}
            else:
                items[str(index)] = {"score": extraction_strength(matches)}
        return {"agg_value": float(np.mean([item["score"] for item in items.values()])), "value_by_index": items}

    def mia_min_k(self, name: str) -> dict:
        sides = {}
        for side in ("forget", "holdout"):
            width = self.settings.max_length - len(special_prefix(self.tokenizer))
            examples = [
                pretraining_example(self.tokenizer, self.tokenizer(record["text"], add_special_tokens=False)["input_ids"][:width])
                for record in self.records(f"privleak/{side}")
            ]
            scores = [min_k_score(s.token_logprobs[:-1], self.settings.privleak_k)
                      for s in self.score(examples, f"{name} {side}")]
            sides[side] = {
                "agg_value": float(np.mean(scores)),
                "value_by_index": {str(i): {"score": score} for i, score in enumerate(scores)},
            }
        members = [item["score"] for item in sides["forget"]["value_by_index"].values()]
        nonmembers = [item["score"] for item in sides["holdout"]["value_by_index"].values()]
        value = auc(members, nonmembers)
        return {"agg_value": value, "auc": value, **sides}

    def score(self, examples: list[dict], desc: str):
        return score_examples(self.model, examples, pad_token_id(self.tokenizer), self.settings.batch_size,
                              show_progress=True, autocast_dtype=self.settings.autocast_dtype, desc=desc)


def _rouge_log(inputs: list[str], ground_truths: list[str], generations: list[str]) -> dict:
    scores, agg_value = rouge_l_f1(generations, ground_truths)
    items = {
        str(index): {**score, "input": text, "ground_truth": truth, "generation": generation}
        for index, (score, text, truth, generation) in enumerate(zip(scores, inputs, ground_truths, generations))
    }
    return {"agg_value": agg_value, "value_by_index": items}
