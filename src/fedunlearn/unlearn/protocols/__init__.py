"""Federated unlearning protocols, selected by name with ``trainer.method_args.protocol``.

========== ====================================================== ================
protocol   how the federation forgets                              exact
========== ====================================================== ================
local      the requesting client runs the unlearning method, the   no
           others keep training, for ``global_rounds`` rounds
retrain    train the federation again without the forgotten data    yes
federaser  replay the stored rounds with calibrated updates         no
           (Liu et al., 2021)
subtract   remove the client's stored weighted updates, then        no
           ``recovery_rounds`` rounds
pga        projected gradient ascent near the other clients'        no
           average (Halimi et al., 2022), then recovery rounds
sharded    retrain only the requesting client's shard (SISA)        yes, for the
                                                                    sharded model
========== ====================================================== ================
"""

from fedunlearn.unlearn.protocols.base import Protocol, Request, UnlearningJob, build_request
from fedunlearn.unlearn.protocols.cost import CostMeter
from fedunlearn.unlearn.protocols.federaser import FedEraser
from fedunlearn.unlearn.protocols.local import Local
from fedunlearn.unlearn.protocols.pga import ProjectedGradientAscent
from fedunlearn.unlearn.protocols.retrain import Retrain
from fedunlearn.unlearn.protocols.sharded import Sharded
from fedunlearn.unlearn.protocols.source import FineTunedFederation
from fedunlearn.unlearn.protocols.subtract import Subtract

PROTOCOLS: dict[str, type[Protocol]] = {
    p.name: p for p in (Local, Retrain, FedEraser, Subtract, ProjectedGradientAscent, Sharded)
}


def build_protocol(name: str) -> Protocol:
    """Return the protocol registered as ``name``."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown trainer.method_args.protocol {name!r}: choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]()


__all__ = ["PROTOCOLS", "CostMeter", "FineTunedFederation", "Protocol", "Request", "UnlearningJob",
           "build_protocol", "build_request"]
