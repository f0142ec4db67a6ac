"""Batch padding for question-answer examples."""

from __future__ import annotations

import torch

from fedunlearn.data.template import IGNORE_INDEX


def pad_batch(examples: list[dict], pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad ``input_ids``, ``attention_mask`` and ``labels`` to the longest example.

    Padding positions get ``pad_token_id``, attention 0 and label ``IGNORE_INDEX``.
    Keys other than these three are stacked as tensors when they are numbers.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    width = max(len(e["input_ids"]) for e in examples)
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch: dict[str, torch.Tensor] = {}
    for key, value in fill.items():
        if key not in examples[0]:
            continue
        rows = []
        for example in examples:
            pad = [value] * (width - len(example[key]))
            rows.append(pad + list(example[key]) if padding_side == "left" else list(example[key]) + pad)
        batch[key] = torch.tensor(rows, dtype=torch.long)
    for key in examples[0]:
        if key not in fill and isinstance(examples[0][key], (int, float)):
            batch[key] = torch.tensor([e[key] for e in examples])
    return batch
