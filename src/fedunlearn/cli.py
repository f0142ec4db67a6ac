"""The ``fedunlearn`` command: ``train``, ``eval`` and ``run``, each a Hydra application.

Every command takes Hydra's flags (``--help``, ``--cfg job``, ``-m``) and
OpenUnlearning-style overrides, e.g.
``fedunlearn train --config-name=unlearn.yaml experiment=unlearn/tofu/default task_name=test``.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fedunlearn.federated.server import ResumeError, RoundFailedError

log = logging.getLogger("fedunlearn")

USAGE = """usage: fedunlearn {train,eval,run,compare,report,partition} [HYDRA OVERRIDES] [--help] [--cfg job] [-m]

commands:
  train   federated fine-tuning (--config-name=train-lora.yaml) or unlearning (--config-name=unlearn.yaml)
  eval    TOFU evaluation of a saved model
  run     the whole flow: fine-tune, retain reference, unlearn, evaluate, print the table
  compare  every unlearning method x protocol on one fine-tuned federation, evaluated, on one table
  report  write report.md and report.html (tables and PNG plots) for a results folder: fedunlearn report FOLDER
  partition  write each client's records to its own file (flower.partition_dir), for runtime=flower

Run 'fedunlearn COMMAND --help' for the settings of a command."""

# Errors that a user's settings or files cause: reported in one line, without a traceback.
USER_ERRORS = (ValueError, KeyError, OSError, ResumeError, RoundFailedError)


def output_dir(cfg: DictConfig) -> Path:
    """Return the run's output folder; in a multirun each job gets a subfolder named by its overrides."""
    path = Path(cfg.paths.output_dir)
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        path = path / _sweep_job_name(hydra_cfg)
    return path


def _sweep_job_name(hydra_cfg) -> str:
    # Name the job by the values of the swept keys only (the keys given as a list on the command line).
    from hydra.core.override_parser.overrides_parser import OverridesParser

    command_line = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    swept = {o.get_key_element() for o in OverridesParser.create().parse_overrides(command_line) if o.is_sweep_override()}
    parts = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") in swept]
    name = ",".join(parts).replace("/", "_")
    return name or f"job{hydra_cfg.job.num}"


def _execute(cfg: DictConfig, work) -> None:
    path = output_dir(cfg)
    existed = path.exists()
    try:
        work(cfg, path)
    except KeyboardInterrupt:
        checkpoints = sorted(path.glob("**/federation/checkpoint.json"))
        where = f" (last checkpoint: {checkpoints[-1].parent})" if checkpoints else ""
        print(f"interrupted{where}: rerun the same command with resume=true to continue", file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as err:
        # Keep a folder that contains a resumable checkpoint. Remove one that this run created and left without results.
        if not existed and not any(path.glob("**/checkpoint.json")):
            shutil.rmtree(path, ignore_errors=True)
        log.debug("details", exc_info=True)
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _train(cfg: DictConfig, path: Path) -> None:
    from fedunlearn.trainers import TRAINERS

    handler = cfg.trainer.get("handler")
    if handler not in TRAINERS:
        raise ValueError(f"unknown trainer {handler!r}: choose one of {sorted(TRAINERS)} (trainer=NAME)")
    TRAINERS[handler](cfg, path)


def _eval(cfg: DictConfig, path: Path) -> None:
    from fedunlearn.trainers.evaluate import run_eval

    run_eval(cfg, path)


def _run(cfg: DictConfig, path: Path) -> None:
    from fedunlearn.pipeline import results_table, run_pipeline

    summaries = run_pipeline(cfg, path)
    print()
    print(results_table(summaries))
    print(f"\nResults: {path / 'results.md'}")
    print(f"Report: {path / 'report' / 'report.html'}")



def _compare(cfg: DictConfig, path: Path) -> None:
    from fedunlearn.trainers.compare import markdown_table, run_compare

    rows = run_compare(cfg, path)
    print()
    print(markdown_table(rows))
    print(f"\nResults: {path / 'results.md'} and {path / 'results.csv'}")


def _partition(cfg: DictConfig, path: Path) -> None:
    from fedunlearn.federated.runtime.flower.partition import partition_for_supernodes

    print(partition_for_supernodes(cfg))


@hydra.main(config_path="configs", config_name="train", version_base=None)
def train_main(cfg: DictConfig) -> None:
    _execute(cfg, _train)


@hydra.main(config_path="configs", config_name="eval", version_base=None)
def eval_main(cfg: DictConfig) -> None:
    _execute(cfg, _eval)


@hydra.main(config_path="configs", config_name="run", version_base=None)
def run_main(cfg: DictConfig) -> None:
    _execute(cfg, _run)


@hydra.main(config_path="configs", config_name="compare", version_base=None)
def compare_main(cfg: DictConfig) -> None:
    _execute(cfg, _compare)


@hydra.main(config_path="configs", config_name="train", version_base=None)
def partition_main(cfg: DictConfig) -> None:
    _execute(cfg, _partition)


COMMANDS = {"train": train_main, "eval": eval_main, "run": run_main, "compare": compare_main,
            "partition": partition_main}


def report_main() -> None:
    """``fedunlearn report FOLDER [--output DIR]``: write the report of a results folder (plain argparse, no Hydra)."""
    import argparse

    from fedunlearn.report import write_report

    parser = argparse.ArgumentParser(
        prog=sys.argv[0],
        description="Write report.md, a self-contained report.html and PNG plots of every evaluation "
                    "(TOFU_SUMMARY.json, MUSE_SUMMARY.json, ...) and federation (federation/history.json) below FOLDER.",
    )
    parser.add_argument("folder", help="a saves folder or a fedunlearn run folder")
    parser.add_argument("--output", help="folder for the report files (default: FOLDER/report)")
    args = parser.parse_args(sys.argv[1:])
    try:
        path = write_report(args.folder, args.output)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"Report: {path / 'report.html'}")
    print(f"Markdown: {path / 'report.md'}")


COMMANDS["report"] = report_main


def main() -> None:
    """Dispatch ``fedunlearn COMMAND ...`` to that command's Hydra application."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if len(sys.argv) >= 2 else 2)
    command = sys.argv[1]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}: choose one of {sorted(COMMANDS)}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"fedunlearn {command}"] + sys.argv[2:]
    COMMANDS[command]()


if __name__ == "__main__":
    main()
