"""``fedunlearn compare``: one unlearning request served by every method x protocol, on one table.

The federation is fine-tuned once; every cell of the grid ``compare.methods``
x ``compare.protocols`` then unlearns from that same model, is evaluated
with the TOFU evaluation, and becomes a row of the table. Protocols that do
not run an unlearning method (``retrain``, ``federaser``, ``subtract``,
``sharded``) give one row whatever the methods. ``retrain`` always runs: its
model is the reference of ``forget_quality`` and ``privleak`` (exact
retraining without the forgotten records is the retain model), and its cost
is the unit of the cost columns. ``sharded`` unlearns from a second
fine-tuning of the same federation in ``compare.num_shards`` shards, whose
own row shows what sharding costs before any request.

Everything goes under one folder (``saves/compare/<task_name>`` by default)::

    finetune/            the fine-tuned federation
    finetune_sharded/    the same federation fine-tuned in shards (with protocol sharded)
    cells/<cell>/        each cell's unlearned model: <protocol>, or <protocol>-<method>
    eval/<model>/        TOFU_EVAL.json and TOFU_SUMMARY.json of every model
    results.json, results.md, results.csv

With ``resume=true`` finished models and evaluations are skipped and an
interrupted one continues from its last completed round.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from fedunlearn.pipeline import model_complete, stage_config
from fedunlearn.trainers.evaluate import tofu_eval
from fedunlearn.trainers.finetune import federated_finetune
from fedunlearn.trainers.unlearn import federated_unlearn
from fedunlearn.unlearn.methods import METHODS
from fedunlearn.unlearn.protocols import PROTOCOLS
from fedunlearn.utils.io import write_json, write_text

log = logging.getLogger(__name__)

METRICS = ("forget_quality", "model_utility", "forget_Q_A_Prob", "privleak")
COLUMNS = ("model", "protocol", "method", "exact", *METRICS, "client_steps", "steps_vs_retrain", "wall_seconds",
           "wall_vs_retrain", "MB_sent")
EXACT = {"retrain": "yes", "sharded": "yes (sharded model)"}
# Metrics measured against the retain model's logs: the retrain row, the reference itself, has none.
REFERENCE_METRICS = ("forget_quality", "privleak")


@dataclass(frozen=True)
class Cell:
    """One unlearning run of the grid; ``method`` is None for protocols that run no unlearning method."""

    protocol: str
    method: str | None

    @property
    def name(self) -> str:
        return self.protocol if self.method is None else f"{self.protocol}-{self.method}"

    @property
    def base(self) -> str:
        return "finetune_sharded" if self.protocol == "sharded" else "finetune"


def grid_cells(methods: list[str], protocols: list[str]) -> list[Cell]:
    """Return the grid's cells, ``retrain`` first, one cell per protocol that runs no method."""
    for name in protocols:
        if name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r} in compare.protocols: choose from {sorted(PROTOCOLS)}")
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r} in compare.methods: choose from {sorted(METHODS)}")
    if not methods and any(PROTOCOLS[p].uses_method for p in protocols):
        raise ValueError("compare.methods is empty, but compare.protocols lists protocols that run a method")
    cells = [Cell("retrain", None)]
    for protocol in dict.fromkeys(protocols):
        if protocol == "retrain":
            continue
        if PROTOCOLS[protocol].uses_method:
            cells.extend(Cell(protocol, method) for method in dict.fromkeys(methods))
        else:
            cells.append(Cell(protocol, None))
    return cells


