"""Hand computations of per-token statistics: one unpadded forward pass, read position by position in float64."""

from __future__ import annotations

import copy

import torch

from fedunlearn.data.template import IGNORE_INDEX, tokenize_qa


def manual_token_stats(model, tokenizer, question: str, answer: str, template_args) -> dict[str, list]:
    """Return, per answer token, its id, log p, whether it is the argmax, and the mean and variance of log p."""
    example = tokenize_qa(tokenizer, question, answer, template_args)
    ids = example["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    stats = {"target_ids": [], "logprobs": [], "match": [], "mean": [], "var": []}
    for t, label in enumerate(example["labels"]):
        if label == IGNORE_INDEX:
            continue
        log_p = torch.log_softmax(logits[t - 1], dim=-1)
        p = log_p.exp()
        mean = float((p * log_p).sum())
        stats["target_ids"].append(ids[t])
        stats["logprobs"].append(float(log_p[ids[t]]))
        stats["match"].append(int(log_p.argmax()) == ids[t])
        stats["mean"].append(mean)
        stats["var"].append(float((p * log_p**2).sum()) - mean**2)
    return stats


def manual_norms(model, example, p):
    """Backpropagate -mean log p over the answer tokens but the last, on a copy with every parameter trainable."""
    model = copy.deepcopy(model)
    for param in model.parameters():
        param.requires_grad_(True)
    ids = example["input_ids"]
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    positions = [t for t, label in enumerate(example["labels"]) if label != IGNORE_INDEX][:-1]
    logprobs = [torch.log_softmax(logits[t - 1], dim=-1)[ids[t]] for t in positions]
    (-torch.stack(logprobs).mean()).backward()
    return [param.grad.norm(p=p).item() for param in model.parameters() if param.grad is not None]
