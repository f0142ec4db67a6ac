"""The fedunlearn settings of a Flower run, carried in Flower's run config.

The launcher resolves the Hydra config and passes it to ``flwr run`` as a TOML
file (``--run-config FILE``) with two keys, which the app's pyproject.toml
declares under ``[tool.flwr.app.config]``:

- ``fedunlearn-config``: the resolved config as a JSON string;
- ``output-dir``: the absolute output folder, on the machine of the SuperLink.

The ServerApp and every ClientApp read both from ``context.run_config``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from omegaconf import DictConfig, OmegaConf

CONFIG_KEY = "fedunlearn-config"
OUTPUT_DIR_KEY = "output-dir"


def run_config_toml(cfg: DictConfig, output_dir: Path) -> str:
    """Return the ``--run-config`` TOML text for ``cfg``."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return tomli_w.dumps({CONFIG_KEY: json.dumps(resolved), OUTPUT_DIR_KEY: str(output_dir)})


def read_run_config(run_config: Mapping[str, Any]) -> tuple[DictConfig, Path]:
    """Return the fedunlearn config and the output folder from a Flower run config."""
    text = run_config.get(CONFIG_KEY) or ""
    if not text:
        raise ValueError(f"the Flower run config has no {CONFIG_KEY!r}: start runs with "
                         "'fedunlearn train ... runtime=flower', which passes it")
    return OmegaConf.create(json.loads(text)), Path(str(run_config.get(OUTPUT_DIR_KEY) or "."))


def log_to_console() -> None:
    """Send fedunlearn's INFO logs to stderr, which Flower forwards to ``flwr run --stream``."""
    logger = logging.getLogger("fedunlearn")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "fedunlearn_console", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
        handler.fedunlearn_console = True
        logger.addHandler(handler)
