"""What every registered method promises: answer tokens only, settings checked, OpenUnlearning's defaults."""

import re

import pytest
import torch

from fedunlearn.data.collator import pad_batch
from fedunlearn.unlearn.methods import METHODS, build_method, method_keys

from .hand import with_extra_padding

ALL = sorted(METHODS)
# RMU's default layer 7 does not exist in the 2-layer tiny Llama.
TINY_SETTINGS = {"RMU": {"layer_id": 1}}


def build_tiny(name, **overrides):
    return build_method(name, **{**TINY_SETTINGS.get(name, {}), **overrides})


@pytest.fixture
def prepared_batch(model, examples, context, retain_batch, tokenizer):
    """Return a function that builds a method, runs ``prepare`` and returns it with a forget-retain batch."""

    def build(name, **overrides):
        method = build_tiny(name, **overrides)
        method.prepare(model, examples, context)
        return method, {"forget": pad_batch(examples, tokenizer.pad_token_id), "retain": retain_batch}

    return build


@pytest.mark.parametrize("name", ALL)
def test_padding_does_not_change_loss(name, model, prepared_batch):
    # Extra right padding with random token ids is masked out of attention and labelled -100: a loss
    # that counted padding or prompt positions (as some of OpenUnlearning's do) would move.
    method, batch = prepared_batch(name, **({} if name == "GradAscent" else {"alpha": 1.0}))
    padded = {stream: with_extra_padding(b, 7) for stream, b in batch.items()}

    with torch.no_grad():
        plain = method.compute_loss(model, batch)
        extra = method.compute_loss(model, padded)

    assert torch.isfinite(plain)
    assert extra.item() == pytest.approx(plain.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", ["NPO", "IdkDPO", "IdkNLL", "RMU", "UNDIAL", "WGA"])
def test_retain_kl_at_start_is_zero(name, model, prepared_batch):
    # Every method takes retain_loss_type=KL; at the starting weights only the forget term remains.
    # These cover each way a method's prepare builds the reference; the others inherit WGA's.
    with_kl, batch = prepared_batch(name, alpha=1.0, retain_loss_type="KL")
    without, _ = prepared_batch(name, alpha=0.0)

    with torch.no_grad():
        assert with_kl.compute_loss(model, batch).item() == pytest.approx(
            without.compute_loss(model, batch).item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name, overrides", [
    ("NPO", {}), ("IdkDPO", {}), ("IdkNLL", {}), ("RMU", {}), ("UNDIAL", {}), ("GradDiff", {"retain_loss_type": "KL"}),
])
def test_compute_loss_needs_prepare(name, overrides, model, retain_batch, examples, tokenizer):
    method = build_tiny(name, **overrides)
    batch = {"forget": pad_batch(examples, tokenizer.pad_token_id), "retain": retain_batch}

    with pytest.raises(RuntimeError, match=f"{name}.prepare must run before training"):
        method.compute_loss(model, batch)


@pytest.mark.parametrize("name, overrides, needs_retain", [
    ("GradAscent", {}, False), ("GradDiff", {}, True), ("GradDiff", {"alpha": 0}, False), ("NPO", {}, True),
    ("SimNPO", {}, True), ("IdkDPO", {}, True), ("IdkNLL", {}, True), ("RMU", {}, True), ("UNDIAL", {}, False),
    ("UNDIAL", {"alpha": 1}, True), ("WGA", {}, True), ("SatImp", {}, True), ("CEU", {}, False),
])
def test_needs_retain(name, overrides, needs_retain):
    assert build_method(name, **overrides).needs_retain is needs_retain


