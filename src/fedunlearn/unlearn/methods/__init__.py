"""Unlearning methods, selected by name with ``trainer.method_args.unlearn_trainer_cls``.

Every other key of ``trainer.method_args`` that is not a federated setting and
not null is passed to the method's constructor (for example ``beta`` for NPO).
The formulas, keys and defaults are listed in docs/unlearning-methods.md.
"""

from __future__ import annotations

import inspect

from fedunlearn.unlearn.methods.base import UnlearnContext, UnlearningMethod
from fedunlearn.unlearn.methods.ceu import CEU
from fedunlearn.unlearn.methods.grad_ascent import GradAscent
from fedunlearn.unlearn.methods.grad_diff import GradDiff
from fedunlearn.unlearn.methods.idk_dpo import IdkDPO
from fedunlearn.unlearn.methods.idk_nll import IdkNLL
from fedunlearn.unlearn.methods.npo import NPO
from fedunlearn.unlearn.methods.rmu import RMU
from fedunlearn.unlearn.methods.satimp import SatImp
from fedunlearn.unlearn.methods.simnpo import SimNPO
from fedunlearn.unlearn.methods.undial import UNDIAL
from fedunlearn.unlearn.methods.wga import WGA

METHODS: dict[str, type[UnlearningMethod]] = {
    method.__name__: method
    for method in (GradAscent, GradDiff, NPO, SimNPO, IdkDPO, IdkNLL, RMU, UNDIAL, WGA, SatImp, CEU)
}


def method_keys(name: str) -> list[str]:
    """Return the ``trainer.method_args`` keys that the method ``name`` accepts."""
    return [p for p in inspect.signature(METHODS[name]).parameters if p not in ("self", "args", "kwargs")]


def build_method(name: str, **kwargs) -> UnlearningMethod:
    """Instantiate the unlearning method registered as ``name`` with the settings ``kwargs``.

    A setting that is ``None`` (``null`` in the config, where every method's keys are
    listed) is left at the method's default.
    """
    if name not in METHODS:
        raise ValueError(f"unknown unlearning method {name!r} (unlearn_trainer_cls): choose one of {sorted(METHODS)}")
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    unknown = sorted(set(kwargs) - set(method_keys(name)))
    if unknown:
        raise ValueError(
            f"invalid method_args for {name}: unexpected key(s) {unknown}; {name} accepts {method_keys(name)} "
            "besides the federated settings"
        )
    return METHODS[name](**kwargs)


__all__ = ["METHODS", "UnlearnContext", "UnlearningMethod", "build_method", "method_keys"]
