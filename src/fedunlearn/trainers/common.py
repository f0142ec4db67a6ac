"""Steps shared by the federated recipes: output folder, logging, saving the global model."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fedunlearn.utils.io import write_json, write_text

log = logging.getLogger(__name__)

# The file whose presence marks a saved model as complete; it is moved in last.
COMPLETE_MARKERS = ("adapter_config.json", "config.json")


def open_output_dir(output_dir: str | Path, cfg: DictConfig, log_name: str) -> Path:
    """Create the output folder, store the resolved config and log to ``<log_name>.log`` there."""
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    write_text(path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    root = logging.getLogger()
    # One process can run several stages (fedunlearn run): each stage logs to its own folder only.
    for old in [h for h in root.handlers if getattr(h, "fedunlearn_stage", False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path / f"{log_name}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    handler.fedunlearn_stage = True
    root.addHandler(handler)
    return path


def save_model(model, tokenizer, output_dir: str | Path) -> None:
    """Save the global model (adapter or full weights) and tokenizer into ``output_dir``.

    Files are written to a temporary folder and moved in one by one, the config
    file last, so a folder that ``from_pretrained`` can load is always complete.
    """
    output_dir = Path(output_dir)
    for marker in COMPLETE_MARKERS:
        (output_dir / marker).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".save.") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = sorted(Path(tmp).iterdir(), key=lambda f: f.name in COMPLETE_MARKERS)
        for file in files:
            os.replace(file, output_dir / file.name)
    log.info("Saved the global model to %s", output_dir)


def write_summary(output_dir: Path, summary: dict) -> None:
    write_json(output_dir / "federation.json", summary)
