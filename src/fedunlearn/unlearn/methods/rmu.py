"""Representation misdirection for unlearning, RMU (Li et al., 2024, "The WMDP
Benchmark: Measuring and Reducing Malicious Use With Unlearning").

    c = steering_coeff * u / ||u||,   u ~ Uniform[0, 1)^d drawn once from the seed
    L = gamma * A(h_theta(forget), c) + alpha * A(h_theta(retain), h_ref(retain))
    A(h, h') = mean_i [ (1 / n_i) sum_{t in answer(i)} (1 / d) ||h_t - h'_t||^2 ]

``h`` is the output (hidden states, dimension ``d``) of decoder layer
``layer_id``. ``t`` runs over the ``n_i`` answer positions of sequence ``i``,
the positions whose label is not ``-100``, so prompt and padding are excluded.
The outer mean runs over the sequences, as in OpenUnlearning's
``compute_activation_loss``. The forget term steers the forget answers'
activations towards the fixed random vector ``c``; the retain term keeps the
retain activations at those of the reference, the model at the start of
unlearning (``base.Reference``, one extra forward pass per step).
``retain_loss_type=NLL`` or ``KL`` replaces the activation term with the retain
term of ``ForgetRetainMethod``.

Defaults as in OpenUnlearning's ``configs/trainer/RMU.yaml`` (layer ``model.layers.7``,
``steering_coeff = 300``, ``alpha = 1000``, ``gamma = 1``); these depend on the
model and need tuning. OpenUnlearning trains only the ``down_proj`` weights of
layers 5-7; here the trained parameters are the model's trainable ones (the
LoRA adapter), because the federation exchanges one fixed trainable state.
Adapters above ``layer_id`` get no gradient from this loss.
"""

from __future__ import annotations

import torch

from fedunlearn.data.template import IGNORE_INDEX
from fedunlearn.unlearn.methods.base import ForgetRetainMethod, check_integer, check_positive


class RMU(ForgetRetainMethod):
    """Steer forget activations at one layer to a random vector, keep retain activations.

    Args:
        layer_id: index of the decoder layer whose output is steered (>= 0, default 7).
        steering_coeff: norm of the control vector (> 0, default 300).
        gamma: weight of the forget term (default 1.0).
        alpha: weight of the retain term (default 1000.0); 0 drops it.
        retain_loss_type: ``EMBED_DIFF`` (activation matching, default), ``NLL`` or ``KL``.
    """

    def __init__(self, layer_id: int = 7, steering_coeff: float = 300.0, gamma: float = 1.0, alpha: float = 1000.0,
                 retain_loss_type: str = "EMBED_DIFF"):
        super().__init__(gamma, alpha, retain_loss_type)
        self.layer_id = check_integer("RMU", "layer_id", layer_id, 0)
        self.steering_coeff = check_positive("RMU", "steering_coeff", steering_coeff)
        self.control_vector: torch.Tensor | None = None

    def retain_loss_types(self):
        return ("EMBED_DIFF", *super().retain_loss_types())

    def needs_reference(self):
        return super().needs_reference() or (self.needs_retain and self.retain_loss_type == "EMBED_DIFF")

    def prepare(self, model, forget_examples, context):
        super().prepare(model, forget_examples, context)
        self.layer(model)  # rejects a layer_id the model does not have before training starts
        u = torch.rand(model.config.hidden_size, generator=torch.Generator().manual_seed(context.seed))
        self.control_vector = self.steering_coeff * u / u.norm()

    def layer(self, model) -> torch.nn.Module:
        """Return decoder layer ``layer_id`` of ``model`` (through the base model of a PEFT model)."""
        layers = decoder_layers(model)
        if self.layer_id >= len(layers):
            raise ValueError(
                f"RMU layer_id={self.layer_id} is out of range: the model has {len(layers)} decoder layers, "
                f"set trainer.method_args.layer_id to 0..{len(layers) - 1}"
            )
        return layers[self.layer_id]

    def forget_loss(self, model, forget):
        if self.control_vector is None:
            raise RuntimeError("RMU.prepare must run before training: the control vector is missing")
        hidden = layer_output(self.layer(model), lambda: model(input_ids=forget["input_ids"],
                                                               attention_mask=forget["attention_mask"]))
        target = self.control_vector.to(hidden.device, hidden.dtype).expand_as(hidden)
        return activation_distance(hidden, target, forget["labels"] != IGNORE_INDEX)

    def retain_loss(self, model, retain):
        if self.retain_loss_type != "EMBED_DIFF":
            return super().retain_loss(model, retain)
        # Without LoRA the reference is a separate copy, whose own layer is hooked.
        copied = self.reference is not None and self.reference.model_copy is not None
        reference_model = self.reference.model_copy if copied else model
        reference = layer_output(self.layer(reference_model), lambda: self.reference_output(model, retain))
        hidden = layer_output(self.layer(model), lambda: model(input_ids=retain["input_ids"],
                                                               attention_mask=retain["attention_mask"]))
        return activation_distance(hidden, reference.to(hidden.dtype), retain["labels"] != IGNORE_INDEX)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """Return the decoder layers of a causal LM (``model.layers`` in Llama-style models, ``transformer.h`` in GPT-2)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks"):
            return module
    raise ValueError(f"RMU found no decoder layers in {type(base).__name__}: expected a ModuleList named layers, h or blocks")


def layer_output(layer: torch.nn.Module, forward) -> torch.Tensor:
    """Run ``forward()`` and return the hidden states that ``layer`` outputs during it."""
    captured = []

    def hook(module, inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(hook)
    try:
        forward()
    finally:
        handle.remove()
    return captured[0]


def activation_distance(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``mean_i (1 / n_i) sum_{t: mask} mean_d (hidden - target)^2``, ``n_i`` the masked positions of row ``i``."""
    squared = ((hidden.float() - target.float()) ** 2).mean(dim=-1)
    per_sequence = (squared * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return per_sequence.mean()
