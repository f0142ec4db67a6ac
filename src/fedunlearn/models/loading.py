"""Loading a causal LM and its tokenizer from a model config, with optional LoRA.

The model config mirrors OpenUnlearning's: ``model_args`` go to
``AutoModelForCausalLM.from_pretrained``, ``tokenizer_args`` to
``AutoTokenizer.from_pretrained``, ``use_lora`` and ``lora_config`` to PEFT.
A folder holding ``adapter_config.json`` (a saved global LoRA model) loads as
its base model with that adapter, trainable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedunlearn.models.sources import resolve_model_source

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model_and_tokenizer(model_cfg: Mapping[str, Any]):
    """Build ``(model, tokenizer)`` from a model config.

    The returned model is a PEFT model when ``use_lora`` is true or the path
    holds an adapter; otherwise every parameter is trainable.
    """
    from omegaconf import OmegaConf
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if OmegaConf.is_config(model_cfg):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    args = dict(model_cfg.get("model_args") or {})
    source = args.pop("pretrained_model_name_or_path", None)
    if not source:
        raise ValueError("model.model_args.pretrained_model_name_or_path is not set")
    path = resolve_model_source(source)
    adapter_config = Path(path) / "adapter_config.json"
    base_path = path
    if adapter_config.is_file():
        base_path = resolve_model_source(json.loads(adapter_config.read_text())["base_model_name_or_path"])

    # Both spellings are removed, so neither reaches from_pretrained beside the dtype passed below.
    torch_dtype, new_dtype = args.pop("torch_dtype", None), args.pop("dtype", None)
    dtype = torch_dtype or new_dtype or "float32"
    if dtype not in DTYPES:
        raise ValueError(f"invalid model.model_args.torch_dtype {dtype!r}: choose one of {sorted(DTYPES)}")
    device = _device(args.pop("device_map", None) or model_cfg.get("device"))
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=DTYPES[dtype], **args).to(device)

    tokenizer_args = dict(model_cfg.get("tokenizer_args") or {})
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_args.pop("pretrained_model_name_or_path", None) or path, **tokenizer_args)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id

    if adapter_config.is_file():
        log.info("Loading LoRA adapter %s on base model %s", path, base_path)
        model = PeftModel.from_pretrained(model, path, is_trainable=True)
    elif model_cfg.get("use_lora"):
        lora = dict(model_cfg.get("lora_config") or {})
        lora.setdefault("task_type", "CAUSAL_LM")
        model = get_peft_model(model, LoraConfig(**lora))
    return model, tokenizer


def _device(requested: str | None) -> torch.device:
    # The shared-model federation keeps the whole model on one device: CUDA when present, unless the config names one.
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def trainable_parameter_count(model: torch.nn.Module) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
