"""Unlearning methods, selected by name with ``unlearn_trainer_cls``."""

from fedunlearn.unlearn.methods.base import UnlearningMethod
from fedunlearn.unlearn.methods.grad_ascent import GradAscent
from fedunlearn.unlearn.methods.grad_diff import GradDiff
from fedunlearn.unlearn.methods.npo import NPO

METHODS: dict[str, type[UnlearningMethod]] = {"GradAscent": GradAscent, "GradDiff": GradDiff, "NPO": NPO}


def build_method(name: str, **kwargs) -> UnlearningMethod:
    """Instantiate the unlearning method registered as ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown unlearning method {name!r} (unlearn_trainer_cls): choose one of {sorted(METHODS)}")
    try:
        return METHODS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"invalid method_args for {name}: {err}") from None


__all__ = ["METHODS", "UnlearningMethod", "build_method"]
