"""FedAvgM, FedAdam, FedYogi and FedAdagrad over two rounds, against hand computations and Flower 1.42.

Both rounds have two clients with 1 and 3 examples. Their states are the
global state plus an offset, so the example-weighted mean update is
    round 1: Δ1 = (1*[4, -4] + 3*[0, 4]) / 4 = [1, 2]
    round 2: Δ2 = (1*[1, 4] + 3*[0, -4]) / 4 = [0.25, -2]
"""

import pytest
import torch
from flwr.app import DEFAULT_TTL, ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp import strategy as flower

from fedunlearn.federated.aggregation import (
    ClientUpdate,
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedYogi,
    build_aggregator,
)

OFFSETS = {1: ([4.0, -4.0], [0.0, 4.0]), 2: ([1.0, 4.0], [0.0, -4.0])}
WEIGHTS = (1, 3)
START = {"w": torch.tensor([0.0, 0.0])}
ADAPTIVE = {"eta": 0.1, "beta_1": 0.5, "beta_2": 0.75, "tau": 0.5}


def round_updates(server_round, global_state):
    return [
        ClientUpdate(k, {"w": global_state["w"] + torch.tensor(offset)}, n)
        for k, (offset, n) in enumerate(zip(OFFSETS[server_round], WEIGHTS))
    ]


def two_rounds(aggregator):
    """Run rounds 1 and 2 and return the global states after each."""
    x1 = aggregator.aggregate_train(1, START, round_updates(1, START))
    x2 = aggregator.aggregate_train(2, x1, round_updates(2, x1))
    return x1["w"].tolist(), x2["w"].tolist()


def test_fedavgm_two_rounds():
    x1, x2 = two_rounds(FedAvgM(server_learning_rate=0.5, server_momentum=0.5))

    # v1 = Δ1 = [1, 2];                       x1 = 0 + 0.5 * v1 = [0.5, 1]
    assert x1 == pytest.approx([0.5, 1.0])
    # v2 = 0.5 * [1, 2] + [0.25, -2] = [0.75, -1];  x2 = [0.5, 1] + 0.5 * v2 = [0.875, 0.5]
    assert x2 == pytest.approx([0.875, 0.5])


def test_fedavgm_plain_is_fedavg():
    x1, _ = two_rounds(FedAvgM(server_learning_rate=1.0, server_momentum=0.0))

    assert x1 == pytest.approx([1.0, 2.0])


def test_fedadam_two_rounds():
    aggregator = FedAdam(**ADAPTIVE)
    x1, x2 = two_rounds(aggregator)

    # Round 1: m1 = 0.5 * Δ1 = [0.5, 1]; v1 = 0.25 * Δ1² = [0.25, 1]
    #   η1 = 0.1 * sqrt(1 - 0.75²) / (1 - 0.5²) = 0.0881917
    #   x1 = η1 * [0.5 / (0.5 + 0.5), 1 / (1 + 0.5)] = [0.0440959, 0.0587945]
    assert x1 == pytest.approx([0.0440959, 0.0587945], rel=1e-5)
    # Round 2: m2 = 0.5 * m1 + 0.5 * Δ2 = [0.375, -0.5]
    #   v2 = 0.75 * v1 + 0.25 * Δ2² = [0.203125, 1.75]
    #   η2 = 0.1 * sqrt(1 - 0.75³) / (1 - 0.5³) = 0.0868966
    #   x2 = x1 + η2 * [0.375 / (0.450694 + 0.5), -0.5 / (1.322876 + 0.5)] = [0.0783721, 0.0349594]
    assert x2 == pytest.approx([0.0783721, 0.0349594], rel=1e-5)
    assert aggregator.state_dict()["m"]["w"].tolist() == pytest.approx([0.375, -0.5])
    assert aggregator.state_dict()["v"]["w"].tolist() == pytest.approx([0.203125, 1.75])


def test_fedyogi_two_rounds():
    aggregator = FedYogi(**ADAPTIVE)
    x1, x2 = two_rounds(aggregator)

    # Round 1: m1 = [0.5, 1]; v1 = 0 - 0.25 * Δ1² * sign(0 - Δ1²) = [0.25, 1]
    #   x1 = 0.1 * [0.5 / 1, 1 / 1.5] = [0.05, 0.0666667]
    assert x1 == pytest.approx([0.05, 0.0666667], rel=1e-5)
    # Round 2: m2 = [0.375, -0.5]; Δ2² = [0.0625, 4], sign(v1 - Δ2²) = [+1, -1]
    #   v2 = [0.25 - 0.25 * 0.0625, 1 + 0.25 * 4] = [0.234375, 2]
    #   x2 = x1 + 0.1 * [0.375 / (0.484123 + 0.5), -0.5 / (1.414214 + 0.5)] = [0.0881050, 0.0405463]
    assert x2 == pytest.approx([0.0881050, 0.0405463], rel=1e-5)
    assert aggregator.state_dict()["v"]["w"].tolist() == pytest.approx([0.234375, 2.0])