# OpenUnlearning's configs/trainer/<name>.yaml (the class defaults where no YAML sets a key).
OPEN_UNLEARNING_DEFAULTS = {
    "GradDiff": {"gamma": 1.0, "alpha": 1.0, "retain_loss_type": "NLL"},
    "NPO": {"beta": 0.1, "gamma": 1.0, "alpha": 1.0, "retain_loss_type": "NLL"},
    "SimNPO": {"beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0, "retain_loss_type": "NLL"},
    "IdkDPO": {"beta": 0.1, "gamma": 1.0, "alpha": 1.0, "retain_loss_type": "NLL"},
    "IdkNLL": {"gamma": 1.0, "alpha": 1.0, "retain_loss_type": "NLL"},
    "RMU": {"layer_id": 7, "steering_coeff": 300.0, "gamma": 1.0, "alpha": 1000.0, "retain_loss_type": "EMBED_DIFF"},
    "UNDIAL": {"beta": 10.0, "gamma": 1.0, "alpha": 0.0, "retain_loss_type": "NLL"},
    "WGA": {"beta": 1.0, "gamma": 1.0, "alpha": 1.0, "retain_loss_type": "NLL"},
    "SatImp": {"beta1": 5.0, "beta2": 1.0, "gamma": 0.1, "alpha": 1.0, "retain_loss_type": "NLL"},
    "CEU": {"ignore_first_n_answer_tokens": 1, "gamma": 1.0, "alpha": 0.0, "retain_loss_type": "NLL"},
}


@pytest.mark.parametrize("name", sorted(OPEN_UNLEARNING_DEFAULTS))
def test_defaults_match_open_unlearning(name):
    method = build_method(name)

    for key, value in OPEN_UNLEARNING_DEFAULTS[name].items():
        assert getattr(method, key) == value, key


def test_registry_names():
    assert ALL == ["CEU", "GradAscent", "GradDiff", "IdkDPO", "IdkNLL", "NPO", "RMU", "SatImp", "SimNPO", "UNDIAL", "WGA"]


def test_method_keys():
    assert method_keys("SatImp") == ["beta1", "beta2", "gamma", "alpha", "retain_loss_type"]
    assert method_keys("GradAscent") == []


def test_build_with_kwargs():
    method = build_method("NPO", beta=0.2, alpha=0.5)

    assert (method.beta, method.alpha) == (0.2, 0.5)


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match=r"unknown unlearning method 'Lethe' .*choose one of \['CEU', 'GradAscent', .*'WGA'\]"):
        build_method("Lethe")


def test_unexpected_key_lists_accepted():
    with pytest.raises(ValueError, match=r"invalid method_args for WGA: unexpected key\(s\) \['beta1'\]; "
                                         r"WGA accepts \['beta', 'gamma', 'alpha', 'retain_loss_type'\]"):
        build_method("WGA", beta1=2.0)


BAD_SETTINGS = [
    ("NPO", {"beta": 0}, "NPO beta must be > 0, got 0.0"),
    ("NPO", {"beta": -0.1}, "NPO beta must be > 0, got -0.1"),
    ("SimNPO", {"beta": -1}, "SimNPO beta must be > 0"),
    ("IdkDPO", {"beta": 0}, "IdkDPO beta must be > 0"),
    ("UNDIAL", {"beta": 0}, "UNDIAL beta must be > 0"),
    ("WGA", {"beta": -1}, "WGA beta must be >= 0"),
    ("SatImp", {"beta1": -1}, "SatImp beta1 must be >= 0"),
    ("SatImp", {"beta2": -0.5}, "SatImp beta2 must be >= 0"),
    ("GradDiff", {"alpha": -1}, "GradDiff alpha must be >= 0, got -1.0: set trainer.method_args.alpha"),
    ("IdkNLL", {"gamma": -2}, "IdkNLL gamma must be >= 0"),
    ("GradDiff", {"retain_loss_type": "MSE"}, "invalid GradDiff retain_loss_type 'MSE': choose one of ['NLL', 'KL']"),
    ("RMU", {"retain_loss_type": "L1"}, "choose one of ['EMBED_DIFF', 'NLL', 'KL']"),
    ("RMU", {"layer_id": -1}, "RMU layer_id must be an integer >= 0, got -1"),
    ("RMU", {"layer_id": 1.5}, "RMU layer_id must be an integer >= 0, got 1.5"),
    ("RMU", {"steering_coeff": 0}, "RMU steering_coeff must be > 0"),
    ("CEU", {"ignore_first_n_answer_tokens": -1}, "CEU ignore_first_n_answer_tokens must be an integer >= 0"),
    ("NPO", {"batch_size": 0}, "NPO batch_size must be an integer >= 1, got 0"),
    ("IdkDPO", {"batch_size": 2.5}, "IdkDPO batch_size must be an integer >= 1, got 2.5"),
    ("RMU", {"layer_id": True}, "RMU layer_id must be an integer >= 0, got True"),
    ("NPO", {"beta": "high"}, "NPO beta must be a number > 0, got 'high'"),
]


@pytest.mark.parametrize("name, settings, message", BAD_SETTINGS, ids=[f"{n}-{next(iter(s))}={s[next(iter(s))]}" for n, s, _ in BAD_SETTINGS])
def test_bad_setting_raises(name, settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_method(name, **settings)
