"""The reference model: the model at the start of unlearning, without a second copy of a LoRA model's base."""

import torch

from fedunlearn.losses import nll_loss
from fedunlearn.unlearn.methods.base import Reference

from .hand import logits_of, trainable_grad


def perturb_trainable(model):
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05)


def test_lora_reference_copies_only_adapter(lora_model):
    reference = Reference(lora_model)
    trainable = {n: p for n, p in lora_model.named_parameters() if p.requires_grad}
    total_bytes = sum(p.numel() * p.element_size() for p in lora_model.parameters())

    assert reference.model_copy is None
    assert reference.state.keys() == trainable.keys()
    assert all("lora_" in name for name in reference.state)
    assert reference.nbytes() == sum(p.numel() * p.element_size() for p in trainable.values())
    assert reference.nbytes() < 0.05 * total_bytes


def test_lora_reference_is_start(lora_model, retain_batch):
    start = logits_of(lora_model, retain_batch)
    reference = Reference(lora_model)
    perturb_trainable(lora_model)
    moved = logits_of(lora_model, retain_batch)

    output = reference(lora_model, retain_batch).logits.double()

    assert not torch.allclose(moved, start, atol=1e-3)
    assert torch.allclose(output, start, atol=1e-5)
    assert torch.equal(logits_of(lora_model, retain_batch), moved)  # the model's own weights are untouched


def test_reference_restores_training_mode(lora_model, retain_batch):
    reference = Reference(lora_model)
    lora_model.train()

    reference(lora_model, retain_batch)

    assert lora_model.training


def test_full_model_reference_is_deep_copy(model, retain_batch):
    start = logits_of(model, retain_batch)
    reference = Reference(model)
    perturb_trainable(model)

    output = reference(model, retain_batch).logits.double()

    assert reference.model_copy is not model
    assert not any(p.requires_grad for p in reference.model_copy.parameters())
    assert reference.nbytes() == sum(p.numel() * p.element_size() for p in model.parameters())
    assert torch.allclose(output, start, atol=1e-5)


def test_reference_pass_keeps_graph_valid(lora_model, retain_batch):
    # A reference pass between the forward and the backward of the current step must not change
    # the gradient: the reference substitutes parameters instead of writing into them.
    reference = Reference(lora_model)
    perturb_trainable(lora_model)
    expected = trainable_grad(lora_model, nll_loss(lora_model, retain_batch))

    loss = nll_loss(lora_model, retain_batch)
    reference(lora_model, retain_batch)
    actual = trainable_grad(lora_model, loss)

    assert torch.equal(actual, expected)


def test_reference_runs_without_gradient(lora_model, retain_batch):
    output = Reference(lora_model)(lora_model, retain_batch)

    assert not output.logits.requires_grad
