"""Unlearning methods, selected by name with ``trainer.method_args.unlearn_trainer_cls``.

Every other key of ``trainer.method_args`` that is not a federated setting is
passed to the method's constructor (for example ``beta`` for NPO).
"""

from __future__ import annotations

import inspect

from fedunlearn.unlearn.methods.base import UnlearnContext, UnlearningMethod
from fedunlearn.unlearn.methods.grad_ascent import GradAscent
from fedunlearn.unlearn.methods.grad_diff import GradDiff
from fedunlearn.unlearn.methods.npo import NPO

METHODS: dict[str, type[UnlearningMethod]] = {"GradAscent": GradAscent, "GradDiff": GradDiff, "NPO": NPO}


def method_keys(name: str) -> list[str]:
    """Return the ``trainer.method_args`` keys that the method ``name`` accepts."""
    return [p for p in inspect.signature(METHODS[name]).parameters if p not in ("self", "args", "kwargs")]


def build_method(name: str, **kwargs) -> UnlearningMethod:
    """Instantiate the unlearning method registered as ``name`` with the settings ``kwargs``."""
    if name not in METHODS:
        raise ValueError(f"unknown unlearning method {name!r} (unlearn_trainer_cls): choose one of {sorted(METHODS)}")
    unknown = sorted(set(kwargs) - set(method_keys(name)))
    if unknown:
        raise ValueError(
            f"invalid method_args for {name}: unexpected key(s) {unknown}; {name} accepts {method_keys(name)} "
            "besides the federated settings"
        )
    return METHODS[name](**kwargs)


__all__ = ["METHODS", "UnlearnContext", "UnlearningMethod", "build_method", "method_keys"]
