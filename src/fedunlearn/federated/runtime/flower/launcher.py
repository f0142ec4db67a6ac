"""``fedunlearn train ... runtime=flower``: start the run on a SuperLink with ``flwr run`` and wait for it.

The launcher writes the connection profile ``flower.connection`` into
``$FLWR_HOME/config.toml`` (address, TLS and federation from ``flower.*``). It
passes the resolved config to the app through ``--run-config`` and streams the
run's logs (``flwr run --stream``). Then it checks the run's final status
(``flwr ls --run-id``) and the output folder that the ServerApp wrote. That
folder is on the SuperLink's machine, so run the launcher there or on a machine
that shares the folder. Ctrl-C stops the run on the SuperLink (``flwr stop``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli
import tomli_w
from omegaconf import DictConfig, OmegaConf

from fedunlearn.federated.runtime.flower import FLOWER_QUIET_ENV
from fedunlearn.federated.runtime.flower.run_config import run_config_toml
from fedunlearn.trainers.common import COMPLETE_MARKERS
from fedunlearn.utils.io import write_text

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent / "app"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
STARTED_RUN = re.compile(r"Successfully started run (\d+)")


class FlowerRunError(OSError):
    """A Flower run could not be started, failed, or left no complete output folder.

    An ``OSError``, so the command line reports it in one line like other
    failures of the environment.
    """


def flower_env() -> dict[str, str]:
    """Return this process's environment with Flower's telemetry, update check and runtime installs turned off."""
    return {**os.environ, **FLOWER_QUIET_ENV}


def flwr_executable() -> str:
    """Return the ``flwr`` command of this Python environment."""
    beside = Path(sys.executable).with_name("flwr")
    found = str(beside) if beside.is_file() else shutil.which("flwr")
    if not found:
        raise FlowerRunError("the flwr command was not found: install Flower with pip install 'flwr>=1.42,<1.43'")
    return found


def flower_home() -> Path:
    """Return Flower's home folder (``$FLWR_HOME``, default ``~/.flwr``), where connection profiles live."""
    return Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr").expanduser()


def write_connection(flower: DictConfig) -> str:
    """Write the connection profile that ``flower`` describes and return its name.

    With ``flower.superlink`` unset, the existing profile ``flower.connection``
    is used unchanged; other profiles in the file are never changed.
    """
    name = str(flower.connection)
    config_file = flower_home() / "config.toml"
    config = tomli.loads(config_file.read_text()) if config_file.is_file() else {}
    profiles = config.setdefault("superlink", {})
    if not flower.get("superlink"):
        if name not in profiles:
            raise ValueError(f"flower.superlink is not set and {config_file} has no connection {name!r}: "
                             "set flower.superlink=HOST:PORT")
        return name

    profile = {"address": str(flower.superlink)}
    if flower.get("insecure"):
        profile["insecure"] = True
    elif flower.get("root_certificates"):
        certificates = Path(str(flower.root_certificates)).expanduser().resolve()
        if not certificates.is_file():
            raise OSError(f"flower.root_certificates file {str(certificates)!r} not found")
        profile["root-certificates"] = str(certificates)
    if flower.get("federation"):
        profile["federation"] = str(flower.federation)
    if profiles.get(name) != profile:
        profiles[name] = profile
        write_text(config_file, tomli_w.dumps(config))
        log.info("Wrote the Flower connection %r (%s) to %s", name, profile["address"], config_file)
    return name


def launch_flower_run(cfg: DictConfig, output_dir: Path) -> Path:
    """Run ``cfg`` on the SuperLink of ``cfg.flower`` and return the output folder once the run has completed."""
    output_dir = Path(output_dir).resolve()
    cfg = _with_absolute_model_path(cfg)
    connection = write_connection(cfg.flower)
    flwr = flwr_executable()
    started = time.time()

    with tempfile.TemporaryDirectory(prefix="fedunlearn-flwr-") as tmp:
        run_config = Path(tmp) / "run_config.toml"
        run_config.write_text(run_config_toml(cfg, output_dir))
        command = [flwr, "run", str(APP_DIR), connection, "--stream", "--run-config", str(run_config)]
        if cfg.flower.get("federation"):
            command += ["--federation", str(cfg.flower.federation)]
        log.info("Starting the Flower run on %s (connection %r): %s", cfg.flower.get("superlink"), connection,
                 " ".join(command))
        run_id = _stream(command, connection, flwr)

    status = _run_status(flwr, connection, run_id)
    if status.get("status") != "finished:completed":
        raise FlowerRunError(f"Flower run {run_id} ended with status {status.get('status')!r}: "
                             f"{status.get('status-details')} (see the ServerApp log above)")
    _check_output(output_dir, started, run_id)
    log.info("Flower run %s completed in %.1f s; network traffic %s", run_id, time.time() - started,
             status.get("network-traffic"))
    return output_dir


def _with_absolute_model_path(cfg: DictConfig) -> DictConfig:
    # The ServerApp and ClientApps run in other folders: a relative model folder must become absolute.
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    source = str(cfg.model.model_args.get("pretrained_model_name_or_path") or "")
    if source and Path(source).expanduser().exists():
        cfg.model.model_args.pretrained_model_name_or_path = str(Path(source).expanduser().resolve())
    return cfg


def _stream(command: list[str], connection: str, flwr: str) -> int:
    """Run ``flwr run --stream``, log its output line by line and return the run id."""
    run_id = None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=flower_env(), bufsize=1)
    try:
        for line in process.stdout:
            line = ANSI_ESCAPE.sub("", line.rstrip())
            if line:
                log.info("[flwr] %s", line)
            match = STARTED_RUN.search(line)
            if match:
                run_id = int(match.group(1))
        code = process.wait()
    except KeyboardInterrupt:
        process.kill()
        if run_id is not None:
            log.warning("Stopping Flower run %s", run_id)
            subprocess.run([flwr, "stop", str(run_id), connection], env=flower_env(), check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        raise
    if code != 0 or run_id is None:
        raise FlowerRunError(f"flwr run failed (exit code {code}): check flower.superlink, flower.insecure and "
                             "flower.root_certificates, and that the SuperLink is running (output above)")
    return run_id


def _run_status(flwr: str, connection: str, run_id: int) -> dict:
    result = subprocess.run([flwr, "ls", connection, "--run-id", str(run_id), "--format", "json"],
                            env=flower_env(), capture_output=True, text=True, timeout=120, check=False)
    try:
        return json.loads(result.stdout)["runs"][0]
    except (json.JSONDecodeError, KeyError, IndexError):
        raise FlowerRunError(f"could not read the status of Flower run {run_id}: {result.stdout}{result.stderr}") from None


def _check_output(output_dir: Path, started: float, run_id: int) -> None:
    summary = output_dir / "federation.json"
    complete = any((output_dir / marker).is_file() for marker in COMPLETE_MARKERS)
    if not summary.is_file() or summary.stat().st_mtime < started - 1 or not complete:
        raise FlowerRunError(
            f"Flower run {run_id} completed, but {output_dir} contains no model and federation.json written by it: "
            "the ServerApp writes on the SuperLink's machine, so run fedunlearn there or share the folder"
        )
