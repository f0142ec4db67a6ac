"""Prompt formatting and tokenisation of question-answer pairs.

Two templates, chosen by ``model.template_args.apply_chat_template``:

* chat: the tokenizer's own chat template, with an optional system prompt, the
  question as the user turn and the answer as the assistant turn;
* plain: ``"Question: {question}\\nAnswer: "`` followed by the answer.

Training labels are ``-100`` on every prompt and padding position, so losses
and answer probabilities average over answer tokens only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IGNORE_INDEX = -100


def format_prompt(tokenizer, question: str, template_args: Mapping[str, Any]) -> str:
    """Format ``question`` as the text that precedes the answer."""
    if template_args.get("apply_chat_template", True) and tokenizer.chat_template:
        messages = []
        if template_args.get("system_prompt"):
            messages.append({"role": "system", "content": template_args["system_prompt"]})
        messages.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"Question: {question}\nAnswer: "


def tokenize_qa(
    tokenizer, question: str, answer: str, template_args: Mapping[str, Any], max_length: int = 512
) -> dict[str, list[int]]:
    """Tokenise one question-answer pair for causal LM training or scoring.

    Returns ``input_ids``, ``attention_mask`` and ``labels`` (prompt positions
    set to ``IGNORE_INDEX``). The answer ends with the EOS token. A pair longer
    than ``max_length`` keeps the whole prompt and truncates the answer; a
    prompt of ``max_length`` tokens or more raises ``ValueError``.
    """
    prompt = format_prompt(tokenizer, question, template_args)
    prompt_ids = tokenizer(prompt, add_special_tokens=not _has_bos(tokenizer, prompt))["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        raise ValueError(
            f"prompt of {len(prompt_ids)} tokens does not fit max_length={max_length}: "
            "raise data max_length or shorten the system prompt"
        )
    answer_ids = answer_ids[: max_length - len(prompt_ids)]
    input_ids = prompt_ids + answer_ids
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    }


def _has_bos(tokenizer, text: str) -> bool:
    # Chat templates usually write the BOS token themselves, so adding it again would double it.
    return bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