def run_compare(cfg: DictConfig, root: Path) -> list[dict]:
    """Fine-tune, run every cell, evaluate every model and write the table; return its rows."""
    settings = cfg.compare
    cells = grid_cells(list(settings.methods), list(settings.protocols))
    resume = bool(cfg.get("resume", False))

    bases = {"finetune": stage_config(cfg, cfg.finetune, train_split=cfg.data.train_split)}
    if any(cell.protocol == "sharded" for cell in cells):
        sharded = stage_config(cfg, cfg.finetune, train_split=cfg.data.train_split)
        sharded.trainer.method_args.num_shards = int(settings.num_shards)
        bases["finetune_sharded"] = sharded
    for name, stage in bases.items():
        _train(federated_finetune, stage, root / name, resume)

    for cell in cells:
        stage = stage_config(cfg, cfg.unlearn, train_split=cfg.data.train_split, model_path=root / cell.base)
        stage.trainer.method_args.protocol = cell.protocol
        if cell.method is not None:
            stage.trainer.method_args.unlearn_trainer_cls = cell.method
        _train(federated_unlearn, stage, root / "cells" / cell.name, resume)

    # The retrained model never saw the forgotten records: it is the retain model of forget_quality and privleak.
    retain_logs = root / "eval" / "retrain" / "TOFU_EVAL.json"
    models = {"retrain": root / "cells" / "retrain", **{name: root / name for name in bases}}
    models.update({cell.name: root / "cells" / cell.name for cell in cells if cell.protocol != "retrain"})
    summaries = {}
    for name, folder in models.items():
        summaries[name] = _evaluate(cfg, folder, root / "eval" / name, None if name == "retrain" else retain_logs,
                                    resume)

    rows = comparison_rows(cells, summaries, {c.name: _cost(root / "cells" / c.name) for c in cells}, list(bases))
    write_json(root / "results.json", rows)
    write_text(root / "results.md", markdown_table(rows) + "\n")
    write_text(root / "results.csv", csv_table(rows))
    return rows


def _train(runner, stage: DictConfig, folder: Path, resume: bool) -> None:
    if resume and model_complete(folder):
        log.info("%s already finished: skipping", folder)
        return
    log.info("Training %s", folder)
    runner(stage, folder)


def _evaluate(cfg: DictConfig, model: Path, folder: Path, retain_logs: Path | None, resume: bool) -> dict:
    summary_file = folder / "TOFU_SUMMARY.json"
    if resume and summary_file.is_file():
        log.info("Evaluation of %s already finished: skipping", model)
    else:
        log.info("Evaluating %s", model)
        tofu_eval(stage_config(cfg, None, model_path=model, retain_logs_path=str(retain_logs) if retain_logs else None),
                  folder)
    return json.loads(summary_file.read_text())


def _cost(folder: Path) -> dict:
    return json.loads((folder / "federation.json").read_text())["cost"]


def comparison_rows(cells: list[Cell], summaries: dict[str, dict], costs: dict[str, dict],
                    bases: list[str]) -> list[dict]:
    """Return the table's rows: the fine-tuned models, then every cell with its cost relative to ``retrain``.

    ``steps_vs_retrain`` and ``wall_vs_retrain`` divide a cell's client
    training steps and wall seconds by those of the ``retrain`` cell. The
    ``retrain`` row leaves out ``forget_quality`` and ``privleak``, which
    compare a model with it.
    """
    reference = costs["retrain"]
    rows = [{"model": name, "protocol": None, "method": None, "exact": None,
             **{m: summaries[name].get(m) for m in METRICS}} for name in bases]
    for cell in cells:
        cost = costs[cell.name]
        rows.append({
            "model": cell.name, "protocol": cell.protocol, "method": cell.method, "exact": EXACT.get(cell.protocol, "no"),
            **{m: summaries[cell.name].get(m) for m in METRICS},
            **({m: None for m in REFERENCE_METRICS} if cell.protocol == "retrain" else {}),
            "client_steps": cost["client_steps"],
            "steps_vs_retrain": _ratio(cost["client_steps"], reference["client_steps"]),
            "wall_seconds": cost["wall_seconds"],
            "wall_vs_retrain": _ratio(cost["wall_seconds"], reference["wall_seconds"]),
            "MB_sent": cost["bytes_sent"] / 1e6,
        })
    return [{column: row.get(column) for column in COLUMNS} for row in rows]


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference else None


def markdown_table(rows: list[dict]) -> str:
    """Format the rows as a Markdown table; a missing value reads ``n/a``."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_format(column, row[column]) for column in COLUMNS) + " |")
    return "\n".join(lines)


def csv_table(rows: list[dict]) -> str:
    """Format the rows as CSV with the raw values; a missing value is an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _format(column: str, value) -> str:
    if value is None:
        return "n/a" if column in METRICS else "-"
    if isinstance(value, str):
        return value
    if column == "client_steps":
        return str(int(value))
    if column.endswith("_vs_retrain"):
        return f"{value:.2f}x"
    if column in ("wall_seconds", "MB_sent"):
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"

