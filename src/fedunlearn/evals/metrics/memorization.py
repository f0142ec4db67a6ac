"""Memorization of target tokens under teacher forcing: exact memorization and extraction strength.

Both read ``greedy_match``: for each target token ``x_t`` (answer tokens
except the last, the end-of-sequence token, as OpenUnlearning scores them),
whether the model's most likely next token given the true prefix is ``x_t``.

* ``exact_memorization`` (OpenUnlearning's handler of that name): the share of target tokens
  that greedy prediction reproduces, ``EM = (1/n) sum_t 1[argmax p(. | x_<t) = x_t]``.
* ``extraction_strength`` (OpenUnlearning's handler of that name):
  ``ES = 1 - k / n`` with ``k`` the smallest prefix length from which greedy
  prediction reproduces the whole rest of the answer, so 1 means the model
  completes the answer from the question alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def exact_memorization(greedy_match: Sequence[bool]) -> float:
    """Return the share of target tokens that greedy prediction reproduces."""
    matches = np.asarray(greedy_match, dtype=bool)
    if matches.size == 0:
        raise ValueError("greedy_match is empty: exact memorization needs at least one target token")
    return float(matches.mean())


def extraction_strength(greedy_match: Sequence[bool]) -> float:
    """Return ``1 - k / n`` with ``k = min{k in [0, n) : greedy_match[k:] all true}``.

    NOTE: OpenUnlearning searches ``k`` only up to ``n - 1`` and keeps ``k = n - 1``
    when no suffix matches, so a sequence without any match also scores
    ``1 / n`` (not 0). This follows it, so results compare with published numbers.
    """
    matches = np.asarray(greedy_match, dtype=bool)
    n = matches.size
    if n == 0:
        raise ValueError("greedy_match is empty: extraction strength needs at least one target token")
    # suffix_all[k] is True when every match from position k to the end is True.
    suffix_all = np.logical_and.accumulate(matches[::-1])[::-1]
    matching = np.flatnonzero(suffix_all)
    k = int(matching[0]) if matching.size else n - 1
    return 1.0 - k / n
