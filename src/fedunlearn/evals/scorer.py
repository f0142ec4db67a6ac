"""One model's likelihood statistics and greedy generations, each computed once per distinct text.

TOFU reads the same question-answer pairs in several metrics: ``forget10`` and
``forget10_perturbed`` contain the same pairs, and probability, truth ratio, the
membership inference attacks and the memorization metrics all read the answer
log-probabilities. It also generates the same answers for the plain,
paraphrased and perturbed ROUGE metrics. A ``Scorer`` keys its results by text, so every
pair is scored once and every question is answered once per evaluation, and
the per-client evaluation reuses what the TOFU metrics computed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from fedunlearn.data.template import tokenize_qa
from fedunlearn.evals.generation import generate_answers
from fedunlearn.evals.gradnorm import parameter_grad_norms
from fedunlearn.evals.scoring import SequenceScores, pad_token_id, score_examples


class Scorer:
    """Cache of ``SequenceScores``, generations and gradient norms of ``model``.

    Args:
        template_args: prompt template settings passed to ``format_prompt``.
        batch_size: sequences per forward pass when scoring.
        generation_batch_size: prompts per ``generate`` call.
        max_new_tokens: generation limit.
        max_length: token limit of a question-answer pair (see ``tokenize_qa``).

    ``timings`` sums the seconds spent in ``scoring``, ``generation`` and
    ``gradnorm`` (the work done, not the cache hits).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        template_args: Mapping[str, Any],
        *,
        batch_size: int = 16,
        generation_batch_size: int = 16,
        max_new_tokens: int = 200,
        max_length: int = 512,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.template_args = dict(template_args)
        self.batch_size = batch_size
        self.generation_batch_size = generation_batch_size
        self.max_new_tokens = max_new_tokens
        self.max_length = max_length
        self.timings = {"scoring": 0.0, "generation": 0.0, "gradnorm": 0.0}
        self._scores: dict[tuple[str, str], SequenceScores] = {}
        self._generations: dict[str, str] = {}
        self._grad_norms: dict[tuple[str, str, float], np.ndarray] = {}

    def examples(self, questions: Sequence[str], answers: Sequence[str]) -> list[dict[str, list[int]]]:
        """Tokenise question-answer pairs the way every metric scores them."""
        if len(questions) != len(answers):
            raise ValueError(f"got {len(questions)} questions but {len(answers)} answers: pass one answer per question")
        return [tokenize_qa(self.tokenizer, q, a, self.template_args, self.max_length) for q, a in zip(questions, answers)]

    def scores(self, questions: Sequence[str], answers: Sequence[str], desc: str = "Scoring") -> list[SequenceScores]:
        """Return the ``SequenceScores`` of each answer given its question, scoring only pairs not seen before."""
        if len(questions) != len(answers):
            raise ValueError(f"got {len(questions)} questions but {len(answers)} answers: pass one answer per question")
        keys = list(zip(questions, answers))
        missing = _unique([key for key in keys if key not in self._scores])
        if missing:
            # TODO: a TOFU question's answer, paraphrase and perturbed answers share its prompt (about 48 of 84
            # tokens for SmolLM2); scoring the prompt once and reusing its KV cache would save up to half the work.
            examples = self.examples([q for q, _ in missing], [a for _, a in missing])
            with self._timed("scoring"):
                results = score_examples(self.model, examples, pad_token_id(self.tokenizer), self.batch_size,
                                         show_progress=True, desc=desc)
            self._scores.update(zip(missing, results))
        return [self._scores[key] for key in keys]

    def generations(self, questions: Sequence[str], desc: str = "Generating") -> list[str]:
        """Return a greedy answer to each question, generating only for questions not seen before."""
        missing = _unique([q for q in questions if q not in self._generations])
        if missing:
            with self._timed("generation"):
                answers = generate_answers(self.model, self.tokenizer, missing, self.template_args,
                                           batch_size=self.generation_batch_size, max_new_tokens=self.max_new_tokens,
                                           show_progress=True, desc=desc)
            self._generations.update(zip(missing, answers))
        return [self._generations[q] for q in questions]

    def grad_norms(self, questions: Sequence[str], answers: Sequence[str], p: float, desc: str = "Gradient norms") -> list[np.ndarray]:
        """Return each pair's per-parameter gradient p-norms (see ``parameter_grad_norms``)."""
        keys = [(q, a, float(p)) for q, a in zip(questions, answers)]
        missing = _unique([key for key in keys if key not in self._grad_norms])
        if missing:
            examples = self.examples([q for q, _, _ in missing], [a for _, a, _ in missing])
            with self._timed("gradnorm"):
                norms = parameter_grad_norms(self.model, examples, p=p, show_progress=True, desc=desc)
            self._grad_norms.update(zip(missing, norms))
        return [self._grad_norms[key] for key in keys]

    def counts(self) -> dict[str, int]:
        """Return how many distinct pairs were scored, questions answered and gradient norms taken."""
        return {"scored": len(self._scores), "generated": len(self._generations), "gradients": len(self._grad_norms)}

    @contextmanager
    def _timed(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] += time.perf_counter() - started


def _unique(keys: list) -> list:
    return list(dict.fromkeys(keys))
