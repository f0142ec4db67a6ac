"""Find what a results folder contains: evaluations, federations and per-client results.

Everything is found by file name anywhere below the folder, so the report reads
a ``fedunlearn run`` folder (``finetune/``, ``retain/``, ``unlearn/``,
``eval/<model>/``) and an OpenUnlearning-style ``saves/`` tree alike:

* an evaluation is a folder holding ``TOFU_SUMMARY.json`` or ``MUSE_SUMMARY.json``,
  or only ``TOFU_EVAL.json`` / ``MUSE_EVAL.json`` (an interrupted or older run,
  whose ``agg_value`` entries then serve as the summary);
* a federation is a folder holding ``federation/history.json`` (see
  ``fedunlearn.federated.history``), with ``federation.json`` beside it once the
  run has finished;
* per-client results are ``CLIENTS_EVAL.json`` files (see ``fedunlearn.evals.clients``).

Each model is named by its folder's path below the root without the ``eval`` and
``evals`` parts, so ``eval/unlearn`` is ``unlearn`` and ``unlearn/test/evals`` is
``unlearn/test``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

BENCHMARK_FILES = {"TOFU": ("TOFU_SUMMARY.json", "TOFU_EVAL.json"), "MUSE": ("MUSE_SUMMARY.json", "MUSE_EVAL.json")}
CLIENTS_FILE = "CLIENTS_EVAL.json"
# Folder names that only group evaluations, left out of model names.
GROUPING_FOLDERS = {"eval", "evals"}
# The folder the report writes into; never read back as results.
REPORT_FOLDER = "report"


@dataclass
class Evaluation:
    """One model's benchmark summary: ``{metric: agg_value}``."""

    name: str
    kind: str  # finetune, retain, unlearn or model (unknown)
    benchmark: str  # TOFU or MUSE
    folder: Path
    summary: dict[str, float | None]


@dataclass
class Federation:
    """One federated training or unlearning run: its rounds and its clients."""

    name: str
    kind: str
    folder: Path
    rounds: list[dict]  # the history.json records of rounds 1, 2, ...
    examples: dict[str, int]  # examples held by each client, by client id
    method: str | None = None  # the unlearning method of an unlearning run
    target_client: int | None = None  # the client that requested unlearning
    forget_records: int | None = None  # examples the target client unlearned


@dataclass
class Collection:
    """Everything found below ``root``."""

    root: Path
    evaluations: list[Evaluation] = field(default_factory=list)
    federations: list[Federation] = field(default_factory=list)
    client_results: dict[str, dict] = field(default_factory=dict)  # model name: parsed CLIENTS_EVAL.json

    @property
    def empty(self) -> bool:
        return not (self.evaluations or self.federations or self.client_results)


def collect(root: str | Path) -> Collection:
    """Read every evaluation, federation and per-client result below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {str(root)!r} not found: pass a saves folder or a fedunlearn run folder")
    found = Collection(root)

    for benchmark, (summary_file, eval_file) in BENCHMARK_FILES.items():
        folders = {p.parent for p in _find(root, summary_file)} | {p.parent for p in _find(root, eval_file)}
        for folder in sorted(folders):
            summary = _summary(folder, summary_file, eval_file)
            if summary is not None:
                found.evaluations.append(Evaluation(_name(root, folder), _kind(folder), benchmark, folder, summary))

    for history in _find(root, "history.json"):
        if history.parent.name == "federation":
            federation = _federation(root, history.parent.parent)
            if federation is not None:
                found.federations.append(federation)

    for file in _find(root, CLIENTS_FILE):
        results = _read_json(file)
        if results is not None:
            found.client_results[_name(root, file.parent)] = results
    return found


def _find(root: Path, file_name: str) -> Iterator[Path]:
    """Yield files named ``file_name`` below ``root``, skipping hidden folders (unfinished atomic writes) and reports."""
    for path in sorted(root.rglob(file_name)):
        parts = path.relative_to(root).parts[:-1]
        if not any(part.startswith(".") or part == REPORT_FOLDER for part in parts):
            yield path


def _summary(folder: Path, summary_file: str, eval_file: str) -> dict[str, float | None] | None:
    summary = _read_json(folder / summary_file)
    if summary is not None:
        return summary
    logs = _read_json(folder / eval_file)
    if logs is None:
        return None
    log.info("%s has no %s: reporting the agg_value entries of %s", folder, summary_file, eval_file)
    return {name: entry.get("agg_value") for name, entry in logs.items() if isinstance(entry, dict)}


def _federation(root: Path, folder: Path) -> Federation | None:
    records = _read_json(folder / "federation" / "history.json")
    if not isinstance(records, list):
        return None
    rounds = [record for record in records if record.get("round", 0) >= 1]
    summary = _read_json(folder / "federation.json") or {}
    examples = summary.get("clients") or (rounds[0].get("num_examples", {}) if rounds else {})
    return Federation(
        name=_name(root, folder),
        kind=_kind(folder),
        folder=folder,
        rounds=rounds,
        examples={str(k): int(v) for k, v in examples.items()},
        method=summary.get("method"),
        target_client=summary.get("target_client_idx"),
        forget_records=summary.get("forget_records"),
    )


def _name(root: Path, folder: Path) -> str:
    parts = [part for part in folder.relative_to(root).parts if part not in GROUPING_FOLDERS]
    return "/".join(parts) or folder.resolve().name


def _kind(folder: Path) -> str:
    """Classify the model behind ``folder`` as finetune, retain, unlearn, or model when unknown.

    An evaluation folder's ``config.yaml`` names the evaluated model; the model
    folder's own ``config.yaml`` names its trainer and training split. A
    fine-tuned model whose training data leaves out the forget split is the
    retain reference. Without those files the folder name decides.
    """
    config = _read_yaml(folder / "config.yaml") or {}
    model_path = ((config.get("model") or {}).get("model_args") or {}).get("pretrained_model_name_or_path")
    if "trainer" not in config and model_path:  # an evaluation: classify the model it evaluated
        config = _read_yaml(Path(model_path) / "config.yaml") or {}
    handler = (config.get("trainer") or {}).get("handler")
    if handler == "FederatedUnlearningTrainer":
        return "unlearn"
    if handler == "FederatedFinetune":
        train_split = (config.get("data") or {}).get("train_split")
        forget_split = config.get("forget_split")
        if isinstance(train_split, str):
            return "retain" if train_split.startswith("retain") else "finetune"
        return "retain" if forget_split not in (train_split or []) else "finetune"
    # MUSE names its models target (before unlearning) and retrain (the reference).
    name = folder.as_posix().lower()
    for kind, words in (("retain", ("retain", "retrain")), ("unlearn", ("unlearn",)), ("finetune", ("finetune", "target"))):
        if any(word in name for word in words):
            return kind
    return "model"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        log.warning("Skipping %s: not valid JSON (%s)", path, err.msg)
        return None


def _read_yaml(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        log.warning("Skipping %s: not valid YAML (%s)", path, err)
        return None
    return data if isinstance(data, dict) else None
