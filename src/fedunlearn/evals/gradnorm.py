"""Per-sequence gradient norms for the GradNorm membership inference attack (arXiv:2402.17012).

For one sequence, the loss is the mean negative log-likelihood of its target
tokens except the last (the end-of-sequence token, as OpenUnlearning's
``tokenwise_logprobs`` drops it). Its gradient is taken with respect to every
parameter of the model, frozen ones included: the base weights under a LoRA
adapter as well as the adapter. So a LoRA model and the same weights merged
into a full model give comparable numbers. Each sequence needs its own
backward pass, so this costs about three forward passes per sequence and runs
only when ``mia_gradnorm`` is requested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedunlearn.data.template import IGNORE_INDEX

NORMS = (1.0, 2.0, float("inf"))


def parameter_grad_norms(
    model: torch.nn.Module,
    examples: Sequence[Mapping[str, list[int]]],
    p: float = 2.0,
    show_progress: bool = False,
    desc: str = "Gradient norms",
) -> list[np.ndarray]:
    """Return, for each example, the p-norm of the loss gradient of every parameter tensor.

    The model runs in eval mode (no dropout) on its own device. Afterwards
    every parameter has its former ``requires_grad`` flag and ``.grad`` back,
    so calling this between training steps does not disturb them.

    Raises ``ValueError`` for a ``p`` other than 1, 2 or infinity, or an example
    with fewer than two target tokens (none would remain once the last is dropped).
    """
    if float(p) not in NORMS:
        raise ValueError(f"invalid p-norm {p}: choose 1, 2 or inf")
    for index, example in enumerate(examples):
        if sum(label != IGNORE_INDEX for label in example["labels"][1:]) < 2:
            raise ValueError(f"example {index} has fewer than 2 target tokens: GradNorm drops the last one")

    parameters = list(model.parameters())
    saved = [(param.requires_grad, param.grad) for param in parameters]
    device = parameters[0].device
    was_training = model.training
    model.eval()
    norms = []
    try:
        for param in parameters:
            param.requires_grad_(True)
            param.grad = None
        for example in tqdm(examples, desc=desc, disable=not show_progress):
            loss = _sequence_loss(model, example, device)
            loss.backward()
            norms.append(np.array([param.grad.detach().float().norm(p=float(p)).item()
                                   for param in parameters if param.grad is not None]))
            for param in parameters:
                param.grad = None
    finally:
        for param, (requires_grad, grad) in zip(parameters, saved):
            param.requires_grad_(requires_grad)
            param.grad = grad
        if was_training:
            model.train()
    return norms


def _sequence_loss(model, example, device) -> torch.Tensor:
    input_ids = torch.tensor([example["input_ids"]], device=device)
    logits = model(input_ids=input_ids).logits[0, :-1].float()
    targets = torch.tensor(example["labels"][1:], device=device)
    positions = (targets != IGNORE_INDEX).nonzero(as_tuple=True)[0][:-1]
    token_logprobs = F.log_softmax(logits[positions], dim=-1).gather(1, targets[positions, None])
    return -token_logprobs.mean()
