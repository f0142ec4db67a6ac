import pytest
import torch
from evals.hand_scores import manual_norms

from fedunlearn.data.template import tokenize_qa
from fedunlearn.evals.gradnorm import parameter_grad_norms

CHAT = {"apply_chat_template": True}
PAIR = ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet.")


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_grad_norms_match_manual_backward(tiny_llama, tokenizer, p):
    example = tokenize_qa(tokenizer, *PAIR, CHAT)

    [norms] = parameter_grad_norms(tiny_llama, [example], p=p)

    assert norms.tolist() == pytest.approx(manual_norms(tiny_llama, example, p), rel=1e-4)


def test_grad_norms_restore_parameter_state(tiny_llama, tokenizer):
    example = tokenize_qa(tokenizer, *PAIR, CHAT)
    frozen, trained = list(tiny_llama.parameters())[:2]
    frozen.requires_grad_(False)
    earlier_grad = torch.ones_like(trained)
    trained.grad = earlier_grad
    tiny_llama.train()

    parameter_grad_norms(tiny_llama, [example])

    assert not frozen.requires_grad
    assert frozen.grad is None
    assert trained.grad is earlier_grad
    assert tiny_llama.training


def test_grad_norms_cover_frozen_parameters(tiny_llama, tokenizer):
    example = tokenize_qa(tokenizer, *PAIR, CHAT)
    for param in tiny_llama.parameters():
        param.requires_grad_(False)

    [norms] = parameter_grad_norms(tiny_llama, [example])

    assert len(norms) == len(manual_norms(tiny_llama, example, 2.0))


def test_grad_norms_reject_invalid_p(tiny_llama, tokenizer):
    with pytest.raises(ValueError, match="invalid p-norm 3"):
        parameter_grad_norms(tiny_llama, [tokenize_qa(tokenizer, *PAIR, CHAT)], p=3)


def test_grad_norms_reject_single_token_answer(tiny_llama, tokenizer):
    example = tokenize_qa(tokenizer, PAIR[0], "", CHAT)  # only the EOS token is a target

    with pytest.raises(ValueError, match="example 0 has fewer than 2 target tokens"):
        parameter_grad_norms(tiny_llama, [example])
