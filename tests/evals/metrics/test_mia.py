import math

import pytest
import torch

from fedunlearn.evals.metrics.mia import (
    auc,
    gradnorm_score,
    loss_score,
    min_k_plus_plus_score,
    min_k_score,
    reference_score,
    vocab_moments,
    zlib_score,
)


def test_loss_score_is_mean_negative_logprob():
    assert loss_score([-1.0, -2.0, -3.0]) == pytest.approx(2.0)


def test_loss_score_rejects_empty():
    with pytest.raises(ValueError, match="at least one token"):
        loss_score([])


def test_zlib_score_divides_by_compressed_bytes():
    # zlib's stream is a 2-byte header, the deflate block and a 4-byte Adler-32 checksum: 9 bytes for "a".
    assert zlib_score([-1.0, -3.0], "a") == pytest.approx(2.0 / 9)


def test_min_k_score_averages_lowest_share():
    logprobs = [-0.1, -5.0, -2.0, -0.5, -3.0]

    assert min_k_score(logprobs, k=0.4) == pytest.approx(4.0)  # 2 of 5 tokens: -5 and -3
    assert min_k_score(logprobs, k=0.1) == pytest.approx(5.0)  # floor(0.5) = 0, so at least 1 token
    assert min_k_score(logprobs, k=1.0) == pytest.approx(10.6 / 5)


def test_min_k_score_empty_is_zero():
    assert min_k_score([]) == 0.0


def test_min_k_score_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be a share"):
        min_k_score([-1.0], k=0)


def test_min_k_plus_plus_standardises_tokens():
    # z = (-1 - -1.5) / 0.5 = 1 and (-2 - -1) / 2 = -0.5; k = 0.5 keeps the lowest one.
    score = min_k_plus_plus_score([-1.0, -2.0], vocab_mean=[-1.5, -1.0], vocab_var=[0.25, 4.0], k=0.5)

    assert score == pytest.approx(0.5)


def test_min_k_plus_plus_clamps_variance():
    score = min_k_plus_plus_score([-1.0], vocab_mean=[-1.5], vocab_var=[0.0], k=1.0)

    assert score == pytest.approx(-0.5 / math.sqrt(1e-6))


def test_min_k_plus_plus_rejects_length_mismatch():
    with pytest.raises(ValueError, match="one mean and one variance per token"):
        min_k_plus_plus_score([-1.0, -2.0], vocab_mean=[-1.0], vocab_var=[1.0, 1.0])


def test_vocab_moments_by_hand():
    log_probs = torch.tensor([[0.5, 0.25, 0.25]]).log()
    ln2 = math.log(2)

    mean, var = vocab_moments(log_probs)

    # mu = 0.5 * -ln2 + 0.5 * -2 ln2; E[log p^2] = 0.5 ln2^2 + 0.5 * 4 ln2^2 = 2.5 ln2^2
    assert mean.item() == pytest.approx(-1.5 * ln2, rel=1e-6)
    assert var.item() == pytest.approx(0.25 * ln2**2, rel=1e-5)


def test_reference_score_is_loss_difference():
    assert reference_score(2.5, 1.0) == pytest.approx(1.5)


def test_gradnorm_score_is_mean_norm():
    assert gradnorm_score([1.0, 2.0, 3.0]) == pytest.approx(2.0)


def test_gradnorm_score_rejects_empty():
    with pytest.raises(ValueError, match="no parameter received a gradient"):
        gradnorm_score([])


def test_auc_separated_sets():
    assert auc(member_scores=[0.1, 0.2], nonmember_scores=[0.3, 0.4]) == 1.0
    assert auc(member_scores=[0.3, 0.4], nonmember_scores=[0.1, 0.2]) == 0.0


def test_auc_counts_pairs_and_ties():
    # Non-member 3 beats both members, non-member 0 beats none: 2 of 4 pairs.
    assert auc([1.0, 2.0], [3.0, 0.0]) == pytest.approx(0.5)
    # Non-member 2 beats member 1 and ties member 2: (1 + 0.5) / 2.
    assert auc([1.0, 2.0], [2.0]) == pytest.approx(0.75)


def test_auc_rejects_empty_side():
    with pytest.raises(ValueError, match="got 0 member and 2 non-member scores"):
        auc([], [1.0, 2.0])