def test_fedadagrad_two_rounds():
    aggregator = FedAdagrad(eta=0.1, tau=0.5)
    x1, x2 = two_rounds(aggregator)

    # No momentum: m = Δ. Round 1: v1 = [1, 4]; x1 = 0.1 * [1 / 1.5, 2 / 2.5] = [0.0666667, 0.08]
    assert x1 == pytest.approx([0.0666667, 0.08], rel=1e-5)
    # Round 2: v2 = [1.0625, 8]; x2 = x1 + 0.1 * [0.25 / (1.030776 + 0.5), -2 / (2.828427 + 0.5)]
    #   = [0.0829982, 0.0199116]
    assert x2 == pytest.approx([0.0829982, 0.0199116], rel=1e-5)


# --- the same numbers as Flower's own strategies -------------------------------------------------------


def flower_reply(update):
    metadata = Metadata(run_id=1, message_id=f"reply-{update.client_id}", src_node_id=update.client_id + 1,
                        dst_node_id=0, reply_to_message_id="instruction", group_id="", created_at=0.0,
                        ttl=DEFAULT_TTL, message_type="train")
    content = RecordDict({"arrays": ArrayRecord(update.state), "metrics": MetricRecord({"num-examples": update.num_examples})})
    return Message(content=content, metadata=metadata)


def flower_two_rounds(strategy, current_as_record):
    """Run Flower's ``aggregate_train`` for rounds 1 and 2 on the same replies."""
    states = []
    current = dict(START)
    for server_round in (1, 2):
        arrays = {k: v.numpy() for k, v in current.items()}
        strategy.current_arrays = ArrayRecord(current) if current_as_record else arrays
        record, _ = strategy.aggregate_train(server_round, [flower_reply(u) for u in round_updates(server_round, current)])
        current = {k: v.float() for k, v in record.to_torch_state_dict().items()}
        states.append(current["w"].tolist())
    return states


@pytest.mark.parametrize(
    "name, ours, theirs, current_as_record",
    [
        ("FedAdam", lambda: FedAdam(**ADAPTIVE), lambda: flower.FedAdam(**ADAPTIVE), False),
        ("FedYogi", lambda: FedYogi(**ADAPTIVE), lambda: flower.FedYogi(**ADAPTIVE), False),
        ("FedAdagrad", lambda: FedAdagrad(eta=0.1, tau=0.5), lambda: flower.FedAdagrad(eta=0.1, tau=0.5), False),
        ("FedAvgM", lambda: FedAvgM(0.5, 0.5),
         lambda: flower.FedAvgM(server_learning_rate=0.5, server_momentum=0.5), True),
    ],
)
def test_matches_flower(name, ours, theirs, current_as_record):
    expected = flower_two_rounds(theirs(), current_as_record)

    assert list(two_rounds(ours())) == [pytest.approx(x, rel=1e-6) for x in expected], name


# --- settings -----------------------------------------------------------------------------------------


def test_state_dict_round_trip():
    first = FedAdam(**ADAPTIVE)
    x1 = first.aggregate_train(1, START, round_updates(1, START))
    second = FedAdam(**ADAPTIVE)
    second.load_state_dict(first.state_dict())

    assert torch.equal(second.aggregate_train(2, x1, round_updates(2, x1))["w"],
                       first.aggregate_train(2, x1, round_updates(2, x1))["w"])


def test_fresh_optimizer_has_no_state():
    assert FedAdam().state_dict() == {}
    assert FedAvgM().state_dict() == {}


@pytest.mark.parametrize(
    "name, args, message",
    [
        ("FedAdam", {"eta": -1}, "eta must be > 0, got -1"),
        ("FedYogi", {"beta_2": 1.0}, r"beta_2 must be in \[0, 1\), got 1.0"),
        ("FedAdagrad", {"tau": 0}, "tau must be > 0, got 0"),
        ("FedAvgM", {"server_momentum": "high"}, "server_momentum must be a number, got 'high'"),
        ("FedAdam", {"eta": float("nan")}, "eta must be a finite number"),
    ],
)
def test_bad_value_names_key(name, args, message):
    with pytest.raises(ValueError, match=f"invalid trainer.method_args.aggregation_args for aggregation_strategy={name}: {message}"):
        build_aggregator(name, **args)


def test_unknown_key_lists_valid_ones():
    expected = r"unknown trainer.method_args.aggregation_args \['lr'\] for aggregation_strategy=FedAdam: " \
               r"valid keys are \['eta', 'beta_1', 'beta_2', 'tau'\]"
    with pytest.raises(ValueError, match=expected):
        build_aggregator("FedAdam", lr=0.1)


def test_lora_defaults():
    # Sized for LoRA adapters (per-coordinate updates near 1e-3), not Flower's eta = 0.1.
    assert (FedAdam().eta, FedYogi().eta, FedAdagrad().eta) == (1e-2, 1e-2, 3e-3)
    assert (FedAdam().beta_1, FedAdam().beta_2, FedAdam().tau) == (0.9, 0.99, 1e-3)
    assert (FedAvgM().server_learning_rate, FedAvgM().server_momentum) == (1.0, 0.5)
