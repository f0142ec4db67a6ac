"""Selecting the metrics of an evaluation: the requested names, checked, with their prerequisites."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def select_metrics(
    metrics: Iterable[str] | str | None,
    *,
    order: Sequence[str],
    defaults: Sequence[str],
    prerequisites: Mapping[str, Sequence[str]],
    benchmark: str,
) -> list[str]:
    """Return the requested metrics (``defaults`` when None) and their prerequisites, in ``order``.

    Prerequisites are followed transitively. Raises ``ValueError`` naming the
    unknown metrics and the valid ones.
    """
    if metrics is None:
        requested = list(defaults)
    elif isinstance(metrics, str):
        requested = [metrics]
    else:
        requested = list(metrics)
    unknown = [name for name in requested if name not in order]
    if unknown:
        raise ValueError(f"unknown {benchmark} metric(s) {unknown}: valid names are {list(order)}")
    needed: set[str] = set()
    pending = list(requested)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(prerequisites.get(name, ()))
    return [name for name in order if name in needed]
