"""``runtime=flower``: the federation on Flower's Deployment Engine (flwr 1.42).

One ``flower-superlink`` runs the ServerApp (``server_app``), one
``flower-supernode`` per client runs the ClientApp (``client_app``) on that
client's own partition file (``partition``), and ``flwr run`` starts a run
(``launcher``, called by ``fedunlearn train ... runtime=flower``). The round
loop, the aggregation and the client's local training are the ones the
in-process runtime uses; ``runtime.FlowerRuntime`` carries each round over
Flower messages (``records``). docs/flower.md gives the multi-machine setup.

This module imports no Flower code, so the trainers can check the runtime
setting cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RUNTIMES = ("inprocess", "flower")

# Set in every Flower process that fedunlearn starts. They turn off telemetry and the update
# check (flwr 1.42 skips it only for the value "1"). They also turn off `uv sync` of the app's
# dependencies at run time, which needs the network, so the installed fedunlearn is the app's environment.
FLOWER_QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}


def runtime_is_flower(cfg: Mapping[str, Any]) -> bool:
    """Return whether ``cfg.runtime`` selects Flower; raise ``ValueError`` for an unknown runtime."""
    runtime = cfg.get("runtime") or "inprocess"
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: choose one of {list(RUNTIMES)} (runtime=NAME)")
    return runtime == "flower"
