"""Greedy generation for the ROUGE metrics: answers to TOFU questions and continuations of MUSE prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from fedunlearn.data.collator import pad_batch
from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa


def generate_answers(
    model: torch.nn.Module,
    tokenizer,
    questions: Sequence[str],
    template_args: Mapping[str, Any],
    batch_size: int = 16,
    max_new_tokens: int = 200,
    show_progress: bool = False,
    desc: str = "Generating answers",
) -> list[str]:
    """Generate an answer to each question by greedy decoding and return the answers in input order.

    Prompts are the ones ``answer_nll`` scores (``format_prompt`` with
    ``template_args``); ``generate_continuations`` decodes them.
    """
    prompts = [_prompt_ids(tokenizer, question, template_args) for question in questions]
    return generate_continuations(model, tokenizer, prompts, batch_size, max_new_tokens, show_progress, desc)


def generate_continuations(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    batch_size: int = 16,
    max_new_tokens: int = 200,
    show_progress: bool = False,
    desc: str = "Generating",
) -> list[str]:
    """Continue each tokenised prompt by greedy decoding and return the decoded continuations in input order.

    Prompts are sorted by length and left-padded into batches of
    ``batch_size``. Decoding stops at the model's EOS token or after
    ``max_new_tokens`` tokens. Each continuation is the decoded new tokens up to
    the first EOS, without special tokens and without surrounding whitespace.

    Padding is done here, so ``tokenizer.padding_side`` is never changed. The
    model runs in eval mode on its own device and goes back to train mode
    afterwards if it was training. ``desc`` labels the progress bar that
    ``show_progress`` turns on.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_token_id is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token before generating")

    prompts = [list(prompt) for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    eos_ids = _eos_token_ids(model, tokenizer)
    device = next(model.parameters()).device
    answers: list[str | None] = [None] * len(prompts)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(prompts), desc=desc, disable=not show_progress) as progress:
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                batch = pad_batch(
                    [{"input_ids": prompts[i], "attention_mask": [1] * len(prompts[i])} for i in indices],
                    pad_token_id,
                    padding_side="left",
                )
                batch = {key: value.to(device) for key, value in batch.items()}
                output = model.generate(
                    **batch,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_token_id,
                    eos_token_id=eos_ids,
                    # Sampling settings from the model's generation_config would only trigger warnings.
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
                new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
                for row, index in enumerate(indices):
                    answers[index] = _decode_until_eos(tokenizer, new_tokens[row], eos_ids)
                progress.update(len(indices))
    finally:
        if was_training:
            model.train()
    return answers


def _prompt_ids(tokenizer, question: str, template_args: Mapping[str, Any]) -> list[int]:
    # tokenize_qa marks exactly the prompt tokens with IGNORE_INDEX, so generation starts
    # from the same tokens that scoring conditions on, BOS handling included.
    example = tokenize_qa(tokenizer, question, "", template_args, max_length=1_000_000)
    return [token for token, label in zip(example["input_ids"], example["labels"]) if label == IGNORE_INDEX]


def _eos_token_ids(model, tokenizer) -> list[int]:
    """Collect the EOS ids of the model's generation config and of the tokenizer."""
    ids = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids.update(config_eos if isinstance(config_eos, (list, tuple)) else [config_eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def _decode_until_eos(tokenizer, tokens: list[int], eos_ids: list[int]) -> str:
    for position, token in enumerate(tokens):
        if token in eos_ids:
            tokens = tokens[:position]
            break
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()
