"""Server-side checks of a client reply before aggregation."""

import math
import re

import pytest
import torch

from fedunlearn.federated.aggregation import ClientUpdate
from fedunlearn.federated.validation import check_update, update_norm

GLOBAL = {"a": torch.zeros(2, 2), "b": torch.zeros(3)}


def reply(state=None, n=4, **extra):
    state = state if state is not None else {"a": torch.ones(2, 2), "b": torch.ones(3)}
    return ClientUpdate(7, state, n, extra_states=extra)


def test_valid_update_passes():
    assert check_update(reply(), GLOBAL) is None


def test_norm_by_hand():
    # 7 ones: sqrt(7)
    assert update_norm(reply().state, GLOBAL) == pytest.approx(math.sqrt(7))


@pytest.mark.parametrize(
    "state, reason",
    [
        ({"a": torch.ones(2, 2)}, r"keys differ from the global state: missing \['b'\], unexpected \[\]"),
        ({"a": torch.ones(2, 2), "b": torch.ones(3), "c": torch.ones(1)}, r"missing \[\], unexpected \['c'\]"),
        ({"a": torch.ones(4), "b": torch.ones(3)}, r"a has shape \(4,\), expected \(2, 2\)"),
        ({"a": torch.ones(2, 2), "b": torch.ones(3, dtype=torch.float16)}, "b has dtype torch.float16, expected torch.float32"),
        ({"a": torch.tensor([[1.0, math.nan], [math.inf, 0.0]]), "b": torch.ones(3)}, "a has 2 NaN or infinite values"),
        ({"a": [[1.0, 1.0], [1.0, 1.0]], "b": torch.ones(3)}, "a is a list, not a tensor"),
    ],
)
def test_bad_state_rejected(state, reason):
    given = check_update(reply(state), GLOBAL)

    assert given is not None
    assert re.search(reason, given), given


def test_norm_bound():
    assert check_update(reply(), GLOBAL, max_update_norm=3.0) is None  # sqrt(7) = 2.646
    assert check_update(reply(), GLOBAL, max_update_norm=2.5) == "update norm 2.646 exceeds max_update_norm=2.5"


def test_zero_examples_rejected():
    assert check_update(reply(n=0), GLOBAL) == "num_examples must be > 0, got 0"


def test_extra_state_checked():
    bad = {"a": torch.ones(2, 2), "b": torch.full((3,), math.nan)}

    assert check_update(reply(control_delta=bad), GLOBAL) == "control_delta: b has 3 NaN or infinite values"
